"""The loss registry, and D's targets under label smoothing.

Each entry of `LOSSES` is a `Loss` record: its D loss, its G loss, an optional penalty on
D (weighted by `loss.gp_weight`) and whether D's loss reads targets (so label smoothing
applies). The update step (gan.core.step) only calls the record; a new loss is one entry here,
and the config's list of choices is this registry's keys.

Every D loss has the signature `(real_logits, fake_logits, targets) -> loss`, where the
logits are D's raw outputs, shape (B,), and `targets` is the pair (real, fake) of
per-sample targets, each (B,), made by `make_targets` from the label-smoothing config.
Losses that score raw logits (hinge, WGAN-GP, RpGAN) ignore the targets;
`gan.training.validate.validate` refuses label smoothing with them. Every G loss is
`(fake_logits, real_logits) -> loss`; only relativistic losses (`g_needs_real`) read
D's scores of real images there, and the others get None.

WGAN-GP's penalty needs D itself: a penalty is `(D, real, fake) -> loss`. The R1/R2
penalties of `stabilize.r1`/`r2` are `zero_centered_penalty`, applied by gan.core.step.
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


def bce_g(fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    # G maximises log D(G(z)): strong gradients while D still wins (Goodfellow et al., 2014)
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def minimax_g(fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    # G minimises log(1 - D(G(z))) = -softplus(logit); flat where D is confident
    return -F.softplus(fake_logits).mean()


# ---- least squares (LSGAN), on raw logits
def lsgan_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    real_t, fake_t = targets
    return 0.5 * ((real_logits - real_t).pow(2).mean() + (fake_logits - fake_t).pow(2).mean())


def lsgan_g(fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    return 0.5 * (fake_logits - 1).pow(2).mean()


# ---- hinge
def hinge_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g(fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    return -fake_logits.mean()


# ---- Wasserstein (with the gradient penalty below)
def wgan_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    return fake_logits.mean() - real_logits.mean()


def wgan_g(fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    return -fake_logits.mean()


# ---- relativistic pairing (RpGAN; Jolicoeur-Martineau 2019, R3GAN 2024): each real is
# scored against one fake, so D cannot win by pushing all fakes down at once
def rpgan_d(real_logits: Tensor, fake_logits: Tensor, targets: Targets) -> Tensor:
    return F.softplus(fake_logits - real_logits).mean()  # -log sigmoid(D(x) - D(G(z)))


def rpgan_g(fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    if real_logits is None:
        raise ValueError("rpgan's G loss pairs each fake with a real: pass real_logits")
    return F.softplus(real_logits - fake_logits).mean()


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP: E[(||grad D(x_hat)||_2 - 1)^2] on random points between real and fake."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, 1, H, W)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def zero_centered_penalty(logits: Tensor, inputs: Tensor) -> Tensor:
    """R1 (on reals) or R2 (on fakes), Mescheder et al. (2018): E[||grad_x D(x)||^2].

    `inputs` (B, C, H, W) must require grad and `logits` (B,) be D's scores of them; the
    graph is kept (create_graph) so the penalty trains D. Weight it by gamma / 2.
    """
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


DLoss = Callable[[Tensor, Tensor, Targets], Tensor]
GLoss = Callable[[Tensor, Tensor | None], Tensor]
Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]


class Loss(NamedTuple):
    d: DLoss  # (real_logits, fake_logits, targets) -> D's loss
    g: GLoss  # (fake_logits, real_logits or None) -> G's loss
    penalty: Penalty | None = None  # (D, real, fake) -> a term added to D's loss
    uses_targets: bool = True  # D's loss reads the targets: label smoothing applies
    g_needs_real: bool = False  # G's loss reads D's scores of reals (relativistic)


LOSSES: dict[str, Loss] = {
    "bce": Loss(bce_d, bce_g),
    "minimax": Loss(bce_d, minimax_g),
    "lsgan": Loss(lsgan_d, lsgan_g),
    "hinge": Loss(hinge_d, hinge_g, uses_targets=False),
    "wgan_gp": Loss(wgan_d, wgan_g, penalty=gradient_penalty, uses_targets=False),
    "rpgan": Loss(rpgan_d, rpgan_g, uses_targets=False, g_needs_real=True),
}

# The label-smoothing options (conf/label_smoothing/*.yaml): each sets the fields read by
# make_targets; the name only labels the choice.
SMOOTHING = ("none", "one_sided", "two_sided", "noisy")


def make_targets(
    smoothing: Any, n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Targets:
    """D's targets for n real and n fake images under a label-smoothing config.

    `smoothing` has fields real, fake, noise and flip_prob (gan.training.config.LabelSmoothingConfig).
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
