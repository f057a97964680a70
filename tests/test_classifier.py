"""Tests of gan/classifier.py: the frozen network, the cache, the command line, the accuracy.

    .venv/bin/pytest -q tests/test_classifier.py                      # fast ones (~30 s)
    .venv/bin/pytest -q tests/test_classifier.py -m "slow or not slow" # + the real-MNIST accuracy

Every test points GAN_CACHE at a temporary folder: ~/.cache is never touched. The slow
test needs the real MNIST test split in ../shared/mnist and is skipped without it.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import gan.metrics.classifier as C
from gan.data.mnist import load_mnist_split
from gan.metrics.classifier import MNISTClassifier, cache_dir, classifier_key, freeze, load_or_train
from gan.utils.errors import GanError
from tests.helpers import SHARED_MNIST, cli_env, needs_mnist, real_classifier, run_cli
from tests.mnist_files import write_tiny_mnist

FAST = {"max_epochs": 1, "progress_bar": False, "accelerator": "cpu"}


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GAN_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_test_split(tmp_path: Path) -> Path:
    """A folder holding only a tiny test split (64 images): the offline layout."""
    write_tiny_mnist(tmp_path / "a", split="test", n=64, seed=0)
    return tmp_path / "a"


# ---- the network -------------------------------------------------------------------------


def test_shapes_and_64px_input() -> None:
    torch.manual_seed(0)
    clf = freeze(MNISTClassifier())
    x = torch.rand(5, 1, 28, 28)  # (B, 1, 28, 28) in [0, 1]
    assert clf.features(x).shape == (5, 128)
    assert clf(x).shape == (5, 10)
    big = torch.nn.functional.interpolate(x, size=64, mode="nearest")  # (5, 1, 64, 64)
    assert clf(big).shape == (5, 10)
    assert (clf.features(x) >= 0).all(), "penultimate features are taken after the ReLU"


def test_frozen_classifier_stays_in_eval_mode_under_a_parent() -> None:
    clf = freeze(MNISTClassifier())
    parent = nn.ModuleDict({"clf": clf, "head": nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training, "the parent's own layers do switch to training"
    assert not any(m.training for m in clf.modules()), "dropout must stay off once frozen"
    assert not any(p.requires_grad for p in clf.parameters())
    clf.train()  # even when asked directly
    assert not clf.training
    assert not MNISTClassifier().train().frozen, "an unfrozen classifier trains as usual"


# ---- cache -------------------------------------------------------------------------------


def test_cache_dir_follows_gan_cache(_tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == _tmp_cache
    monkeypatch.delenv("GAN_CACHE")
    assert cache_dir() == Path("~/.cache/gan").expanduser()


def test_key_names_split_size_and_data() -> None:
    x, y = torch.zeros(3, 28, 28, dtype=torch.uint8), torch.arange(3)
    key = classifier_key("test", x, y)
    assert key.startswith("test-n3-") and key.endswith(f"-{C.ARCH}")
    assert classifier_key("test", x, y) == key, "deterministic"
    x2 = x.clone()
    x2[0, 0, 0] = 1
    assert classifier_key("test", x2, y) != key, "one changed pixel changes the key"
    assert classifier_key("train", x, y) != key


def test_second_call_loads_from_the_cache(
    tiny_test_split: Path, _tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = torch.get_rng_state()
    clf = load_or_train(str(tiny_test_split), split="test", **FAST)
    assert torch.equal(torch.get_rng_state(), rng), "training leaves the global RNG alone"
    info = clf.info
    assert info is not None and info.trained
    assert info.path.parent == _tmp_cache / "classifier" and info.path.is_file()
    assert info.num_train == 52 and info.held_out == "the last 12 images of the test split"
    assert not any(p.requires_grad for p in clf.parameters()) and not clf.training
    saved = torch.load(info.path, weights_only=True)
    assert {"state_dict", "feature_dim", "key", "accuracy"} <= saved.keys()
    mtime = info.path.stat().st_mtime_ns

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_or_train trained although the cache holds the classifier")

    monkeypatch.setattr(C, "ClassifierModule", no_training)
    again = load_or_train(str(tiny_test_split), split="test", **FAST)
    assert again.info is not None and not again.info.trained
    assert again.info.path == info.path and info.path.stat().st_mtime_ns == mtime
    assert again.info.accuracy == pytest.approx(info.accuracy)
    for a, b in zip(clf.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert list(info.path.parent.iterdir()) == [info.path], "no temporary file left behind"


def test_different_data_gets_a_different_file(tiny_test_split: Path, tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path / "b", split="test", n=64, seed=1)
    a = load_or_train(str(tiny_test_split), split="test", **FAST).info
    b = load_or_train(str(tmp_path / "b"), split="test", **FAST).info
    assert a is not None and b is not None and b.trained
    assert a.key != b.key and a.path != b.path and a.path.is_file() and b.path.is_file()


def test_unreadable_cache_file_is_replaced(
    tiny_test_split: Path, caplog: pytest.LogCaptureFixture
) -> None:
    info = load_or_train(str(tiny_test_split), split="test", **FAST).info
    assert info is not None
    info.path.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="gan.classifier"):
        again = load_or_train(str(tiny_test_split), split="test", **FAST).info
    assert again is not None and again.trained, "a corrupt file is retrained, with a warning"
    assert "unreadable" in caplog.text
    assert torch.load(info.path, weights_only=True)["key"] == info.key


def test_train_split_is_measured_on_the_test_split(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path / "both", split="all", n=64)
    info = load_or_train(str(tmp_path / "both"), split="train", **FAST).info
    assert info is not None and info.num_train == 64 and info.held_out == "the test split"
    write_tiny_mnist(tmp_path / "train_only", split="train", n=64)
    info = load_or_train(str(tmp_path / "train_only"), split="train", **FAST).info
    assert info is not None and info.num_train == 52, "no test split: hold out the last 12"


def test_missing_data_is_a_gan_error(tmp_path: Path) -> None:
    with pytest.raises(GanError, match="MNIST data not found"):
        load_or_train(str(tmp_path / "empty"), split="test", **FAST)
    with pytest.raises(GanError, match="data.split"):
        load_or_train(str(tmp_path), split="valid", **FAST)


# ---- command line ------------------------------------------------------------------------


def _cli(cwd: Path, cache: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "gan.classifier", *overrides, cwd=cwd, env=cli_env(GAN_CACHE=str(cache)), timeout=300
    )


def test_cli_trains_then_reports_the_cache(tiny_test_split: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cli-cache"
    args = [
        f"data.root={tiny_test_split}",
        "data.split=test",
        "data.download=false",
        "max_epochs=1",
        "progress_bar=false",
        "accelerator=cpu",
    ]
    out = _cli(tmp_path, cache, *args)
    assert out.returncode == 0, out.stderr
    files = list((cache / "classifier").glob("*.pt"))
    assert len(files) == 1
    assert f"classifier: {files[0]}" in out.stdout
    assert "held-out accuracy:" in out.stdout and "trained in" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "cli-cache"], "no run folder"

    out = _cli(tmp_path, cache, *args)
    assert out.returncode == 0, out.stderr
    assert "from the cache" in out.stdout and f"classifier: {files[0]}" in out.stdout


def test_cli_reports_errors_without_traceback(tmp_path: Path) -> None:
    out = _cli(
        tmp_path,
        tmp_path / "cli-cache",
        f"data.root={tmp_path / 'nothing'}",
        "data.download=false",
        "max_epochs=1",
    )
    assert out.returncode != 0
    assert "error: MNIST data not found" in out.stderr and "Traceback" not in out.stderr


# ---- accuracy on real MNIST --------------------------------------------------------------


@pytest.mark.slow
@needs_mnist
def test_offline_classifier_reaches_97_percent(tmp_path_factory: pytest.TempPathFactory) -> None:
    clf = real_classifier(tmp_path_factory)  # the default recipe, on the first 8,000 test images
    info = clf.info
    assert info is not None and info.num_train == 8000
    x, y = load_mnist_split(str(SHARED_MNIST), "test")  # (10000, 28, 28) uint8, (10000,)
    held_x, held_y = x[8000:].unsqueeze(1).float() / 255, y[8000:]  # never trained on
    with torch.no_grad():
        acc = (clf(held_x).argmax(1) == held_y).float().mean().item()
    assert acc == pytest.approx(info.accuracy, abs=1e-4), "the stored accuracy is the real one"
    assert acc >= 0.97, f"held-out accuracy {acc:.4f}"
