"""Fault tolerance: nothing a run finished is lost, and a run can always be continued.

- `AtomicCheckpointIO`: every checkpoint is written to a temporary file, flushed, then
  renamed over the old one, so a kill during a save never leaves a corrupt `last.ckpt`.
- `Checkpointing`: `last.ckpt` every N iterations (mid-epoch, so a kill costs at most N
  iterations), and on SIGTERM or SIGINT a checkpoint at the next iteration boundary,
  then a clean exit. Resume with `ckpt_path=<run>/checkpoints/last.ckpt`.
- `TrainingHealth`: warns, in plain words, when D saturates (its loss near 0 while G's
  grows), when the losses stop moving (no learning), or when class coverage collapses;
  each can stop the run instead.

Non-finite losses and weights are caught in the module itself (`GAN.check_finite`).

Checks that turn a traceback into one line that names the problem and the fix:

- `check_resume_checkpoint(path, model_cfg)`: `ckpt_path` exists, is a torch checkpoint of
  this project, and was written by the same architecture (called before `trainer.fit`).
- `check_writable(folder)`: a run folder can be created and written.
- `CheckOutputDir`: a Hydra callback that runs `check_writable` on the run (or sweep)
  folder before Hydra creates it, so an unusable `hydra.run.dir` is an `error:` line.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import deque
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gan.errors import GanError, read_checkpoint

log = logging.getLogger("gan.faults")


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to `<file>.tmp`, fsync, then os.replace: readers see old or new, never half."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote stores
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            # A failed save (disk full, an exception, Ctrl+C) leaves the old file as it was
            # and no half-written temp file. A SIGKILL cannot clean up: its `.<name>.tmp`
            # stays, is never read, and the next save overwrites it.
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)  # make the rename itself survive a power cut


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported on this file system: the rename is still atomic
    finally:
        os.close(fd)


class Interrupted(SystemExit):
    """Raised after the checkpoint is saved on SIGTERM/SIGINT; exits with 128 + signal."""


def checkpoint_dir(trainer: L.Trainer) -> Path:
    cb = trainer.checkpoint_callback
    if cb is not None and getattr(cb, "dirpath", None):
        return Path(cb.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"


class Checkpointing(L.Callback):
    """Mid-epoch `last.ckpt` every N iterations, and a save-then-exit on SIGTERM/SIGINT.

    Saves happen only between iterations (after G's last update), so a checkpoint never
    holds half a D:G schedule. A second Ctrl+C during the wait stops at once.
    """

    def __init__(self, every_n_iterations: int = 200, on_signals: bool = True) -> None:
        self.every_n_iterations = every_n_iterations
        self.on_signals = on_signals
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        self._rng: dict[str, Any] | None = None  # RNG states of the checkpoint resumed from
        self._rng_at_epoch_start = False  # that checkpoint ended an epoch

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        self.signal = signum
        log.warning(
            "received %s: saving a checkpoint after this iteration", signal.Signals(signum).name
        )

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._rng = checkpoint.get("gan_rng")
        progress = checkpoint.get("loops", {}).get("fit_loop", {})
        progress = progress.get("epoch_loop.batch_progress", {})
        self._rng_at_epoch_start = bool(progress.get("is_last_batch", False))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.on_signals or not _main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handler)

    # Exact resume: the RNGs go back to their saved states at the point of the loop that
    # matches where the checkpoint was written, not at `on_train_start`: a new DataLoader
    # iterator draws its base seed from the global torch RNG (two 32-bit words). The
    # uninterrupted run drew it at its epoch's start, before a mid-epoch save and after an
    # end-of-epoch save. So: mid-epoch, restore right before the next step (after the
    # resumed run's iterator is made); at an epoch's end, before the next epoch starts.
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._rng_at_epoch_start:
            self._restore_rng()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        self._restore_rng()

    def _restore_rng(self) -> None:
        if self._rng is not None:
            from gan.module import set_rng_states

            set_rng_states(self._rng)
        self._rng, self._rng_at_epoch_start = None, False

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        iteration = getattr(pl_module, "iteration", trainer.global_step)
        due = self.every_n_iterations > 0 and iteration % self.every_n_iterations == 0
        if self.signal is None and not due:
            return
        if trainer.fast_dev_run:
            return
        path = checkpoint_dir(trainer) / "last.ckpt"
        _share_last(trainer, path)
        trainer.save_checkpoint(path, weights_only=False)
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            log.warning(
                "%s: saved %s at iteration %d; resume with ckpt_path=%s",
                name,
                path,
                iteration,
                path,
            )
            raise Interrupted(128 + self.signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


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


class TrainingHealth(L.Callback):
    """Plain-words warnings (or a stop) when training goes wrong in the usual GAN ways.

    Reads the logged losses every `trainer.log_every_n_steps` iterations, so it adds no
    device sync of its own. The window counts those readings.
    """

    def __init__(
        self,
        window: int = 20,
        d_loss_floor: float = 0.05,  # D "wins": its loss is near 0
        flat_tolerance: float = 1e-4,  # both losses move less than this: nothing is learnt
        min_coverage: float = 5.0,  # fewer digit classes than this among samples: collapse
        stop_on_saturation: bool = False,
        stop_on_flat: bool = False,
        stop_on_collapse: bool = False,
    ) -> None:
        self.window = window
        self.d_loss_floor = d_loss_floor
        self.flat_tolerance = flat_tolerance
        self.min_coverage = min_coverage
        self.stop_on_saturation = stop_on_saturation
        self.stop_on_flat = stop_on_flat
        self.stop_on_collapse = stop_on_collapse
        self.d: deque[float] = deque(maxlen=window)
        self.g: deque[float] = deque(maxlen=window)
        self.warned: set[str] = set()

    def _say(self, trainer: L.Trainer, kind: str, message: str, stop: bool) -> None:
        if kind not in self.warned:
            log.warning(message)
            self.warned.add(kind)
        if stop:
            log.error("stopping: %s", message)
            trainer.should_stop = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        iteration = getattr(pl_module, "iteration", trainer.global_step)
        if iteration % max(1, trainer.log_every_n_steps) != 0:
            return
        metrics = trainer.callback_metrics
        if "train/d_loss" not in metrics or "train/g_loss" not in metrics:
            return
        self.d.append(float(metrics["train/d_loss"]))
        self.g.append(float(metrics["train/g_loss"]))
        if len(self.d) < self.window:
            return
        d, g = list(self.d), list(self.g)
        half = self.window // 2
        if max(d) < self.d_loss_floor and sum(g[half:]) / half > sum(g[:half]) / half:
            self._say(
                trainer,
                "saturation",
                f"the discriminator has won: its loss stayed below {self.d_loss_floor} for the "
                f"last {self.window} readings while the generator's loss kept growing "
                f"(now {g[-1]:.3g}). G gets no useful gradient. Try label_smoothing=one_sided, "
                f"a lower D learning rate (optimizer.d_lr_scale=0.5) or step_ratio=d1g2.",
                self.stop_on_saturation,
            )
        if max(d) - min(d) < self.flat_tolerance and max(g) - min(g) < self.flat_tolerance:
            self._say(
                trainer,
                "flat",
                f"the losses of D and G have not changed for {self.window} readings "
                f"(D {d[-1]:.4g}, G {g[-1]:.4g}): no learning is happening. Check the "
                f"learning rates (optimizer.lr) and that the data is not constant.",
                self.stop_on_flat,
            )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        coverage = trainer.callback_metrics.get("val/coverage")
        if coverage is not None and float(coverage) < self.min_coverage:
            self._say(
                trainer,
                "collapse",
                f"mode collapse: samples cover only {float(coverage):.0f} of 10 digits "
                f"(threshold {self.min_coverage:.0f}). The generator draws a few digits only.",
                self.stop_on_collapse,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"d": list(self.d), "g": list(self.g), "warned": sorted(self.warned)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.d.extend(state_dict.get("d", []))
        self.g.extend(state_dict.get("g", []))
        self.warned = set(state_dict.get("warned", []))


# ---- input checks: one clear line instead of a traceback -------------------------------

RESUME_HINT = (
    "Resume with ckpt_path=<run>/checkpoints/last.ckpt, a file written by `python -m gan.train`"
)


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: node}


def _run_config_hint(path: Path) -> str:
    config = path.parent.parent / "config.yaml"  # <run>/checkpoints/x.ckpt -> <run>/config.yaml
    return f" (see {config})" if config.is_file() else ""


def check_resume_checkpoint(
    path: str | os.PathLike[str], expected_model_cfg: dict[str, Any], ema: bool | None = None
) -> None:
    """GanError unless `path` is a checkpoint of this project that this run can resume from.

    `path` may also be a run folder (its `checkpoints/last.ckpt` is checked) or one of
    Lightning's names (`last`, `best`, ...: not checked).

    `expected_model_cfg` is this run's resolved `model` node (`to_dict(cfg.model)`); the
    checkpoint's `hyper_parameters.model` must match it (architecture, sizes, latent size).
    With `ema` (this run's `ema.enabled`), the checkpoint must hold EMA weights exactly
    when it is true. Checks, in order: the file exists; torch.save wrote it; torch.load can
    read it; it holds a GAN of this project; same architecture; same EMA setting.
    """
    if str(path) in ("last", "best", "hpc", "registry"):
        return  # Lightning's own names for checkpoints it finds itself
    path = Path(path).expanduser()
    if path.is_dir() and (path / "checkpoints" / "last.ckpt").is_file():
        path = path / "checkpoints" / "last.ckpt"  # a run folder: its last checkpoint
    if not path.exists():
        raise GanError(f"ckpt_path={path} does not exist. {RESUME_HINT}.")
    if path.is_dir():
        found = sorted(path.glob("*.ckpt"))
        hint = f"Pass ckpt_path={found[-1]}" if found else RESUME_HINT
        raise GanError(
            f"ckpt_path={path} is a folder without checkpoints/last.ckpt, not a checkpoint. {hint}."
        )
    ckpt = read_checkpoint(
        path,
        f"ckpt_path={path}",
        RESUME_HINT,
        "Resume from another checkpoint of that run, e.g. its best_*.ckpt, or copy the file again",
    )
    hparams = ckpt["hyper_parameters"]
    theirs, ours = hparams["model"], expected_model_cfg
    if theirs.get("name") != ours.get("name"):
        raise GanError(
            f"ckpt_path={path} was written by a model={theirs.get('name')} run, but this run has "
            f"model={ours.get('name')}: its weights cannot be loaded. Resume with "
            f"model={theirs.get('name')} and that run's other settings{_run_config_hint(path)}, "
            f"or drop ckpt_path to start a new run."
        )
    a, b = _flatten(theirs, "model"), _flatten(ours, "model")
    differ = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if differ:
        was = ", ".join(f"{k}={a.get(k)}" for k in differ[:3])
        now = ", ".join(f"{k}={b.get(k)}" for k in differ[:3])
        raise GanError(
            f"ckpt_path={path} was written with {was}, but this run has {now}: the networks "
            f"differ, so its weights cannot be loaded. Resume with the checkpoint's settings"
            f"{_run_config_hint(path)}, or drop ckpt_path to start a new run."
        )
    state = ckpt["state_dict"]
    has_ema = any(str(k).startswith("ema_generator.") for k in state)
    if ema is not None and has_ema != ema:
        keep = "true" if has_ema else "false"
        raise GanError(
            f"ckpt_path={path} {'holds' if has_ema else 'holds no'} EMA weights (its run had "
            f"ema.enabled={keep}), but this run has ema.enabled={str(ema).lower()}. Resume with "
            f"ema.enabled={keep}."
        )


def check_writable(folder: str | os.PathLike[str], key: str = "hydra.run.dir") -> None:
    """GanError unless `folder` is, or can be created as, a folder this process can write.

    `key` is the setting that chooses the folder, named in the message as the fix.
    """
    path = Path(folder).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folders we would create start below this one
    if not existing.is_dir():
        raise GanError(
            f"cannot create the output folder {path}: {existing} is a file, not a folder. "
            f"Pick another folder: {key}=/path/to/writable/folder."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GanError(
            f"cannot write the output folder {path}: {existing} is not writable (permissions, or "
            f"a read-only file system). Pick another folder: {key}=/path/to/writable/folder."
        )


try:  # the Hydra callback is optional: gan.faults also works where Hydra is absent
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class CheckOutputDir(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback: fail with one line before Hydra makes an unusable run folder.

    Hydra creates the run folder before the task runs, so an unwritable `hydra.run.dir`
    would otherwise end in Hydra's traceback. Enable it in conf/train.yaml:

        hydra:
          callbacks:
            check_output_dir:
              _target_: gan.faults.CheckOutputDir
    """

    def _check(self, folder: Any, key: str) -> None:
        try:
            check_writable(str(folder), key)
        except GanError as e:
            # SystemExit, not an Exception: Hydra turns a callback's exceptions into warnings.
            raise SystemExit(f"error: {e}") from None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
