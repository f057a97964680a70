"""Shared fixtures: tiny MNIST files on disk and configs composed from the real conf/."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from gan.training.config import register
from tests.mnist_files import write_tiny_mnist

CONF = Path(__file__).resolve().parents[1] / "conf"
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"

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


TINY = [
    "data.download=false",
    "data.val_size=16",
    "data.batch_size=8",
    "data.val_batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "metrics.num_samples=64",  # keep the FID-like checks cheap on tiny data
    "metrics.classifier_epochs=1",
]


@pytest.fixture
def make_cfg(tiny_root: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, on tiny data, writing into tmp_path/run."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        register()
        base = [*TINY, f"data.root={tiny_root}"] if tiny else []
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[*base, *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    return _make


def cli_error(main: Callable[[list[str]], object], *args: str) -> str:
    """The one `error: ...` line a `python -m gan.<tool>` entry exits with on bad input."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    message = str(info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message
