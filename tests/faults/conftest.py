"""Fixtures of the fault tests: the run folder no bad input may touch, the broken inputs,
and the kill tests' data and uninterrupted reference runs.

Package-scoped: made once for all the fault tests, as when they were one module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    TOTAL,
    Existing,
    load_ckpt,
    make_inputs,
    snapshot,
    train_cli,
    train_existing_run,
    warm_classifier,
)
from tests.mnist_files import write_tiny_mnist


@pytest.fixture(scope="package")
def existing_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Existing:
    """A finished run folder (mlp, no EMA) that no bad input may touch."""
    run = tmp_path_factory.mktemp("existing") / "run"
    train_existing_run(tiny_root, run)
    return Existing(run, snapshot(run))


@pytest.fixture(scope="package")
def inputs(
    existing_run: Existing, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The broken files and folders the bad-input cases point at (`make_inputs`)."""
    base = tmp_path_factory.mktemp("inputs")
    return make_inputs(base, tiny_root, existing_run.path / "checkpoints" / "last.ckpt")


@pytest.fixture(scope="package")
def kill_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 images per split: 30 batches of 8 per epoch after 16 held out."""
    root = tmp_path_factory.mktemp("mnist256")
    write_tiny_mnist(root, split="all", n=256)
    return root


@pytest.fixture(scope="package")
def run_a(kill_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run."""
    warm_classifier(kill_data)
    run = tmp_path_factory.mktemp("reference") / "a"
    res = train_cli(kill_data, run)
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_ckpt(run / "checkpoints" / "last.ckpt")["gan_iteration"] == TOTAL
    return run


@pytest.fixture(scope="package")
def run_a_no_metrics(kill_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run with metrics.enabled=false."""
    run = tmp_path_factory.mktemp("reference") / "a-no-metrics"
    res = train_cli(kill_data, run, "metrics.enabled=false")
    assert res.returncode == 0, res.stderr[-3000:]
    return run
