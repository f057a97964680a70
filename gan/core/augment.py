"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): random, differentiable transforms applied to every image D sees, real and
fake, in D's update and in G's, so D cannot memorise the few thousand training images and
G's gradients flow back through the transform.

    augment = DiffAugment(["translation", "cutout"], fill=-1.0)
    x = augment(images)    # (B, C, H, W) -> (B, C, H, W), a fresh draw per image per call

`AdaptiveAugment` (ADA) gates the same transforms with a probability it adapts.

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

    @property
    def transforms(self) -> list[Transform]:
        """The policy's transforms, one by one, in the order they are applied."""
        return [t for name in self.policy for t in POLICIES[name]]

    def __call__(self, x: Tensor) -> Tensor:
        for transform in self.transforms:
            x = transform(x, self.fill)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy}, fill={self.fill})"


# ADA's ops when stabilize.diffaug names none: geometric ones suit 1-channel digits; color's
# saturation is a no-op on 1 channel (its brightness would move the flat background D reads
# first), so it joins only for multi-channel data (stacked_mnist).
ADA_DEFAULT = ("translation", "cutout")


def ada_policy(diffaug: Sequence[str], channels: int) -> list[str]:
    """The ops ADA gates: `diffaug`'s when it names any, else ADA_DEFAULT (+ color for C > 1)."""
    if diffaug:
        return list(diffaug)
    return [*ADA_DEFAULT, *(["color"] if channels > 1 else [])]


class AdaptiveAugment:
    """ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"):
    DiffAugment's transforms, each applied to an image with probability `p` (a fresh
    per-image draw per transform and call), with p steered by D's overfitting.

        ada = AdaptiveAugment(["translation", "cutout"], fill=-1.0)
        x = ada(images)          # (B, C, H, W) -> (B, C, H, W); p = 0: x unchanged
        ada.observe(real_logits) # after each D update: (B,) D's logits of its (augmented) reals

    Every `interval` observed D updates, r_t = E[sign(D(real))] over them, and
    p += sign(r_t - target) * (reals in them) / (kimg * 1000), clamped to [0, 1]. p and the
    running sums are 0-dim tensors on the images' device, so neither the masks nor the
    adjustment syncs with the host; `state_dict` reads them (a sync per checkpoint only).
    Under DDP the sums are all-reduced first, so every rank keeps the same p.
    """

    def __init__(
        self,
        policy: Sequence[str],
        fill: float = -1.0,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 10.0,
        p0: float = 0.0,
    ) -> None:
        self.ops = DiffAugment(policy, fill)  # the transforms, not a copy of them
        self.target, self.interval, self.kimg = target, interval, kimg
        self.p = torch.tensor(p0)  # () float32: the augmentation probability
        self.rt = torch.tensor(0.0)  # () r_t of the last finished interval (logged)
        self.signs = torch.tensor(0.0)  # () sum of sign(D(real)) in the current interval
        self.seen = 0  # reals observed in the current interval
        self.updates = 0  # D updates observed, all intervals

    def _to(self, device: torch.device) -> None:
        if self.p.device != device:
            self.p, self.rt, self.signs = (t.to(device) for t in (self.p, self.rt, self.signs))

    def __call__(self, x: Tensor) -> Tensor:
        self._to(x.device)
        for transform in self.ops.transforms:
            # Drawn from the global RNG, as DiffAugment's own draws and the step's noise are:
            # gan.training.faults.RngState saves it, so a resumed run draws the same masks.
            apply = torch.rand(x.size(0), 1, 1, 1, device=x.device) < self.p  # (B, 1, 1, 1)
            x = torch.where(apply, transform(x, self.ops.fill), x)
        return x

    @torch.no_grad()
    def observe(self, real_logits: Tensor, images_per_logit: int = 1) -> None:
        """Count one D update's logits of its reals (B,); adjust p at an interval's end.
        `images_per_logit` (a packed D's `pack`): p's pace is set in images, not logits."""
        self._to(real_logits.device)
        self.signs = self.signs + real_logits.float().sign().sum() * images_per_logit
        self.seen += real_logits.numel() * images_per_logit
        self.updates += 1
        if self.updates % self.interval:
            return
        stats = torch.stack([self.signs, torch.full_like(self.signs, self.seen)])  # (2,), no copy
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)  # every rank's reals: one p for all
        signs, seen = stats.unbind()
        self.rt = signs / seen
        step = torch.sign(self.rt - self.target) * seen / (self.kimg * 1000)
        self.p = (self.p + step).clamp(0.0, 1.0)
        self.signs, self.seen = torch.zeros_like(self.signs), 0

    def state_dict(self) -> dict[str, float | int]:
        """What a resume needs, as plain numbers (float32 values are exact as floats)."""
        return {
            "p": float(self.p),
            "rt": float(self.rt),
            "signs": float(self.signs),
            "seen": self.seen,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        device = self.p.device
        self.p = torch.tensor(float(state["p"]), device=device)
        self.rt = torch.tensor(float(state["rt"]), device=device)
        self.signs = torch.tensor(float(state["signs"]), device=device)
        self.seen, self.updates = int(state["seen"]), int(state["updates"])

    def __repr__(self) -> str:
        return f"AdaptiveAugment({self.ops.policy}, p={float(self.p):.4f}, target={self.target})"
