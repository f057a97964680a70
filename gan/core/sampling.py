"""Drawing from a generator: latent noise, G's images, latent walks, value ranges.

Used by the module, the image callbacks, the metrics and `gan.sample`:

    z = sample_z("normal", 100, n=16, device="cpu")   # (16, 100)
    images = generate(module, z)                       # (16, 1, 28, 28) in G's range
    walk = slerp(z[:4], z[4:8], torch.linspace(0, 1, 10))  # (4, 10, 100)
    near = truncate(z, 0.7, "normal")                  # (16, 100): the truncation trick
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan.utils.options import check_truncation


class Drawable(Protocol):
    """What `generate` needs of a model (the LightningModule is one): the G to draw from,
    and the device it lives on."""

    device: torch.device

    def sampling_generator(self, ema: bool | None = None) -> nn.Module: ...


Noise = Callable[[tuple[int, ...], "torch.Generator | None", "torch.device | str"], Tensor]

# The latent distributions: `noise.dist` picks one. A new one is one entry here.
NOISES: dict[str, Noise] = {
    "normal": lambda shape, gen, device: torch.randn(
        shape, generator=gen, device=device
    ),  # N(0, 1)
    "uniform": lambda shape, gen, device: (
        torch.rand(shape, generator=gen, device=device) * 2 - 1
    ),  # U[-1, 1]
}

# Each distribution's mean: the centre `truncate` pulls latents towards. A new distribution
# declares its own here, beside its entry in NOISES (a test checks both name the same ones).
NOISE_MEANS: dict[str, float] = {
    "normal": 0.0,  # N(0, 1)
    "uniform": 0.0,  # U[-1, 1]
}

# G's output activations: `model.output` -> the range of its images.


def sample_z(
    dist: str,
    dim: int,
    n: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Latent vectors (n, dim) from `NOISES[dist]`, on `device`.

    With a `generator`, they are drawn on its device (the global RNG is left alone), so the
    same seed gives the same vectors whatever device the model is on.
    """
    where = generator.device if generator is not None else device
    return NOISES[dist]((n, dim), generator, where).to(device)


def sample_labels(
    num_classes: int,
    n: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniformly random class labels (n,) in [0, num_classes), on `device` (as `sample_z`)."""
    where = generator.device if generator is not None else device
    return torch.randint(num_classes, (n,), generator=generator, device=where).to(device)


@torch.no_grad()
def generate(
    module: Drawable,
    z: Tensor,
    labels: Tensor | None = None,
    ema: bool | None = None,
    batch_size: int = 1024,
) -> Tensor:
    """G(z) (or G(z, labels)) in eval mode, restoring G's train/eval mode afterwards.

    z (N, noise.dim), labels (N,) class indices or (N, num_classes) class mixtures for a
    conditional G -> images float32 (N, C, H, W) in G's output range, `batch_size` at a
    time. `ema`: None takes the EMA copy of G when the module keeps one, True demands it
    (GanError without one), False takes G itself.
    """
    generator = module.sampling_generator(ema)
    was_training = generator.training
    generator.eval()
    try:
        z = z.to(module.device)
        if labels is None:
            return torch.cat([generator(chunk).float() for chunk in z.split(batch_size)])
        pairs = zip(z.split(batch_size), labels.to(module.device).split(batch_size))
        return torch.cat([generator(zc, yc).float() for zc, yc in pairs])
    finally:
        generator.train(was_training)


def truncate(z: Tensor, psi: float, dist: str) -> Tensor:
    """The truncation trick (Brock et al. 2019's BigGAN; the StyleGAN form): latents pulled
    towards their distribution's mean, `mean + psi * (z - mean)`, z (N, D) -> (N, D).

    The same convention for every distribution in NOISES: its mean is NOISE_MEANS[dist],
    0 for both `normal` N(0, 1) and `uniform` U[-1, 1], where this is `psi * z`. psi = 1
    returns z itself (untouched); psi = 0 gives the mean latent for every z, so every image
    is G(mean) (G(mean, y) for class y); 0 < psi < 1 trades variety for typical images;
    psi > 1 widens the spread. Applied to every latent G sees, after any walk between
    latents. GanError for a psi that is not a number >= 0 (gan.utils.options.check_truncation).
    """
    psi = check_truncation(psi)
    if psi == 1.0:
        return z
    mean = NOISE_MEANS[dist]
    return mean + psi * (z - mean)  # (N, D)


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points on the straight line from a to b: a, b (..., D), t (T,) in [0, 1] -> (..., T, D).

    `(1 - t) * a + t * b`: exactly a at t=0 and exactly b at t=1. Between two Gaussian
    latents the midpoint is short (norm ~ 0.7 of theirs), a region G rarely saw.
    """
    t = t.to(a).unsqueeze(-1)  # (T, 1)
    return (1 - t) * a.unsqueeze(-2) + t * b.unsqueeze(-2)  # (..., T, D)


def slerp(a: Tensor, b: Tensor, t: Tensor, eps: float = 1e-6) -> Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents): (..., T, D).

    a, b (..., D), t (T,) in [0, 1]. Walks along the great circle between the two
    directions, so points keep the norm of the endpoints when they share one (and stay near
    it for Gaussian latents), unlike `lerp`. Exactly a at t=0 and b at t=1. Near-parallel
    (or opposite) vectors, where sin(angle) ~ 0 makes the formula unstable, fall back to
    `lerp`. Computed in float64, returned in a's dtype.
    """
    a64, b64 = a.double(), b.double()
    t = t.to(a64).unsqueeze(-1)  # (T, 1)
    cos = F.cosine_similarity(a64, b64, dim=-1, eps=1e-12).clamp(-1.0, 1.0)  # (...,)
    omega = torch.acos(cos)[..., None, None]  # (..., 1, 1): the angle between a and b
    sin = torch.sin(omega)
    near = sin.abs() < eps  # parallel or opposite: no unique great circle
    safe = torch.where(near, torch.ones_like(sin), sin)
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / safe)  # (..., T, 1)
    wb = torch.where(near, t, torch.sin(t * omega) / safe)  # (..., T, 1)
    return (wa * a64.unsqueeze(-2) + wb * b64.unsqueeze(-2)).to(a.dtype)  # (..., T, D)


def walk(z0: Tensor, z1: Tensor, steps: int, spherical: bool = False) -> Tensor:
    """`steps` latents from each row of z0 to the same row of z1: (rows * steps, D), row by row."""
    t = torch.linspace(0, 1, steps)  # (steps,)
    return (slerp if spherical else lerp)(z0, z1, t).flatten(0, 1)
