"""Unit tests: each loss on fixed logits, and D's targets under each label-smoothing option."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from gan.core.losses import LOSSES, gradient_penalty, make_targets
from gan.training.config import LabelSmoothingConfig

REAL = torch.tensor([2.0, 0.0])
FAKE = torch.tensor([-1.0, 1.0])
ONES_ZEROS = (torch.ones(2), torch.zeros(2))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bce_d_matches_hand_computation() -> None:
    d_loss = LOSSES["bce"].d
    # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l)
    want = (softplus(-2) + softplus(0)) / 2 + (softplus(-1) + softplus(1)) / 2
    assert d_loss(REAL, FAKE, ONES_ZEROS).item() == pytest.approx(want, rel=1e-6)


def test_bce_d_uses_the_targets() -> None:
    d_loss = LOSSES["bce"].d
    t = (torch.full((2,), 0.9), torch.zeros(2))
    want = sum(0.9 * softplus(-r) + 0.1 * softplus(r) for r in (2.0, 0.0)) / 2
    want += (softplus(-1) + softplus(1)) / 2
    assert d_loss(REAL, FAKE, t).item() == pytest.approx(want, rel=1e-6)


def test_generator_losses() -> None:
    # non-saturating: -log D(G(z)); minimax: log(1 - D(G(z)))
    assert LOSSES["bce"].g(FAKE).item() == pytest.approx((softplus(1) + softplus(-1)) / 2)
    assert LOSSES["minimax"].g(FAKE).item() == pytest.approx(-(softplus(-1) + softplus(1)) / 2)
    assert LOSSES["lsgan"].g(FAKE).item() == pytest.approx(0.5 * ((-2) ** 2 + 0) / 2)
    assert LOSSES["hinge"].g(FAKE).item() == pytest.approx(0.0)
    assert LOSSES["wgan_gp"].g(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)


def test_lsgan_hinge_wgan_d() -> None:
    assert LOSSES["lsgan"].d(REAL, FAKE, ONES_ZEROS).item() == pytest.approx(
        0.5 * ((1 + 1) / 2 + (1 + 1) / 2)
    )
    # hinge: relu(1 - real) + relu(1 + fake) = mean(0, 1) + mean(0, 2)
    assert LOSSES["hinge"].d(REAL, FAKE, ONES_ZEROS).item() == pytest.approx(0.5 + 1.0)
    # wgan: E[D(fake)] - E[D(real)]
    assert LOSSES["wgan_gp"].d(REAL, FAKE, ONES_ZEROS).item() == pytest.approx(0.0 - 1.0)


def test_gradient_penalty_is_zero_for_unit_slope_critic() -> None:
    class Linear1(torch.nn.Module):  # D(x) = sum(x) / sqrt(numel): gradient norm exactly 1
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).sum(1) / math.sqrt(x[0].numel())

    real, fake = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    assert gradient_penalty(Linear1(), real, fake).item() == pytest.approx(0.0, abs=1e-8)

    class Steep(torch.nn.Module):  # gradient norm 3: penalty (3 - 1)^2 = 4
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 3 * x.flatten(1).sum(1) / math.sqrt(x[0].numel())

    assert gradient_penalty(Steep(), real, fake).item() == pytest.approx(4.0, rel=1e-4)


def smoothing(option: str, **over: float) -> OmegaConf:
    node = OmegaConf.merge(
        OmegaConf.structured(LabelSmoothingConfig),
        OmegaConf.load(f"conf/label_smoothing/{option}.yaml"),
        over,
    )
    return node


@pytest.mark.parametrize(
    ("option", "real", "fake"),
    [("none", 1.0, 0.0), ("one_sided", 0.9, 0.0), ("two_sided", 0.9, 0.1)],
)
def test_fixed_targets(option: str, real: float, fake: float) -> None:
    r, f = make_targets(smoothing(option), 5)
    assert torch.allclose(r, torch.full((5,), real))
    assert torch.allclose(f, torch.full((5,), fake))


def test_noisy_targets_stay_in_their_band_and_flip() -> None:
    torch.manual_seed(0)
    r, f = make_targets(smoothing("noisy", flip_prob=0.0), 10_000)
    assert r.min() >= 0.8 and r.max() <= 1.0 and r.std() > 0.03
    assert f.min() >= 0.0 and f.max() <= 0.2 and f.std() > 0.03
    r, f = make_targets(smoothing("noisy", flip_prob=0.25), 10_000)
    flipped_real = (r <= 0.2).float().mean().item()  # real targets swapped for fake ones
    flipped_fake = (f >= 0.8).float().mean().item()
    assert flipped_real == pytest.approx(0.25, abs=0.02)
    assert flipped_fake == pytest.approx(0.25, abs=0.02)
