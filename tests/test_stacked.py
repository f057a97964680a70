"""Tests of the per-data-set classifiers and Stacked MNIST's scores: the StackedClassifier
wrapper, mode counting and KL on constructed samples, class statistics for any number of
classes, cache keys per data set. Tiny files only; GAN_CACHE points at a temporary folder."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from gan.metrics.classifier import MNISTClassifier, classifier_key, freeze, load_or_train
from gan.metrics.scores import GanMetrics, class_stats, mode_stats
from gan.metrics.stacked import StackedClassifier
from tests.mnist_files import write_tiny

REPO = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": 1, "progress_bar": False, "accelerator": "cpu"}


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GAN_CACHE", str(cache))  # never ~/.cache
    return cache


class DigitOracle(MNISTClassifier):
    """A fake MNIST classifier whose argmax we control: an image of constant value d / 9
    (plus a little noise) is digit d for sure. Features: the one-hot digit plus the noise."""

    def __init__(self) -> None:
        super().__init__(feature_dim=12)

    def features(self, x: Tensor) -> Tensor:
        x = self._prepare(x) * 0.3081 + 0.1307  # back to [0, 1], (B, 1, 28, 28)
        digit = (x.mean(dim=(1, 2, 3)) * 9).round().long().clamp(0, 9)  # (B,)
        noise = x[:, 0, 0, :2] - x.mean(dim=(1, 2, 3))[:, None]  # (B, 2): keeps FID finite
        return torch.cat([nn.functional.one_hot(digit, 10).float(), noise], dim=1)

    def logits_from_features(self, features: Tensor) -> Tensor:
        return 30 * features[:, :10]


def stacked_images(triples: Tensor, seed: int = 0) -> Tensor:
    """Digit triples (M, 3) -> images (M, 3, 28, 28) in [0, 1] that DigitOracle reads back."""
    g = torch.Generator().manual_seed(seed)
    noise = 0.01 * torch.rand(len(triples), 3, 28, 28, generator=g)
    return (triples.float()[:, :, None, None] / 9 + noise - 0.005).clamp(0, 1)


def triples_of(modes: Tensor) -> Tensor:
    """Modes (M,) in 0..999 -> digit triples (M, 3): mode = 100*a + 10*b + c."""
    return torch.stack([modes // 100, modes // 10 % 10, modes % 10], dim=1)


# ---- mode statistics ---------------------------------------------------------------------


def test_mode_stats_counts_modes_and_kl() -> None:
    every = torch.arange(10_000) % 1000  # each of the 1,000 modes 10 times
    s = mode_stats(every)
    assert s["modes"].item() == 1000 and s["kl"].item() == pytest.approx(0.0, abs=1e-5)
    ten = (torch.arange(10_000) % 10) * 111  # 000, 111, ..., 999: 10 equal modes
    s = mode_stats(ten)
    assert s["modes"].item() == 10
    assert s["kl"].item() == pytest.approx(math.log(1000 / 10), rel=1e-5)
    one = mode_stats(torch.full((50,), 7))
    assert one["modes"].item() == 1 and one["kl"].item() == pytest.approx(math.log(1000))
    skewed = torch.tensor([0] * 3 + [1])  # p = 3/4, 1/4
    expected = 0.75 * math.log(0.75 * 1000) + 0.25 * math.log(0.25 * 1000)
    assert mode_stats(skewed)["kl"].item() == pytest.approx(expected, rel=1e-5)
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in s.values())


def test_class_stats_for_any_number_of_classes() -> None:
    onehot = nn.functional.one_hot
    letters = class_stats(onehot(torch.arange(260) % 26, 26).float() * 20)
    assert letters["coverage"].item() == 26 and letters["class_share"].shape == (26,)
    assert letters["mnist_score"].item() == pytest.approx(26, rel=1e-3)
    assert letters["coverage_entropy"].item() == pytest.approx(math.log(26), rel=1e-5)
    # 1,000 classes: covered at >= 0.02% (min_share 2% scaled by 10 / 1000): 2 of 10,000
    labels = torch.cat([torch.arange(998).repeat(10), torch.tensor([998] * 2 + [999] * 1)])
    stats = class_stats(onehot(labels, 1000).float() * 20)  # 9,983 samples
    assert stats["coverage"].item() == 999, "1 of 9,983 samples (0.01%) is not covered"
    assert stats["class_share"].shape == (1000,)


# ---- the wrapper -------------------------------------------------------------------------


def test_stacked_classifier_is_mnists_per_channel() -> None:
    torch.manual_seed(0)
    base = freeze(MNISTClassifier())
    clf = StackedClassifier(base)
    x = torch.rand(6, 3, 28, 28)
    feats = clf.features(x)
    assert feats.shape == (6, 384) and clf.feature_dim == 384 and clf.channels == 3
    for c in range(3):
        assert torch.allclose(
            feats[:, 128 * c : 128 * (c + 1)], base.features(x[:, c : c + 1]), atol=1e-5
        )
    joint = clf.logits_from_features(feats)  # (6, 1000)
    assert joint.shape == (6, 1000) and torch.allclose(
        joint.logsumexp(1), torch.zeros(6), atol=1e-5
    )
    per = [base(x[:, c : c + 1]).log_softmax(1) for c in range(3)]  # 3 x (6, 10)
    a, b, c = (p.argmax(1) for p in per)
    assert torch.equal(joint.argmax(1), 100 * a + 10 * b + c)
    assert torch.allclose(joint[:, 123], per[0][:, 1] + per[1][:, 2] + per[2][:, 3], atol=1e-5)
    assert clf.device == torch.device("cpu") and clf.head is base.head
    parent = nn.ModuleDict({"clf": clf, "g": nn.Linear(2, 2)})
    parent.train()
    assert not any(m.training for m in clf.modules()), "frozen: eval mode for good"
    with pytest.raises(ValueError, match="3, H, W"):
        clf.features(torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize(("n_modes", "kl"), [(1000, 0.0), (10, math.log(100))])
def test_gan_metrics_count_stacked_modes(n_modes: int, kl: float) -> None:
    clf = StackedClassifier(freeze(DigitOracle()))
    metrics = GanMetrics(clf, kid_subset_size=50)
    metrics.set_real(stacked_images(triples_of(torch.arange(1000)), seed=1))
    modes = (torch.arange(10_000) % n_modes) * (1000 // n_modes)  # n equal modes
    scores = metrics.compute(stacked_images(triples_of(modes)))
    assert scores["modes"].item() == n_modes
    assert scores["kl"].item() == pytest.approx(kl, abs=1e-4)
    assert scores["coverage"].item() == n_modes and scores["class_share"].shape == (1000,)
    assert scores["coverage_entropy"].item() == pytest.approx(math.log(n_modes), rel=1e-4)
    zero_dim = {k for k, v in scores.items() if v.dim() == 0}
    prdc = {"precision", "recall", "density", "prdc_coverage"}
    assert (
        zero_dim
        == {"fid", "kid", "mnist_score", "coverage", "coverage_entropy", "modes", "kl"} | prdc
    )
    assert all(torch.isfinite(v).all() for v in scores.values())


def test_plain_metrics_have_no_mode_stats() -> None:
    metrics = GanMetrics(freeze(MNISTClassifier(num_classes=26)), kid_subset_size=8)
    metrics.set_real(torch.rand(20, 1, 28, 28))
    scores = metrics.compute(torch.rand(16, 1, 28, 28))
    assert "modes" not in scores and scores["class_share"].shape == (26,)
    with pytest.raises(ValueError, match="1, H, W"):
        metrics.compute(torch.rand(16, 3, 28, 28))


# ---- classifiers per data set ------------------------------------------------------------


def test_key_differs_by_data_set_and_mnists_is_unchanged() -> None:
    x, y = torch.zeros(3, 28, 28, dtype=torch.uint8), torch.arange(3)
    mnist = classifier_key("test", x, y)
    assert mnist == classifier_key("test", x, y, dataset="mnist")
    assert mnist.startswith("test-n3-"), "the key of earlier versions: cached files stay valid"
    keys = {classifier_key("test", x, y, dataset=d) for d in ("fashion_mnist", "kmnist")}
    assert len(keys | {mnist}) == 3
    assert classifier_key("test", x, y, dataset="kmnist") == f"kmnist-{mnist}"


def test_tiny_fashion_classifier_trains_and_is_cached(tmp_path: Path, _tmp_cache: Path) -> None:
    write_tiny(tmp_path, "fashion_mnist", "test", n=64)
    write_tiny(tmp_path, "mnist", "test", n=64)  # the same pixels and labels, another data set
    clf = load_or_train(str(tmp_path), split="test", dataset="fashion_mnist", **FAST)
    info = clf.info
    assert info is not None and info.trained and info.dataset == "fashion_mnist"
    assert info.key.startswith("fashion_mnist-test-n52-") and info.num_train == 52
    assert clf.head.out_features == 10 and not clf.training
    mnist = load_or_train(str(tmp_path), split="test", **FAST).info
    assert mnist is not None and mnist.trained and mnist.path != info.path
    again = load_or_train(str(tmp_path), split="test", dataset="fashion_mnist", **FAST)
    assert again.info is not None and not again.info.trained and again.info.path == info.path
    assert sorted(p.name for p in (_tmp_cache / "classifier").iterdir()) == sorted(
        [info.path.name, mnist.path.name]
    )


def test_emnist_classifier_has_26_classes(tmp_path: Path) -> None:
    write_tiny(tmp_path, "emnist_letters", "test", n=60)
    clf = load_or_train(str(tmp_path), split="test", dataset="emnist_letters", **FAST)
    assert clf.head.out_features == 26 and clf.num_classes == 26
    again = load_or_train(str(tmp_path), split="test", dataset="emnist_letters", **FAST)
    assert again.info is not None and not again.info.trained and again.num_classes == 26


def test_stacked_mnist_gets_mnists_classifier_per_channel(tmp_path: Path) -> None:
    write_tiny(tmp_path, "mnist", "test", n=64)
    clf = load_or_train(str(tmp_path), split="test", dataset="stacked_mnist", **FAST)
    assert isinstance(clf, StackedClassifier) and clf.num_classes == 1000
    mnist = load_or_train(str(tmp_path), split="test", **FAST)
    assert mnist.info is not None and not mnist.info.trained, "trained once, for MNIST"
    assert clf.info is not None and clf.info.path == mnist.info.path


def test_cli_trains_a_fashion_classifier(tmp_path: Path) -> None:
    write_tiny(tmp_path / "data", "fashion_mnist", "test", n=64)
    env = {**os.environ, "PYTHONPATH": str(REPO), "GAN_CACHE": str(tmp_path / "cache")}
    args = [f"data.root={tmp_path / 'data'}", "data.split=test", "data.download=false"]
    args += ["data.dataset=fashion_mnist", "max_epochs=1", "progress_bar=false"]
    out = subprocess.run(
        [sys.executable, "-m", "gan.classifier", *args, "accelerator=cpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Fashion-MNIST held-out accuracy:" in out.stdout
    [path] = (tmp_path / "cache" / "classifier").glob("fashion_mnist-*.pt")
    assert f"classifier: {path}" in out.stdout
