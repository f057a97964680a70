"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): random, differentiable transforms applied to every image D sees, real and
fake, in D's update and in G's, so D cannot memorise the few thousand training images and
G's gradients flow back through the transform.

    augment = DiffAugment(["translation", "cutout"], fill=-1.0)
    x = augment(images)    # (B, C, H, W) -> (B, C, H, W), a fresh draw per image per call

Ported from the authors' PyTorch code (mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py),
with one change: translation and cutout fill with `fill`, the background of G's output
range (-1 for tanh), not 0, which is mid-grey on [-1, 1] MNIST digits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _per_image(x: Tensor) -> Tensor:
    return torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device)  # (B, 1, 1, 1)


def brightness(x: Tensor, fill: float) -> Tensor:
    return x + (_per_image(x) - 0.5)


def saturation(x: Tensor, fill: float) -> Tensor:
    # Scales each pixel's distance from its channel mean: a no-op on 1-channel images.
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_per_image(x) * 2) + mean


def contrast(x: Tensor, fill: float) -> Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_per_image(x) + 0.5) + mean


def translation(x: Tensor, fill: float, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size (4 px at 28x28), filling with `fill`."""
    b, _, h, w = x.shape
    sx, sy = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sx, sx + 1, size=[b, 1, 1], device=x.device)
    ty = torch.randint(-sy, sy + 1, size=[b, 1, 1], device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0], value=fill)  # (B, C, H + 2, W + 2)
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def cutout(x: Tensor, fill: float, ratio: float = 0.5) -> Tensor:
    """Blank one square of `ratio` of the image's side (14 px at 28x28) per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), size=[b, 1, 1], device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), size=[b, 1, 1], device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device),
        torch.arange(ch, device=x.device),
        torch.arange(cw, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    keep = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    keep[gb, gx, gy] = 0
    keep = keep.unsqueeze(1)  # (B, 1, H, W)
    return x * keep + fill * (1 - keep)


Transform = Callable[[Tensor, float], Tensor]
# `stabilize.diffaug` names -> transforms, applied in the order given.
POLICIES: dict[str, Sequence[Transform]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


class DiffAugment:
    """The transforms of `policy` (names from POLICIES), each drawn anew per image and call."""

    def __init__(self, policy: Sequence[str], fill: float = -1.0) -> None:
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown}: use {', '.join(POLICIES)}")
        self.policy, self.fill = list(policy), fill

    def __call__(self, x: Tensor) -> Tensor:
        for name in self.policy:
            for transform in POLICIES[name]:
                x = transform(x, self.fill)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy}, fill={self.fill})"
