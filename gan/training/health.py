"""Training health as callbacks: the NaN guard, and plain-words warnings of the usual GAN
failures.

- `NanGuard` (always on; `guard.*` settings): every `check_every_n` iterations, a NaN or
  Inf loss stops the run naming the iteration and the networks with broken weights, or
  (`guard.on_nonfinite=rollback`) reloads `last.ckpt` with lower learning rates. It also
  refuses to save a checkpoint of non-finite weights, so `last.ckpt` stays good.
- `TrainingHealth` (`callbacks.training_health`): warns when D saturates, when the
  losses stop moving, or when class coverage collapses; each can stop the run instead.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from gan.training.checkpoints import checkpoint_dir, read_checkpoint
from gan.utils.errors import GanError

log = logging.getLogger("gan.health")

Check = tuple[Tensor, Any, int, int]  # (flags (3,), CUDA event or None, iteration, global step)


class NanGuard(L.Callback):
    """Stop (or roll back) on a NaN/Inf loss or weight, naming the iteration and network.

    Reads the losses that the module's training step returns. On a GPU, reading a flag at
    once waits for the step to finish: a sync every iteration, and the GPU idles while
    Python prepares the next step. There each check's flag is read at the next check
    instead (it has long arrived by then), at the price of finding a NaN one check late.
    """

    def __init__(
        self,
        check_every_n: int = 1,
        on_nonfinite: str = "stop",
        lr_factor: float = 0.5,
        max_rollbacks: int = 3,
    ) -> None:
        self.check_every_n = check_every_n
        self.on_nonfinite = on_nonfinite
        self.lr_factor = lr_factor
        self.max_rollbacks = max_rollbacks
        self.rollbacks = 0
        self._pending: Check | None = None

    def defer_checks(self, pl_module: L.LightningModule) -> bool:
        """Whether a check's flag is read at the next check instead of at once."""
        return pl_module.device.type == "cuda"

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        it = pl_module.iteration
        if not self.check_every_n or it % self.check_every_n or not isinstance(outputs, dict):
            return
        losses = torch.stack([outputs["d_loss"], outputs["g_loss"]]).float()  # (2,)
        flags = torch.cat([torch.isfinite(losses).all().float()[None], losses])  # (3,)
        if not self.defer_checks(pl_module):
            self._read(trainer, pl_module, (flags, None, it, trainer.global_step))  # one sync
            return
        event = None
        if flags.is_cuda:  # to pinned host memory without waiting; the event marks arrival
            flags = torch.empty(3, pin_memory=True).copy_(flags, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        pending, self._pending = self._pending, (flags, event, it, trainer.global_step)
        if pending is not None:
            self._read(trainer, pl_module, pending)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:  # the epoch's last deferred check
            self._read(trainer, pl_module, pending)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        bad = nonfinite_nets(pl_module)
        if bad:  # never overwrite a good checkpoint with broken weights
            raise GanError(f"refusing to save a checkpoint: non-finite weights in {', '.join(bad)}")

    def _read(self, trainer: L.Trainer, pl_module: L.LightningModule, check: Check) -> None:
        flags, event, iteration, step = check
        if event is not None:
            event.synchronize()  # recorded a whole check ago: done by now
        if bool(flags[0]):
            return
        self._pending = None  # a rollback or a stop: what is in flight is moot
        bad = nonfinite_nets(pl_module) or ["none (only the loss)"]
        now = pl_module.iteration
        late = (
            f" (found at iteration {now}: GPU checks are read one check late)"
            if iteration != now
            else ""
        )
        where = (
            f"at iteration {iteration} (global step {step}){late}: D loss {flags[1].item():.4g}, "
            f"G loss {flags[2].item():.4g}; networks with non-finite weights: {', '.join(bad)}"
        )
        last = checkpoint_dir(trainer) / "last.ckpt"
        if (
            self.on_nonfinite == "rollback"
            and last.is_file()
            and self.rollbacks < self.max_rollbacks
        ):
            self._rollback(trainer, pl_module, str(last), where)
            return
        from gan.training.resume import resume_command

        go_on = resume_command(trainer.default_root_dir, "guard.on_nonfinite=rollback")
        keep = (
            f"The last good checkpoint is kept: {last}; go on from it, lowering the lr at a NaN, "
            f"with: {go_on}."
            if last.is_file()
            else "No checkpoint was saved yet."
        )
        raise GanError(
            f"training diverged {where}. {keep} Or lower optimizer.lr, add "
            f"optimizer.clip_norm=1.0, or set guard.on_nonfinite=rollback to reload the last "
            f"checkpoint with a lower lr."
        )

    def _rollback(
        self, trainer: L.Trainer, pl_module: L.LightningModule, path: str, where: str
    ) -> None:
        # Read as data (weights_only): a run folder may come from someone else. This
        # project's checkpoints hold tensors and plain values only.
        ckpt = read_checkpoint(
            Path(path),
            f"the last checkpoint {path}",
            "Cannot roll back to it: set guard.on_nonfinite=stop, or resume from a good checkpoint",
        )
        pl_module.load_state_dict(ckpt["state_dict"])
        for opt, state in zip(trainer.optimizers, ckpt["optimizer_states"]):
            opt.load_state_dict(state)
            for group in opt.param_groups:
                group["lr"] *= self.lr_factor
        # optimizer.schedule: the run goes on from where it is (the iteration count is not
        # rolled back), so the schedule keeps its place, on the lowered base rates.
        for config in trainer.lr_scheduler_configs:
            s = config.scheduler
            s.base_lrs = [lr * self.lr_factor for lr in s.base_lrs]
            for group, base, factor in zip(s.optimizer.param_groups, s.base_lrs, s.lr_lambdas):
                group["lr"] = base * factor(s.last_epoch)
        self.rollbacks += 1
        log.warning(
            "training diverged %s; rolled back to %s and multiplied the learning rates by %s (rollback %d of %d)",
            where,
            path,
            self.lr_factor,
            self.rollbacks,
            self.max_rollbacks,
        )


def nonfinite_nets(pl_module: L.LightningModule) -> list[str]:
    """The names of G and D if any of their weights is NaN or Inf."""
    nets = (("generator", pl_module.generator), ("discriminator", pl_module.discriminator))
    return [n for n, net in nets if not all(torch.isfinite(p).all() for p in net.parameters())]


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
        min_coverage: float = 5.0,  # fewer classes than this among samples: collapse
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
        iteration = pl_module.iteration
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
        classes = getattr(trainer.datamodule, "num_classes", 10)  # a hand-made datamodule: MNIST's
        if coverage is not None and float(coverage) < self.min_coverage:
            self._say(
                trainer,
                "collapse",
                f"mode collapse: samples cover only {float(coverage):.0f} of the data's "
                f"{classes} classes (threshold {self.min_coverage:.0f}). The generator draws "
                f"a few classes only.",
                self.stop_on_collapse,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"d": list(self.d), "g": list(self.g), "warned": sorted(self.warned)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.d.extend(state_dict.get("d", []))
        self.g.extend(state_dict.get("g", []))
        self.warned = set(state_dict.get("warned", []))
