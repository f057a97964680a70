"""Tests of gan/metrics.py: FID/KID through torchmetrics, class statistics, checkpoints.

    .venv/bin/pytest -q tests/test_metrics.py                      # fast ones
    .venv/bin/pytest -q tests/test_metrics.py -m "slow or not slow" # + the full classifier

The ordering test uses a classifier trained on the real MNIST test split (../shared/mnist;
skipped without it): in the fast run a 1-epoch one (~95% accurate, ~15 s to train), in
the slow run the default recipe. Both are trained once per session into a temporary
GAN_CACHE. The real and "generated" images it scores are the 2,000 test images the
classifier never saw.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from gan.classifier import MNISTClassifier, freeze
from gan.metrics import ClassifierFeatures, GanMetrics, class_stats, to_unit_range
from gan.mnist import load_mnist_split
from tests.conftest import SHARED_MNIST
from tests.test_classifier import HAS_SHARED, real_classifier

needs_mnist = pytest.mark.skipif(not HAS_SHARED, reason=f"no MNIST test split in {SHARED_MNIST}")


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_CACHE", str(tmp_path / "cache"))  # never ~/.cache


@pytest.fixture
def random_clf() -> MNISTClassifier:
    """An untrained classifier: enough for the plumbing tests, and instant."""
    torch.manual_seed(0)
    return freeze(MNISTClassifier())


@pytest.fixture(scope="session")
def held_out() -> tuple[Tensor, Tensor]:
    """The real test split's last 2,000 images, float (2000, 1, 28, 28) in [0, 1], and labels."""
    x, y = load_mnist_split(str(SHARED_MNIST), "test")
    return x[8000:].unsqueeze(1).float() / 255, y[8000:]


# ---- plumbing ----------------------------------------------------------------------------


def test_to_unit_range() -> None:
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 1.5])
    assert torch.equal(to_unit_range(x, "tanh"), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    assert torch.equal(to_unit_range(x, "sigmoid"), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="tanh"):
        to_unit_range(x, "relu")


def test_fid_through_torchmetrics_matches(random_clf: MNISTClassifier) -> None:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(64, 1, 28, 28, generator=g), torch.rand(48, 1, 28, 28, generator=g) ** 2
    # The wrapper alone, as torchmetrics documents custom feature networks: images in.
    fid = FrechetInceptionDistance(feature=ClassifierFeatures(random_clf), normalize=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    metrics = GanMetrics(random_clf, kid_subset_size=16)
    metrics.set_real(real)
    scores = metrics.compute(fake)
    assert scores["fid"].item() == pytest.approx(fid.compute().item(), rel=1e-4)
    assert scores["fid"].dtype == torch.float32 and scores["class_share"].shape == (10,)


def test_mnist_score_is_torchmetrics_inception_score_with_one_split(
    random_clf: MNISTClassifier,
) -> None:
    logits = torch.randn(200, 10) * 3  # (200, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the buffer warning, and std() of a single split
        inception = InceptionScore(feature=nn.Identity(), splits=1, normalize=False)
        inception.update(logits)
        expected, _ = inception.compute()
    assert class_stats(logits)["mnist_score"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_class_stats_rule() -> None:
    labels = torch.tensor([3] * 90 + [5] * 9 + [7] * 1)  # 90%, 9%, 1% of 100 samples
    stats = class_stats(torch.nn.functional.one_hot(labels, 10).float() * 20, min_share=0.02)
    assert stats["coverage"].item() == 2, "7 holds 1% < 2% of the samples: not covered"
    assert stats["class_share"][[3, 5, 7]].tolist() == pytest.approx([0.9, 0.09, 0.01])
    expected = -(
        0.9 * torch.tensor(0.9).log()
        + 0.09 * torch.tensor(0.09).log()
        + 0.01 * torch.tensor(0.01).log()
    )
    assert stats["coverage_entropy"].item() == pytest.approx(expected.item(), rel=1e-5)
    balanced = class_stats(torch.nn.functional.one_hot(torch.arange(100) % 10, 10).float() * 20)
    assert balanced["coverage"].item() == 10
    assert balanced["coverage_entropy"].item() == pytest.approx(
        torch.log(torch.tensor(10.0)).item()
    )
    assert balanced["mnist_score"].item() == pytest.approx(10, rel=1e-3), "sure and balanced: 10"


def test_real_side_is_kept_and_fake_side_reset(random_clf: MNISTClassifier) -> None:
    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(100, 1, 28, 28, generator=g), torch.rand(80, 1, 64, 64, generator=g)
    metrics = GanMetrics(random_clf, kid_subset_size=50)
    with pytest.raises(RuntimeError, match="set_real"):
        metrics.compute(fake)
    floor = metrics.set_real(real)
    assert set(floor) == {"fid_floor", "kid_floor"}
    rng = torch.get_rng_state()
    first = metrics.compute(fake)
    assert torch.equal(torch.get_rng_state(), rng), "KID's subsets do not consume the global RNG"
    assert int(metrics.fid.real_features_num_samples) == 100
    assert int(metrics.fid.fake_features_num_samples) == 0 and metrics.kid.fake_features == []
    second = metrics.compute(fake)
    for key in first:
        assert torch.equal(first[key], second[key]), f"{key} changed between identical calls"
    with pytest.raises(ValueError, match="to_unit_range"):
        metrics.compute(fake * 2 - 1)  # tanh-range images given as they are


def test_classifier_stays_frozen_and_out_of_checkpoints(random_clf: MNISTClassifier) -> None:
    parent = nn.Module()
    parent.layer = nn.Linear(3, 3)
    parent.metrics = GanMetrics(random_clf)
    parent.train()
    assert not random_clf.training and not any(m.training for m in random_clf.modules())
    assert not any(p.requires_grad for p in parent.metrics.parameters())
    state = parent.state_dict()
    assert set(state) == {"layer.weight", "layer.bias"}, "no classifier weights in checkpoints"
    before = [p.clone() for p in random_clf.parameters()]
    parent.load_state_dict(state)  # strict: nothing missing
    assert all(torch.equal(a, b) for a, b in zip(before, random_clf.parameters()))


# ---- the scores order things correctly ---------------------------------------------------


def _check_ordering(
    clf: MNISTClassifier, held_out: tuple[Tensor, Tensor], min_score: float
) -> None:
    x, y = held_out  # (2000, 1, 28, 28), (2000,)
    metrics = GanMetrics(clf)
    floor = metrics.set_real(x[:1000])
    real = metrics.compute(x[1000:])  # 1,000 other real digits
    noise = metrics.compute(torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    ones = x[y == 1]
    one_copy = metrics.compute(ones[:1].expand(500, -1, -1, -1))  # 500 copies of one "1"
    only_ones = metrics.compute(ones[:200])  # every real "1" there is, nothing else
    for name, scores in [("noise", noise), ("one copy", one_copy), ("only ones", only_ones)]:
        for key in ("fid", "kid"):
            assert scores[key] > 10 * real[key], (
                f"{key}: {name} {scores[key]:.1f} vs real {real[key]:.1f}"
            )
    assert real["fid"] < 2 * floor["fid_floor"], (real, floor)
    assert real["coverage"] == 10 and real["mnist_score"] > min_score
    assert real["coverage_entropy"] > 0.98 * torch.log(torch.tensor(10.0))
    for scores in (one_copy, only_ones):
        assert scores["coverage"] == 1 and scores["class_share"][1] > 0.95
        assert scores["mnist_score"] < 1.5


@needs_mnist
def test_scores_order_real_noise_and_collapse_quick_classifier(
    tmp_path_factory: pytest.TempPathFactory, held_out: tuple[Tensor, Tensor]
) -> None:
    # ~95% accurate, less sure of itself: a lower MNIST score on real digits
    _check_ordering(real_classifier(tmp_path_factory, max_epochs=1), held_out, min_score=6)


@pytest.mark.slow
@needs_mnist
def test_scores_order_real_noise_and_collapse(
    tmp_path_factory: pytest.TempPathFactory, held_out: tuple[Tensor, Tensor]
) -> None:
    _check_ordering(real_classifier(tmp_path_factory), held_out, min_score=8.5)
