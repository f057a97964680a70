"""The loss registry, and D's targets under label smoothing.

Each entry of `LOSSES` is a `Loss` record: its D loss, its G loss, an optional penalty on
D (weighted by `loss.gp_weight`) and whether D's loss reads targets (so label smoothing
applies). The update step (gan.step) only calls the record; a new loss is one entry here,
and the config's list of choices is this registry's keys.

Every D loss has the signature `(real_logits, fake_logits, targets) -> loss`, where the
logits are D's raw outputs, shape (B,), and `targets` is the pair (real, fake) of
per-sample targets, each (B,), made by `make_targets` from the label-smoothing config.
Losses that score raw logits (hinge, WGAN-GP) ignore the targets; `gan.config.validate`
refuses label smoothing with them. Every G loss is `fake_logits -> loss`.

WGAN-GP's penalty needs D itself: a penalty is `(D, real, fake) -> loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Targets = tuple[Tensor, Tensor]  # (real (B,), fake (B,))


# ---- non-saturating BCE (the default) and the original minimax game
def bce_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    real_t, fake_t = targets
    return F.binary_cross_entropy_with_logits(
        real_logits, real_t
    ) + F.binary_cross_entropy_with_logits(fake_logits, fake_t)


def bce_g(fake_logits: Tensor) -> Tensor:
    # G maximises log D(G(z)): strong gradients while D still wins (Goodfellow et al., 2014)
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def minimax_g(fake_logits: Tensor) -> Tensor:
    # G minimises log(1 - D(G(z))) = -softplus(logit); flat where D is confident
    return -F.softplus(fake_logits).mean()


# ---- least squares (LSGAN), on raw logits
def lsgan_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    real_t, fake_t = targets
    return 0.5 * ((real_logits - real_t).pow(2).mean() + (fake_logits - fake_t).pow(2).mean())


def lsgan_g(fake_logits: Tensor) -> Tensor:
    return 0.5 * (fake_logits - 1).pow(2).mean()


# ---- hinge
def hinge_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


# ---- Wasserstein (with the gradient penalty below)
def wgan_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    return fake_logits.mean() - real_logits.mean()


def wgan_g(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP: E[(||grad D(x_hat)||_2 - 1)^2] on random points between real and fake."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, 1, H, W)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


DLoss = Callable[[Tensor, Tensor, Targets], Tensor]
GLoss = Callable[[Tensor], Tensor]
Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]


class Loss(NamedTuple):
    d: DLoss  # (real_logits, fake_logits, targets) -> D's loss
    g: GLoss  # fake_logits -> G's loss
    penalty: Penalty | None = None  # (D, real, fake) -> a term added to D's loss
    uses_targets: bool = True  # D's loss reads the targets: label smoothing applies


LOSSES: dict[str, Loss] = {
    "bce": Loss(bce_d, bce_g),
    "minimax": Loss(bce_d, minimax_g),
    "lsgan": Loss(lsgan_d, lsgan_g),
    "hinge": Loss(hinge_d, hinge_g, uses_targets=False),
    "wgan_gp": Loss(wgan_d, wgan_g, penalty=gradient_penalty, uses_targets=False),
}

# The label-smoothing options (conf/label_smoothing/*.yaml): each sets the fields read by
# make_targets; the name only labels the choice.
SMOOTHING = ("none", "one_sided", "two_sided", "noisy")


def make_targets(
    smoothing: Any, n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Targets:
    """D's targets for n real and n fake images under a label-smoothing config.

    `smoothing` has fields real, fake, noise and flip_prob (gan.config.LabelSmoothingConfig).
    none: (1, 0). one_sided: (0.9, 0). two_sided: (0.9, 0.1). noisy: real drawn from
    U[real - noise, real], fake from U[fake, fake + noise], then each target is swapped
    for a draw of the other class with probability flip_prob.
    """
    real = torch.full((n,), float(smoothing.real), device=device, dtype=dtype)  # (n,)
    fake = torch.full((n,), float(smoothing.fake), device=device, dtype=dtype)  # (n,)
    if smoothing.noise > 0:
        real = real - smoothing.noise * torch.rand_like(real)
        fake = fake + smoothing.noise * torch.rand_like(fake)
    if smoothing.flip_prob > 0:
        flip_r = torch.rand_like(real) < smoothing.flip_prob
        flip_f = torch.rand_like(fake) < smoothing.flip_prob
        real, fake = torch.where(flip_r, fake, real), torch.where(flip_f, real, fake)
    return real, fake
