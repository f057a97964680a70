"""Shared fixtures: tiny MNIST files on disk and configs composed from the real conf/.

The helpers the tests share (the tiny-run overrides among them) are in tests/helpers.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers import TINY, compose_cfg
from tests.mnist_files import write_tiny_mnist

os.environ.setdefault("WANDB_MODE", "offline")  # tests never reach W&B's servers
os.environ.setdefault("WANDB_SILENT", "true")
_CACHE = Path(tempfile.mkdtemp(prefix="gan-cache-"))
os.environ.setdefault("GAN_CACHE", str(_CACHE))  # classifiers trained by tests stay out of ~/.cache


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding tiny train and test splits (64 images each) in torchvision's layout."""
    root = tmp_path_factory.mktemp("mnist")
    write_tiny_mnist(root, split="all", n=64)
    return root


@pytest.fixture
def make_cfg(tiny_root: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, on tiny data, writing into tmp_path/run."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        base = [*TINY, f"data.root={tiny_root}"] if tiny else []
        return compose_cfg(*base, *overrides, out=tmp_path / "run")

    return _make
