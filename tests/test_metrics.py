"""Tests of gan/metrics/scores.py: FID/KID through torchmetrics, PRDC through prdc, class statistics,
checkpoints.

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

from gan.core.ranges import to_unit_range
from gan.data.mnist import load_mnist_split
from gan.metrics.classifier import MNISTClassifier, freeze
from gan.metrics.scores import ClassifierFeatures, GanMetrics, class_stats, prdc_scores
from tests.helpers import SHARED_MNIST, needs_mnist, real_classifier


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
    assert set(floor) == {f"{k}_floor" for k in ("fid", "kid", *PRDC_KEYS)}
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


# ---- precision, recall, density, coverage ------------------------------------------------

PRDC_KEYS = ("precision", "recall", "density", "prdc_coverage")
UNIT_SQUARE = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]


def _prdc(real: list[list[float]], fake: list[list[float]], k: int) -> dict[str, float]:
    scores = prdc_scores(torch.tensor(real), torch.tensor(fake), nearest_k=k)
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in scores.values())
    return {key: value.item() for key, value in scores.items()}


def test_prdc_two_fakes_inside_two_far_away() -> None:
    # Reals: the unit square's corners. k=1 and k=2 alike, each real's ball has radius 1
    # (two neighbours at 1, the diagonal at 1.41). Fakes: a pair in the middle (0.71 and
    # 0.64 or 0.78 from every corner: inside all 4 balls) and a pair at (10, 10).
    fake = [[0.5, 0.5], [0.5, 0.6], [10.0, 10.0], [10.0, 10.1]]
    k1 = _prdc(UNIT_SQUARE, fake, k=1)
    assert k1["precision"] == pytest.approx(0.5), "2 of 4 fakes in some real ball"
    assert k1["density"] == pytest.approx(2.0), "(4 + 4 + 0 + 0) balls / 4 fakes / k=1 > 1"
    assert k1["coverage"] == pytest.approx(1.0), "the middle fake is in every corner's ball"
    # k=1: each fake's ball reaches its twin, 0.1 away, and holds no real: recall 0,
    # although coverage (built on the reals' balls) is 1.
    assert k1["recall"] == pytest.approx(0.0)
    # k=2: the middle fakes' second neighbour is a far fake (13.4 away): every real is
    # inside their balls. Density divides by k: the same 8 ball hits now give 1.
    k2 = _prdc(UNIT_SQUARE, fake, k=2)
    assert k2 == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 1.0})


def test_prdc_real_outlier_inflates_precision_not_density() -> None:
    # The mirror case: an outlying real at x=40 (k=2 radius 30) holds fakes far from every
    # other real, so they count for precision, but each adds only 1/k to density.
    real = [[0, 0], [0, 1], [1, 0], [10, 0], [10, 1], [11, 0], [40, 0]]
    fake = [[30, 0], [30, 1], [31, 0], [31, 1]]
    scores = _prdc(real, fake, k=2)
    assert scores == pytest.approx(
        {"precision": 1.0, "recall": 0.0, "density": 0.5, "coverage": 1 / 7}
    )


def test_prdc_fake_outlier_inflates_recall_not_coverage() -> None:
    # Reals: two pairs 1 apart (k=1 radius 1), at x=0 and x=10. Fakes: a pair just right of
    # the x=10 reals (0.64 from them, 0.78 from the far one of each) and one outlier at
    # x=-5, whose ball reaches its nearest fake, 15.5 away, and so holds all four reals
    # (5.0 and 15.0 away).
    real = [[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]]
    fake = [[10.5, 0.4], [10.5, 0.6], [-5.0, 0.5]]
    scores = _prdc(real, fake, k=1)
    assert scores["recall"] == pytest.approx(1.0), "the outlier's huge ball"
    assert scores["coverage"] == pytest.approx(0.5), "only the x=10 reals have a fake near"
    assert scores["precision"] == pytest.approx(2 / 3), "the outlier is in no real ball"
    assert scores["density"] == pytest.approx(4 / 3), "(2 + 2 + 0) balls / 3 fakes"


def test_prdc_needs_k_plus_two_samples() -> None:
    fake = [[0.5, 0.5], [0.5, 0.6], [10.0, 10.0], [10.0, 10.1], [3.0, 3.0]]
    assert all(v != v for v in _prdc(UNIT_SQUARE, fake, k=3).values()), "4 reals, k=3: NaN"
    five = [*UNIT_SQUARE, [0.5, 0.5]]
    assert all(v == v for v in _prdc(five, fake, k=3).values()), "5 of each suffice"
    assert all(v != v for v in _prdc(five, fake[:4], k=3).values()), "4 fakes, k=3: NaN"


def test_gan_metrics_prdc(random_clf: MNISTClassifier) -> None:
    g = torch.Generator().manual_seed(2)
    real = torch.rand(200, 1, 28, 28, generator=g)
    metrics = GanMetrics(random_clf, kid_subset_size=50)
    floor = metrics.set_real(real)
    # Real vs real at 100 a side: inside the ranges, not at the extremes of a broken score.
    for key in ("precision", "recall", "prdc_coverage"):
        assert 0.5 < floor[f"{key}_floor"] <= 1, floor
    assert 0.5 < floor["density_floor"] < 2, floor

    same = metrics.compute(real)
    assert all(same[k].dim() == 0 and same[k].dtype == torch.float32 for k in PRDC_KEYS)
    for key in ("precision", "recall", "prdc_coverage"):
        assert same[key].item() == 1, f"{key} of the reals themselves"
    # Each real's ball holds itself and its k-1 nearest (the k-th is on the sphere): k / k.
    assert same["density"].item() == pytest.approx(1, abs=0.01)
    logits = random_clf.logits_from_features(random_clf.features(real))
    assert torch.equal(same["coverage"], class_stats(logits)["coverage"]), "the class count"

    # Mode collapse: 100 copies of one real. Faithful (in the real manifold), not diverse.
    collapsed = metrics.compute(real[:1].expand(100, -1, -1, -1))
    assert collapsed["precision"].item() == 1
    assert collapsed["recall"].item() == 0, "the copies' balls have radius 0"
    assert collapsed["prdc_coverage"].item() < 0.1, "a few reals' balls around the one image"

    # nearest_k reaches prdc: the scores are prdc_scores' on the classifier's features.
    metrics3 = GanMetrics(random_clf, kid_subset_size=50, nearest_k=3)
    metrics3.set_real(real)
    fake = torch.rand(60, 1, 28, 28, generator=g) ** 2
    scores = metrics3.compute(fake)
    expected = prdc_scores(random_clf.features(real), random_clf.features(fake), nearest_k=3)
    assert expected["precision"] < 1 and expected["density"] != same["density"]
    for key, value in expected.items():
        name = "prdc_coverage" if key == "coverage" else key
        assert scores[name].item() == pytest.approx(value.item(), abs=1e-6), name

    few = metrics3.compute(fake[:4])  # fewer than k + 2 fakes: NaN, the rest as usual
    assert all(few[k].isnan() for k in PRDC_KEYS) and not few["fid"].isnan()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gan_metrics_prdc_on_cuda(random_clf: MNISTClassifier) -> None:
    real = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    metrics = GanMetrics(random_clf, kid_subset_size=16).to("cuda")
    floor = metrics.set_real(real)
    assert 0 < floor["precision_floor"] <= 1
    scores = metrics.compute(real)
    for key in PRDC_KEYS:
        assert scores[key].device.type == "cuda", key
    assert scores["precision"].item() == 1 and scores["prdc_coverage"].item() == 1


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
    # PRDC (k=5). Real digits: in each other's manifolds (contiguous blocks of the test split
    # share fewer writers than random halves do: ~0.85 precision and recall, coverage ~0.78,
    # against the floor's ~0.95). Noise: outside. The default classifier maps uniform noise to
    # one tight cluster (read as 2s and 8s) at the edge of the real manifold, where a few
    # atypical real digits have k-NN balls among the largest: precision counts every noise
    # image in one of those balls, and measured 0.03-0.66 over nine classifier seeds (Naeem et
    # al.'s real-outlier case), so it is not asserted. The robust scores are: at most 5 of the
    # 1,000 real balls hold any noise (coverage <= 0.005), and density <= 0.15 (one outlier
    # ball adds 1/k per fake), against ~0.65 for real digits. Collapse: faithful but not
    # diverse, recall and coverage no more than the ones' ~11% share of the reals.
    assert real["precision"] > 0.7 and real["recall"] > 0.7 and real["prdc_coverage"] > 0.5
    assert real["density"] > 0.4
    assert noise["prdc_coverage"] < 0.02 and noise["density"] < 0.3
    assert only_ones["precision"] > 0.8
    for scores in (one_copy, only_ones):
        assert scores["recall"] < 0.2 and scores["prdc_coverage"] < 0.2


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


def test_prdc_scores_only_the_first_fakes_past_its_cap(
    random_clf: MNISTClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its fake-vs-fake distances grow as M^2: past PRDC_MAX_FAKES the first ones stand in."""
    import gan.metrics.scores as scores_module

    g = torch.Generator().manual_seed(3)
    real = torch.rand(40, 1, 28, 28, generator=g)
    metrics = GanMetrics(random_clf, kid_subset_size=20, nearest_k=3)
    metrics.set_real(real)
    fake = torch.cat([torch.rand(30, 1, 28, 28, generator=g), real[:10]])  # the last 10: reals
    monkeypatch.setattr(scores_module, "PRDC_MAX_FAKES", 30)
    capped = metrics.compute(fake)
    first = prdc_scores(random_clf.features(real), random_clf.features(fake[:30]), nearest_k=3)
    whole = prdc_scores(random_clf.features(real), random_clf.features(fake), nearest_k=3)
    assert whole["precision"] != first["precision"]  # the tail would have changed it
    assert capped["precision"].item() == pytest.approx(first["precision"].item(), abs=1e-6)
    assert capped["density"].item() == pytest.approx(first["density"].item(), abs=1e-6)
