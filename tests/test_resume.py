"""Resume from the folder alone: `python -m gan.train ckpt_path=<run>` and nothing else.

    pytest tests/test_resume.py -m "slow or not slow"

Each runs `python -m gan.train` as a user does. The kill-and-resume tests, which need the
uninterrupted reference run, are in tests/faults/test_kill_resume.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, load_ckpt, run_cli, snapshot, train_existing_run


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m gan.train args...` from `cwd`, as a user runs it."""
    return run_cli("gan.train", *args, cwd=cwd)


@pytest.fixture
def finished(tiny_root: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    train_existing_run(tiny_root, run)
    return run


def test_overrides_that_change_the_run_are_refused_and_touch_nothing(
    finished: Path, tmp_path: Path
) -> None:
    before = snapshot(finished)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = cli(f"ckpt_path={finished}", "model=dcgan", "optimizer.lr=0.5", cwd=elsewhere)
    assert res.returncode == 1
    error = res.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "model=" in error and "optimizer.lr=0.5" in error
    assert "the run has 0.001" in error or "the run has" in error
    assert snapshot(finished) == before, "a refused resume changed the run folder"
    assert list(elsewhere.iterdir()) == []


def test_a_broken_checkpoint_leaves_the_folder_byte_identical(finished: Path) -> None:
    last = finished / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    before = snapshot(finished)
    res = cli(f"ckpt_path={finished}")
    assert res.returncode == 1 and "truncated or corrupt" in res.stderr
    assert snapshot(finished) == before


def test_harmless_overrides_continue_the_run(finished: Path) -> None:
    """A longer run and a different logger may change; the same value of another key too."""
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2", "logger=none", "model=mlp")
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_ckpt(finished / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert list((finished / ".hydra").glob("resume-*/overrides.yaml"))  # this command's record


def test_a_config_that_names_foreign_code_needs_trust_code(finished: Path, tmp_path: Path) -> None:
    config = finished / "config.yaml"
    marker = tmp_path / "code-ran.txt"
    text = config.read_text().replace(
        "_target_: gan.training.callbacks.LossPlot",
        f"_target_: pathlib.Path.write_text\n    self: {marker}\n    data: x",
    )
    config.write_text(text)
    before = snapshot(finished)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2")
    assert res.returncode == 1 and "trust_code=true" in res.stderr
    assert not marker.exists() and snapshot(finished) == before


def test_a_saved_config_cannot_grant_itself_trust(finished: Path, tmp_path: Path) -> None:
    config = finished / "config.yaml"
    text = config.read_text().replace("trust_code: false", "trust_code: true")
    text = text.replace(
        "_target_: gan.training.callbacks.LossPlot",
        f"_target_: pathlib.Path.write_text\n    self: {tmp_path / 'code-ran.txt'}\n    data: x",
    )
    config.write_text(text)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2")
    assert res.returncode == 1 and "trust_code=true" in res.stderr
    assert not (tmp_path / "code-ran.txt").exists()
