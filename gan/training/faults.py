"""Fault tolerance: nothing a run finished is lost, and a run can always be continued.

- `AtomicCheckpointIO`: every checkpoint is written to a temporary file of a random name
  (`gan.utils.files.atomic_write`), flushed, then renamed over the old one, so a kill during a
  save never leaves a corrupt `last.ckpt`, and nothing planted in the folder can redirect it.
- `Checkpointing`: `last.ckpt` every N iterations (mid-epoch, so a kill costs at most N
  iterations), and on SIGTERM or SIGINT a checkpoint at the next iteration boundary,
  then a clean exit. Resume with `ckpt_path=<run>/checkpoints/last.ckpt`.
- `RngState` (always on): the one owner of the RNG states in checkpoints, saved with
  every checkpoint and restored right before the first training batch after a load.
  Together with data loaders that draw from their own generators, a resume is bit-exact
  from every save position.

Non-finite losses and weights are caught by `gan.training.health.NanGuard`.

Checks that turn a traceback into one line that names the problem and the fix:

- `check_resume_checkpoint(path, model_cfg)`: `ckpt_path` exists, is a torch checkpoint of
  this project, and was written by the same architecture (called before `trainer.fit`).
- `CheckOutputDir`: a Hydra callback that runs `check_writable` on the run (or sweep)
  folder before Hydra creates it, so an unusable `hydra.run.dir` is an `error:` line, and
  `check_run_folder` there, so a new run never writes over a finished one (resume it with
  `ckpt_path=`, or replace it with `overwrite=true`).
"""

from __future__ import annotations

import copy
import logging
import os
import random
import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gan.training.checkpoints import LIGHTNING_NAMES, checkpoint_dir, resolve_checkpoint
from gan.utils.errors import GanError
from gan.utils.files import atomic_write, check_writable, run_files

log = logging.getLogger("gan.faults")


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save through `gan.utils.files.atomic_write`: readers see old or new, never half."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote stores

        # A failed save (disk full, an exception, Ctrl+C) leaves the old file as it was and
        # no temp file. A SIGKILL cannot clean up: its `.<name>.<random>.tmp` stays, is
        # never read, and the next save of that file removes it.
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)

        atomic_write(path, write, durable=True)


class Interrupted(SystemExit):
    """Raised after the checkpoint is saved on SIGTERM/SIGINT; exits with 128 + signal."""


def rng_states() -> dict[str, Any]:
    """Every RNG the step draws from, as tensors and tuples (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    numpy = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "python": random.getstate(),
        "numpy": numpy,
    }


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


class RngState(L.Callback):
    """Exact resume: the RNG states go into every checkpoint and come back on resume.

    Saved as `checkpoint["gan_rng"]`; restored once, right before the first training batch
    after a load. The global RNGs (noise, label flips, dropout) are drawn only by training
    steps: the data loaders have generators of their own, and the metrics and image
    callbacks use seeded generators. So between any save and the next training batch the
    uninterrupted run draws nothing, while the resumed run draws while it builds and
    restores the model: restoring right before that batch puts both in the same state,
    whichever point of the loop the checkpoint was written at.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["gan_rng"] = rng_states()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._loaded = checkpoint.get("gan_rng")

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self._loaded is not None:
            set_rng_states(self._loaded)
            self._loaded = None


class Checkpointing(L.Callback):
    """`last.ckpt` every N iterations, and a save-then-exit on SIGTERM/SIGINT.

    Saves happen only between iterations (after G's last update), so a checkpoint never
    holds half a D:G schedule. A save that falls on an epoch's last batch waits until the
    epoch's end (`on_train_epoch_end`, after that epoch's validation), where
    ModelCheckpoint saves too. A second Ctrl+C during the wait stops at once.
    """

    def __init__(self, every_n_iterations: int = 200, on_signals: bool = True) -> None:
        self.every_n_iterations = every_n_iterations
        self.on_signals = on_signals
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        self._at_epoch_end = False  # a save is due once the epoch is over

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        self.signal = signum
        log.warning(
            "received %s: saving a checkpoint after this iteration (at an epoch's last "
            "iteration: after that epoch's validation)",
            signal.Signals(signum).name,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.on_signals or not _main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        iteration = pl_module.iteration
        due = self.every_n_iterations > 0 and iteration % self.every_n_iterations == 0
        if self.signal is None and not due:
            return
        if trainer.fast_dev_run:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # Lightning counts a checkpoint written here as a finished epoch: a resume would
            # skip this epoch's validation (its scores, images, best checkpoint) and its
            # epoch-end hooks, and the RNG would miss what they draw. Saved at the epoch's
            # end instead, where a resume starts the next epoch as usual.
            self._at_epoch_end = True
            return
        self._save(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Also a signal that came during the epoch's validation: saved here, not one
        # iteration into the next epoch. And every epoch's end: ModelCheckpoint(save_last)
        # rewrites last.ckpt only when its monitored score improved (Lightning >= 2.5).
        self._at_epoch_end = False
        if trainer.fast_dev_run:
            return
        if self.signal is None and _last_saved_here(trainer):
            return
        if self.signal is not None:
            # The exit below skips the epoch-end hooks of the callbacks that run after this
            # one, ModelCheckpoint's among them: let it keep this epoch's best checkpoint
            # first (it saves at most once per step).
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, ModelCheckpoint):
                    cb.on_train_epoch_end(trainer, pl_module)
        self._save(trainer, pl_module)

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        iteration = pl_module.iteration
        path = checkpoint_dir(trainer) / "last.ckpt"
        _share_last(trainer, path)
        trainer.save_checkpoint(path, weights_only=False)
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            from gan.training.resume import resume_command

            log.warning(
                "%s: saved %s at iteration %d; resume with: %s",
                name,
                path,
                iteration,
                resume_command(trainer.default_root_dir),
            )
            raise Interrupted(128 + self.signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _last_saved_here(trainer: L.Trainer) -> bool:
    """Whether a ModelCheckpoint wrote last.ckpt at this very step (its score improved)."""
    path = (checkpoint_dir(trainer) / "last.ckpt").resolve()
    return any(
        isinstance(cb, ModelCheckpoint)
        and cb.save_last
        and cb.last_model_path
        and Path(cb.last_model_path).resolve() == path
        and cb._last_global_step_saved == trainer.global_step
        for cb in trainer.checkpoint_callbacks
    )


def _share_last(trainer: L.Trainer, path: Path) -> None:
    """Tell `ModelCheckpoint(save_last=True)` that `path` is its own `last.ckpt`.

    Otherwise it finds a `last.ckpt` it did not write and saves its epoch-end copy as
    `last-v1.ckpt`: `last.ckpt` would then hold an older state than the run's end. Set
    before saving, since the path is part of the callback's saved state.
    """
    for cb in trainer.checkpoint_callbacks:
        if not (isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath is not None):
            continue
        own = cb.format_checkpoint_name({}, cb.CHECKPOINT_NAME_LAST)  # as it would name it
        if Path(own).resolve() == path.resolve():
            cb.last_model_path = own


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ---- input checks: one clear line instead of a traceback -------------------------------


def resumes_in(ckpt_path: str, out: Path, checkpoints: Path) -> bool:
    """Whether resuming from `ckpt_path` continues the run in folder `out` itself.

    Lightning's names (`last`, `best`, `hpc`) find their file in this run's folders; a
    path does when it lies in `out` or in its checkpoint folder `checkpoints`.
    """
    if ckpt_path in LIGHTNING_NAMES[:3]:
        return True
    path = resolve_checkpoint(ckpt_path).absolute().resolve()
    return any(path.is_relative_to(f.absolute().resolve()) for f in (out, checkpoints))


CHECKED_RUN = "GAN_CHECKED_RUN"  # the run folder rank 0 checked: DDP's ranks inherit it


def check_run_folder(
    out: str | os.PathLike[str],
    checkpoints: str | os.PathLike[str],
    ckpt_path: str | None,
    overwrite: bool,
    key: str = "hydra.run.dir",
) -> None:
    """GanError when a new run in folder `out` would write over the run already there.

    A folder holds a run when it has a `config.yaml`, a `result.json` or a `checkpoints/`
    (gan.utils.files.RUN_FILES). Writing there is fine when this run resumes that one
    (`ckpt_path=` in `out` or `checkpoints`, or Lightning's `last`/`best`/`hpc`), or when
    the user said `overwrite=true`. `key` is the setting that picks the folder. DDP's other
    ranks pass: Lightning's launcher starts them (LOCAL_RANK >= 1, with this process's
    environment) in the folder that rank 0 checked, named in CHECKED_RUN, and began writing.
    A rank variable alone (a SLURM task, a torchrun worker) is not enough.
    """
    out, checkpoints = Path(out), Path(checkpoints)
    here = str(out.absolute().resolve())
    if os.environ.get(CHECKED_RUN) == here and os.environ.get("LOCAL_RANK", "0") != "0":
        return
    found = run_files(out)
    if found and not overwrite and not (ckpt_path and resumes_in(str(ckpt_path), out, checkpoints)):
        shown = ", ".join(f"{n}/" if n == "checkpoints" else n for n in found)
        raise GanError(
            f"{key}={out} already holds a run ({shown}): a new run there would overwrite it. "
            f"Resume it with ckpt_path={out}, train into another folder ({key}=...), or pass "
            f"overwrite=true to replace it."
        )
    os.environ[CHECKED_RUN] = here  # for the ranks that Lightning's DDP launcher starts


try:  # the Hydra callback is optional: gan.training.faults also works where Hydra is absent
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


def _planned_folders(config: Any) -> tuple[Path, Path]:
    """The run folder and checkpoint folder a `gan.train` run will write, from Hydra's config
    before the run starts (when `${hydra:runtime.output_dir}` is not set yet)."""
    from omegaconf import OmegaConf, open_dict

    out = Path(str(config.hydra.run.dir)).absolute()
    c = copy.deepcopy(config)
    OmegaConf.set_readonly(c, False)
    try:
        raw = OmegaConf.to_container(c.paths, resolve=False)["output_dir"]  # type: ignore[index]
        if isinstance(raw, str) and "hydra:" not in raw:  # a folder of the user's own
            out = Path(str(OmegaConf.select(c, "paths.output_dir"))).absolute()
        with open_dict(c):
            c.paths.output_dir = str(out)
        dirpath = OmegaConf.select(c, "callbacks.model_checkpoint.dirpath", default=None)
    except Exception:  # noqa: BLE001 - another config's shape: the defaults below
        dirpath = None
    return out, Path(str(dirpath)).absolute() if dirpath else out / "checkpoints"


# Run folders that did not exist before this command (CheckOutputDir notes them before
# Hydra makes them): gan.training.run removes one again when the run is refused before any work.
FRESH_RUN_DIRS: set[Path] = set()


class CheckOutputDir(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback: fail with one line before Hydra makes or writes into a run folder.

    Hydra creates the run folder, and writes `.hydra/` and the log into it, before the
    task runs, so an unwritable `hydra.run.dir` would otherwise end in Hydra's traceback,
    and a run folder that holds a finished run would be written over before `gan.train`
    could refuse. Both checks run here, before any of that (a sweep: before its jobs, on
    `hydra.sweep.dir`). Enable it in conf/train.yaml:

        hydra:
          callbacks:
            check_output_dir:
              _target_: gan.training.faults.CheckOutputDir
    """

    def _check(self, folder: Any, key: str) -> None:
        try:
            check_writable(str(folder), key)
        except GanError as e:
            # SystemExit, not an Exception: Hydra turns a callback's exceptions into warnings.
            raise SystemExit(f"error: {e}") from None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from gan.training.resume import redirect

        try:  # `ckpt_path=<run folder>`: checked in full, then Hydra's run folder is that run
            redirect(config)
        except GanError as e:
            raise SystemExit(f"error: {e}") from None
        self._check(config.hydra.run.dir, "hydra.run.dir")
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        if not run_dir.exists():  # everything in it will be this command's
            FRESH_RUN_DIRS.add(run_dir)
            if not run_dir.parent.exists():  # outputs/<date>/ too
                FRESH_RUN_DIRS.add(run_dir.parent)
        out, checkpoints = _planned_folders(config)
        own = out != Path(str(config.hydra.run.dir)).absolute()  # paths.output_dir was set
        key = "paths.output_dir" if own else "hydra.run.dir"
        try:
            check_run_folder(
                out, checkpoints, config.get("ckpt_path"), bool(config.get("overwrite")), key
            )
        except GanError as e:
            raise SystemExit(f"error: {e}") from None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
        sweep = Path(str(config.hydra.sweep.dir)).absolute()
        if config.get("overwrite") or not sweep.is_dir():
            return
        found = [d for d in [*sweep.glob("*"), *sweep.glob("*/*")] if not d.name.startswith(".")]
        inner = {d for d in found if d.parent != sweep and run_files(d.parent)}  # in a job
        jobs = sorted({d for d in found if run_files(d)} - inner)
        if jobs:
            shown = ", ".join(str(d.relative_to(sweep)) for d in jobs[:3])
            more = f" and {len(jobs) - 3} more" if len(jobs) > 3 else ""
            raise SystemExit(
                f"error: hydra.sweep.dir={sweep} already holds runs ({shown}{more}): a sweep "
                f"there would overwrite them. Sweep into another folder (hydra.sweep.dir=...), "
                f"or pass overwrite=true to replace them."
            )
