"""The in-process cousins of the kill tests: a crash (an exception) or a SIGTERM at every
kind of save point, then a resume, bit-exact with the uninterrupted run; and a finished run
continued for more epochs.

conftest's tiny data: 6 iterations per epoch, a save every 3.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from omegaconf import DictConfig, open_dict

from gan.training.faults import Interrupted
from gan.training.run import train
from tests.helpers import (
    EVERY,
    assert_same_metrics,
    assert_same_training_state,
    load_ckpt,
    val_fid_epochs,
    warm_classifier,
)


class CrashAt(L.Callback):
    """Test helper: raise before iteration `at` runs, as a crash would (once per instance)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.iteration + 1 == self.at:
            raise RuntimeError(f"crash before iteration {self.at}")


class CrashIn(L.Callback):
    """Test helper: raise in `hook` at iteration `at` (once), as a crash there would.

    `hook`: `on_validation_start` or `on_train_epoch_end` (after `Checkpointing`'s).
    """

    def __init__(self, hook: str, at: int) -> None:
        self.hook, self.at, self.done = hook, at, False

    def _crash(self, hook: str, trainer: L.Trainer, pl_module: Any) -> None:
        if self.done or hook != self.hook or trainer.sanity_checking:
            return
        if pl_module.iteration == self.at:
            self.done = True
            raise RuntimeError(f"crash in {hook} at iteration {self.at}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._crash("on_validation_start", trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._crash("on_train_epoch_end", trainer, pl_module)


class SigtermAt(L.Callback):
    """Test helper: SIGTERM to this process right before iteration `at` runs (once)."""

    def __init__(self, at: int) -> None:
        self.at, self.done = at, False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if not self.done and pl_module.iteration + 1 == self.at:
            self.done = True
            os.kill(os.getpid(), signal.SIGTERM)  # Checkpointing's handler: save, then exit


@pytest.mark.parametrize(
    ("at", "extra"),
    [
        (11, ()),
        (7, ()),
        (8, ("condition=acgan",)),
        # each stabiliser keeps state (D's power-iteration vectors, the lazy R1/R2
        # schedule) or draws from the RNG (DiffAugment), and must survive a resume
        (8, ("stabilize.spectral_norm=true",)),
        (11, ("stabilize.r1=1", "stabilize.r2=1", "stabilize.reg_every=4")),
        (8, ("stabilize.diffaug=[translation,cutout,color]", "perf.reuse_fake=true")),
        (11, ("loss=rpgan", "stabilize.topk=0.5")),
        # ADA's p and its unfinished interval (saved at 6: 2 of 4 D updates in) resume
        (8, ("stabilize.ada=true", "stabilize.ada_p0=0.5", "stabilize.ada_kimg=1")),
        # the lr schedule's place in the run is saved (Lightning's lr_schedulers)
        (8, ("optimizer.schedule=linear", "optimizer.decay_start=0.25")),
    ],
    ids=[
        "mid-epoch",
        "after-an-epoch-end-save",
        "class-conditional",
        "spectral-norm",
        "lazy-r1-r2",
        "diffaug",
        "rpgan-topk",
        "ada",
        "lr-schedule",
    ],
)
def test_crash_and_resume_in_process_is_bit_exact(
    make_cfg: Callable[..., DictConfig],
    tiny_root: Path,
    tmp_path: Path,
    at: int,
    extra: tuple[str, ...],
) -> None:
    """The fast cousin of the SIGKILL test: 6 iterations per epoch, saves every 3."""
    warm_classifier(tiny_root)
    args = (
        "model=mlp",
        *extra,
        "trainer.max_epochs=2",
        "ema.enabled=true",
        f"callbacks.checkpointing.every_n_iterations={EVERY}",
    )
    a = make_cfg(*args)
    a.paths.output_dir = str(tmp_path / "a")
    train(a)
    b = make_cfg(*args)
    b.paths.output_dir = str(tmp_path / "b")
    with open_dict(b):
        b.callbacks.crash = {"_target_": "tests.faults.test_crash_resume.CrashAt", "at": at}
    with pytest.raises(RuntimeError, match="crash before"):
        train(b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert load_ckpt(last)["gan_iteration"] == (at - 1) - (at - 1) % EVERY
    with open_dict(b):
        del b.callbacks.crash
        b.ckpt_path = str(last)
    train(b)
    assert_same_training_state(tmp_path / "a" / "checkpoints" / "last.ckpt", last)


def test_ada_on_a_limited_subset_resumes_bit_exact_with_the_same_subset(
    make_cfg: Callable[..., DictConfig], tiny_root: Path, tmp_path: Path
) -> None:
    """data.limit=24 of the 48 training images: 3 iterations per epoch, a save every 3."""
    warm_classifier(tiny_root)
    args = (
        "model=mlp",
        "data.limit=24",
        "stabilize.ada=true",
        "stabilize.ada_p0=0.5",
        "stabilize.ada_kimg=1",
        "stabilize.ada_interval=2",
        "trainer.max_epochs=3",
        f"callbacks.checkpointing.every_n_iterations={EVERY}",
    )
    a = make_cfg(*args)
    a.paths.output_dir = str(tmp_path / "a")
    train(a)
    b = make_cfg(*args)
    b.paths.output_dir = str(tmp_path / "b")
    with open_dict(b):
        b.callbacks.crash = {"_target_": "tests.faults.test_crash_resume.CrashAt", "at": 5}
    with pytest.raises(RuntimeError, match="crash before"):
        train(b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert load_ckpt(last)["gan_ada"]["updates"] == 3  # mid-interval: 1 of 2 D updates in
    with open_dict(b):
        del b.callbacks.crash
        b.ckpt_path = str(last)
    train(b)
    ref = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert_same_training_state(ref, last)
    ca, cb = load_ckpt(ref), load_ckpt(last)
    assert ca["gan_ada"]["p"] != 0.5  # p moved, and resumed to the same value
    subset = ca["MNISTDataModule"]["limit_indices"]
    assert len(subset) == 24 and torch.equal(subset, cb["MNISTDataModule"]["limit_indices"])


FAST_ARGS = (
    "model=mlp",
    "ema.enabled=true",
    f"callbacks.checkpointing.every_n_iterations={EVERY}",
)  # conftest's tiny data: 6 iterations per epoch, so every epoch's last one is a save's


@pytest.fixture
def fast_reference(
    make_cfg: Callable[..., DictConfig], tiny_root: Path, tmp_path: Path
) -> Callable[..., Path]:
    """`reference(*extra)`: last.ckpt of an uninterrupted 2-epoch run with those overrides."""
    warm_classifier(tiny_root)

    def reference(*extra: str) -> Path:
        a = make_cfg(*FAST_ARGS, "trainer.max_epochs=2", *extra)
        a.paths.output_dir = str(tmp_path / "a")
        train(a)
        return tmp_path / "a" / "checkpoints" / "last.ckpt"

    return reference


@pytest.mark.parametrize(
    ("hook", "expected"),
    [("on_validation_start", 3), ("on_train_epoch_end", 6)],
    ids=["killed-in-validation-after-the-epochs-last-batch", "after-the-epoch-end-save"],
)
def test_crash_at_an_epochs_end_and_resume_in_process_is_bit_exact(
    make_cfg: Callable[..., DictConfig],
    fast_reference: Callable[..., Path],
    tmp_path: Path,
    hook: str,
    expected: int,
) -> None:
    """Iteration 6 ends epoch 0 and is a periodic save's: that save waits for validation."""
    a = fast_reference()
    b = make_cfg(*FAST_ARGS, "trainer.max_epochs=2")
    b.paths.output_dir = str(tmp_path / "b")
    with open_dict(b):
        b.callbacks.crash = {
            "_target_": "tests.faults.test_crash_resume.CrashIn",
            "hook": hook,
            "at": 6,
        }
    with pytest.raises(RuntimeError, match="crash in"):
        train(b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    saved = load_ckpt(last)["gan_iteration"]
    with open_dict(b):
        del b.callbacks.crash
        b.ckpt_path = str(last)
    train(b)
    assert_same_training_state(a, last)
    assert saved == expected
    assert val_fid_epochs(tmp_path / "b") == [0, 1], "an epoch went unvalidated, or twice"
    assert_same_metrics(tmp_path / "a", tmp_path / "b")


def test_sigterm_in_an_epochs_last_iteration_in_process_saves_after_validation(
    make_cfg: Callable[..., DictConfig], fast_reference: Callable[..., Path], tmp_path: Path
) -> None:
    a = fast_reference()
    b = make_cfg(*FAST_ARGS, "trainer.max_epochs=2")
    b.paths.output_dir = str(tmp_path / "b")
    with open_dict(b):
        b.callbacks.sigterm = {"_target_": "tests.faults.test_crash_resume.SigtermAt", "at": 6}
    with pytest.raises(Interrupted) as exit_:
        train(b)
    assert exit_.value.code == 128 + signal.SIGTERM
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    saved = load_ckpt(last)["gan_iteration"]
    assert val_fid_epochs(tmp_path / "b") == [0], "epoch 0 was validated before the exit"
    with open_dict(b):
        del b.callbacks.sigterm
        b.ckpt_path = str(last)
    train(b)
    assert_same_training_state(a, last)
    assert saved == 6
    assert val_fid_epochs(tmp_path / "b") == [0, 1]
    assert_same_metrics(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("metrics", ["true", "false"], ids=["metrics-on", "metrics-off"])
def test_a_finished_run_continued_for_more_epochs_is_bit_exact(
    make_cfg: Callable[..., DictConfig],
    fast_reference: Callable[..., Path],
    tmp_path: Path,
    metrics: str,
) -> None:
    """No kill: 1 epoch whose last.ckpt is Checkpointing's alone, then 1 more via ckpt_path.

    The run ends on a periodic save at the epoch's last batch; without ModelCheckpoint
    nothing overwrites it, so the second epoch starts from exactly that checkpoint.
    """
    only_ours = (
        f"metrics.enabled={metrics}",
        "callbacks.model_checkpoint=null",
        "trainer.enable_checkpointing=false",
    )
    a = fast_reference(*only_ours)
    b = make_cfg(*FAST_ARGS, "trainer.max_epochs=1", *only_ours)
    b.paths.output_dir = str(tmp_path / "b")
    train(b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert load_ckpt(last)["gan_iteration"] == 6
    c = make_cfg(*FAST_ARGS, "trainer.max_epochs=2", *only_ours, f"ckpt_path={tmp_path / 'b'}")
    train(c)  # continues in run folder b
    assert_same_training_state(a, last)
    for epoch in (0, 1):
        assert (tmp_path / "b" / "images" / f"real_vs_fake_epoch{epoch:03d}.png").is_file()
    if metrics == "true":
        assert val_fid_epochs(tmp_path / "b") == [0, 1]
    assert_same_metrics(tmp_path / "a", tmp_path / "b")
