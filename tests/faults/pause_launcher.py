"""Start `python -m gan.train` paused at a known iteration, so that a signal lands there.

    GAN_TEST_PAUSE_AT=41 GAN_TEST_PAUSE_FLAG=/tmp/paused \\
        python -m tests.faults.pause_launcher <gan.train overrides>

runs `gan.train` with its overrides and pauses right after iteration $GAN_TEST_PAUSE_AT's
updates (before its batch-end hooks), writing $GAN_TEST_PAUSE_FLAG once paused. The pause
ends when a signal handler has run (SIGTERM) or never (SIGKILL). `PauseIn`, a callback, pauses
in an epoch-end hook instead (`+callbacks.pause._target_=tests.faults.pause_launcher.PauseIn`).
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L


def wait_for_a_signal(trainer: L.Trainer, flag: Path, iteration: int) -> None:
    """Write `flag`, then wait (at most 300 s) until a signal handler has run."""
    flag.write_text(str(iteration))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(
        getattr(cb, "signal", None) for cb in trainer.callbacks
    ):
        time.sleep(0.01)


class PauseIn(L.Callback):
    """Pause in `hook` at iteration `at`, as the launcher does in the step.

    `hook`: `on_validation_start` (the epoch's validation is about to run) or
    `on_train_epoch_end` (after the epoch-end hooks of the callbacks before this one,
    `Checkpointing` among them; before ModelCheckpoint's). Writes $GAN_TEST_PAUSE_FLAG
    once paused; the pause ends when a signal handler has run (SIGTERM) or never (SIGKILL).
    """

    def __init__(self, hook: str, at: int) -> None:
        assert hook in ("on_validation_start", "on_train_epoch_end"), hook
        self.hook, self.at = hook, at

    def _pause(self, hook: str, trainer: L.Trainer, pl_module: Any) -> None:
        if hook != self.hook or trainer.sanity_checking or pl_module.iteration != self.at:
            return
        wait_for_a_signal(trainer, Path(os.environ["GAN_TEST_PAUSE_FLAG"]), self.at)

    def on_validation_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._pause("on_validation_start", trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._pause("on_train_epoch_end", trainer, pl_module)


def main() -> None:
    import gan.training.module

    at = int(os.environ["GAN_TEST_PAUSE_AT"])
    flag = Path(os.environ["GAN_TEST_PAUSE_FLAG"])
    step = gan.training.module.GAN.training_step

    def training_step(self: gan.training.module.GAN, batch: Any, batch_idx: int) -> Any:
        out = step(self, batch, batch_idx)
        if self.iteration == at:
            wait_for_a_signal(self.trainer, flag, self.iteration)
        return out

    gan.training.module.GAN.training_step = training_step
    sys.argv[0] = "gan/train.py"
    runpy.run_module("gan.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
