"""The GAN LightningModule: the networks, EMA, the optimizers, the training step and the
validation scores. Everything else is a callback (gan.training.health, gan.training.faults, gan.training.callbacks).

One training step is one *iteration* of `gan.core.step.GanStep`: `d_steps` discriminator
updates, each on a fresh chunk of real images (the DataModule hands over
`d_steps * batch_size` images per batch), then `g_steps` generator updates.

Lightning's `global_step` counts optimizer steps, so under manual optimization one batch
raises it by `d_steps + g_steps` (2 for d1g1, 6 for d5g1). `trainer.max_steps` counts the
same way. The true iteration count is logged as `train/iteration` and kept in
checkpoints.

    module = GAN.from_config(cfg)              # what gan.training.build does
    images = module(module.sample_z(16))       # (16, 1, 28, 28)

`GAN(**groups)` takes the config groups as plain dicts, the form saved in every
checkpoint's hyperparameters; `gan.training.checkpoints.load_gan(path)` rebuilds it from
them (weights-only, networks from the registry).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from gan.core.optim import SCHEDULES, build_optimizers, build_schedulers, clip_gradients
from gan.core.ranges import to_unit_range
from gan.core.sampling import generate, sample_labels, sample_z
from gan.core.step import GanStep, StepOutput
from gan.metrics.scores import GanMetrics
from gan.nets.base import build_nets
from gan.training.config import MODULE_GROUPS, module_config, to_dict
from gan.utils.errors import GanError

log = logging.getLogger("gan.module")


def ema_update_fn(decay: float, warmup: bool) -> Any:
    """AveragedModel's `multi_avg_fn`: ema += (1 - d) * (param - ema), with the decay d
    ramped up as min(decay, (1 + n) / (10 + n)) after n averaging steps when `warmup`
    (TensorFlow's ExponentialMovingAverage(num_updates=n)). Computed on the device: no sync.
    """

    @torch.no_grad()
    def update(ema: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        if not torch.is_floating_point(ema[0]):  # integer buffers: keep the latest
            torch._foreach_copy_(ema, params)
            return
        d = torch.as_tensor(decay, dtype=ema[0].dtype, device=ema[0].device)
        if warmup:
            n = num_averaged.to(ema[0].dtype)
            d = torch.minimum(d, (1 + n) / (10 + n))
        diff = torch._foreach_sub(params, ema)
        torch._foreach_mul_(diff, 1 - d)
        torch._foreach_add_(ema, diff)

    return update


@torch.no_grad()
def recompute_bn_stats(net: nn.Module, inputs: list[tuple[Tensor, ...]]) -> None:
    """BatchNorm running statistics of `net` as the plain average over `inputs` (each a
    tuple of forward arguments), as torch.optim.swa_utils.update_bn does for data loaders.
    Only the BatchNorm layers train meanwhile; every module's mode is restored after."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    modes = {m: m.training for m in net.modules()}
    net.eval()  # dropout off: no draw from the global RNG, and the statistics of eval mode
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
        m.train()
    try:
        for args in inputs:
            net(*args)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training


def floor_line(floor: dict[str, Tensor]) -> str:
    """The floor scores as one rounded line; KID's note says why it may be below 0."""
    text = ", ".join(f"{k.removesuffix('_floor')} {float(v):.3g}" for k, v in floor.items())
    kid = floor.get("kid_floor")
    if kid is not None and float(kid) < 0:
        text += " (KID is unbiased: a floor below 0 reads as 0, no distance)"
    return text


class LightningUpdates:
    """`gan.core.step.Updates` through Lightning: toggle_optimizer, manual_backward, precision."""

    def __init__(self, module: GAN) -> None:
        self.module = module
        opt_g, opt_d = module.optimizers()
        self.optimizers = {"g": opt_g, "d": opt_d}

    @contextmanager
    def train(self, net: str) -> Iterator[None]:
        opt = self.optimizers[net]
        self.module.toggle_optimizer(opt)  # the other network's params stop requiring grad
        try:
            yield
        finally:
            self.module.untoggle_optimizer(opt)

    def step(self, net: str, loss: Tensor) -> None:
        opt = self.optimizers[net]
        self.module.manual_backward(loss)
        opt.step()  # unscales (16-mixed), clips (on_before_optimizer_step), then steps
        opt.zero_grad(set_to_none=True)


class GAN(L.LightningModule):
    def __init__(self, trust_code: bool = False, **groups: dict[str, Any] | None) -> None:
        """`groups`: the config groups as plain dicts. `trust_code`: a network outside
        `gan.nets.registry()` may be built (its `_target_` imported); not saved."""
        super().__init__()
        unknown = set(groups) - set(MODULE_GROUPS)
        if unknown:
            raise GanError(
                f"GAN got unknown config groups {sorted(unknown)}: use {', '.join(MODULE_GROUPS)}"
            )
        self.save_hyperparameters(ignore=["trust_code"])
        self.automatic_optimization = False  # GANs step two optimizers by hand
        self.cfg = module_config(**groups)  # typed once
        self.generator, self.discriminator = build_nets(self.cfg, trust_code)
        # What the step calls: G and D, or their compiled versions (set in setup). Kept
        # out of the module registry, so checkpoints hold the plain networks' keys.
        self.__dict__["_g"], self.__dict__["_d"] = self.generator, self.discriminator
        self.gan_step = GanStep.from_config(self.cfg, self.sample_z, self.sample_labels)
        # The scores' networks: the builder hands them over (gan.training.build); None: no
        # validation scores (a module built to sample, or metrics.enabled=false)
        self.metrics: GanMetrics | None = None
        self._real: list[Tensor] = []
        self._floor_logged = False  # the real-vs-real floor is logged once per run
        self.floor: dict[str, float] = {}  # the real-vs-real scores, once measured
        self.best_fid: tuple[float, int] | None = None  # (the lowest val/fid, its epoch)
        self.iteration = 0  # true GAN iterations (batches), unlike Lightning's global_step
        self.g_updates = 0
        self.elapsed_s = 0.0  # training wall time before this fit (from a checkpoint)
        self._fit_start = time.perf_counter()
        # EMA of G's weights only (Lightning's weight averaging would average D too).
        # A submodule, so it is saved in and restored from checkpoints with the rest.
        self.ema_generator: AveragedModel | None = None
        self._ema_bn_stale = False  # its BatchNorm statistics lag its weights
        if self.cfg.ema.enabled:
            e = self.cfg.ema
            self.ema_generator = AveragedModel(
                self.generator,
                multi_avg_fn=ema_update_fn(e.decay, e.warmup),
                use_buffers=e.bn_batches == 0,  # else recomputed: see sampling_generator
            )
            self.ema_generator.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> GAN:
        """The module from a composed training config (its MODULE_GROUPS nodes)."""
        groups = {group: to_dict(cfg[group]) for group in MODULE_GROUPS}
        return cls(trust_code=bool(cfg.get("trust_code", False)), **groups)

    @classmethod
    @classmethod
    def load_from_checkpoint(cls, *args: Any, **kwargs: Any) -> GAN:  # type: ignore[override]
        """Refused: Lightning's loader would pass a file's hyperparameters (a `trust_code`
        among them) straight to `GAN(...)`. `gan.training.checkpoints.load_gan` reads a
        checkpoint, run folder or shared folder as data."""
        raise GanError(
            "GAN.load_from_checkpoint is not used in this project: a checkpoint is read as "
            "data by gan.training.checkpoints.load_gan(path) (or python -m gan.sample ckpt=...)."
        )

    # ---- sampling
    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Latent vectors (n, noise.dim) on the module's device."""
        return sample_z(self.cfg.noise.dist, self.cfg.noise.dim, n, self.device, generator)

    @property
    def num_classes(self) -> int:
        """The classes G is conditioned on; 0 for an unconditional GAN."""
        return self.cfg.condition.num_classes if self.cfg.condition.name != "none" else 0

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Random class labels (n,) on the module's device (see `sample_z` for `generator`)."""
        return sample_labels(self.num_classes, n, self.device, generator)

    def sampling_generator(self, ema: bool | None = None) -> nn.Module:
        """The G to draw from: the EMA copy when enabled (or ema=True), else G itself."""
        use_ema = self.ema_generator is not None if ema is None else ema
        if use_ema and self.ema_generator is None:
            raise GanError("this model has no EMA weights: it was trained with ema.enabled=false")
        if not use_ema:
            return self.generator
        if self._ema_bn_stale:
            self.refresh_ema_bn()
        return self.ema_generator.module

    def refresh_ema_bn(self) -> None:
        """Recompute the EMA G's BatchNorm statistics for its averaged weights, from
        `ema.bn_batches` batches of 256 latents of a fixed seed (the global RNG is left
        alone, so training and resume are unchanged)."""
        self._ema_bn_stale = False
        if self.ema_generator is None or self.cfg.ema.bn_batches == 0:
            return
        gen = torch.Generator().manual_seed(self.cfg.metrics.seed)
        inputs = []
        for _ in range(self.cfg.ema.bn_batches):
            z = self.sample_z(256, generator=gen)  # (256, noise.dim)
            inputs.append((z, self.sample_labels(256, generator=gen)) if self.num_classes else (z,))
        recompute_bn_stats(self.ema_generator.module, inputs)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images from latent vectors (and classes): (B, noise.dim) -> (B, C, H, W) in G's range."""
        return self.generator(z) if labels is None else self.generator(z, labels)

    # ---- training
    def configure_optimizers(self) -> Any:
        precision = self.trainer.precision if self._trainer is not None else "32-true"
        c = self.cfg.optimizer
        optimizers = list(build_optimizers(self.generator, self.discriminator, c, precision))
        if SCHEDULES[c.schedule] is None or self._trainer is None:
            return optimizers
        schedulers = build_schedulers(optimizers, c, self._run_iterations())
        # Stepped by hand in training_step, once per iteration: Lightning saves and
        # restores their state with the checkpoints.
        return optimizers, [{"scheduler": s, "interval": "step"} for s in schedulers]

    def _run_iterations(self) -> float:
        """The iterations (batches) this fit will run, for the lr schedule (inf: no end)."""
        t = self.trainer
        total = float(t.estimated_stepping_batches)  # loads the train loader; inf: no end
        if t.max_steps != -1:  # max_steps counts optimizer steps: (d_steps + g_steps) each
            r = self.cfg.step_ratio
            total = min(total, t.max_steps / (r.d_steps + r.g_steps))
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Clip here, inside opt.step(): under 16-mixed, Lightning's GradScaler has unscaled
        # the gradients by now, so the thresholds apply to their true size. The Trainer's
        # gradient_clip_* flags do not apply under manual optimization.
        params = (p for group in optimizer.param_groups for p in group["params"])
        clip_gradients(params, self.cfg.optimizer.clip_value, self.cfg.optimizer.clip_norm)

    def _after_g_update(self) -> None:
        self.g_updates += 1
        if self.ema_generator is not None and self.g_updates % self.cfg.ema.every_n_steps == 0:
            self.ema_generator.update_parameters(self.generator)
            self._ema_bn_stale = True

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        real, labels = batch  # (d_steps * B, C, H, W), (d_steps * B,): a chunk per D update
        if self.cfg.perf.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        labels = labels if self.num_classes else None
        updates = LightningUpdates(self)
        out: StepOutput = self.gan_step(
            self._g, self._d, real, updates, self._after_g_update, labels
        )
        self.iteration += 1
        # Tensors, not .item(): Lightning reduces them off the hot path.
        self.log_dict(
            {"train/d_loss": out.d_loss, "train/g_loss": out.g_loss}, prog_bar=True, on_step=True
        )
        # Loggers receive values only every log_every_n_steps, and each self.log costs about
        # 0.5 ms on a CPU (a tiny MLP's whole iteration is 2.6 ms): the diagnostics are
        # computed and logged on those iterations only.
        every = self.trainer.log_every_n_steps
        if every and self.iteration % every == 0:
            self.log_dict(
                {
                    "train/d_real": torch.sigmoid(out.real_logits).mean(),  # D(x)
                    "train/d_fake": torch.sigmoid(out.fake_logits).mean(),  # D(G(z))
                    "train/d_acc_real": (out.real_logits > 0).float().mean(),
                    "train/d_acc_fake": (out.fake_logits < 0).float().mean(),
                    "train/iteration": float(self.iteration),
                    "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"],  # G's
                },
                on_step=True,
            )
            ada = self.gan_step.ada
            if ada is not None:  # its probability, and the overfitting heuristic steering it
                self.log_dict({"train/ada_p": ada.p, "train/ada_rt": ada.rt}, on_step=True)
        for config in self.trainer.lr_scheduler_configs:  # optimizer.schedule, if any
            config.scheduler.step()
        return {"d_loss": out.d_loss, "g_loss": out.g_loss}  # for gan.training.health.NanGuard

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        if self.cfg.perf.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        if self.cfg.perf.compile and self._g is self.generator:
            log.info("compiling G and D with torch.compile: the first steps take longer")
            mode = self.cfg.perf.compile_mode
            self.__dict__["_g"] = torch.compile(self.generator, mode=mode)
            self.__dict__["_d"] = torch.compile(self.discriminator, mode=mode)
        if self.metrics is not None:
            # Lightning warns about modules left in eval mode when fit starts: those are the
            # frozen classifier's, on purpose (G and D train as usual).
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")

    def on_train_start(self) -> None:
        self._fit_start = time.perf_counter()

    # ---- validation: FID-like scores against held-out reals (see gan.metrics.scores)
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if self.metrics is not None and self.metrics.num_real == 0:
            self._real.append(batch)  # (B, C, H, W), (B,): the real statistics, once per run

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if self.metrics is None or self.trainer.sanity_checking:
            return
        output = self.cfg.model.output
        if self.metrics.num_real == 0:
            if not self._real:
                return
            real, labels = (torch.cat(t) for t in zip(*self._real))
            labels = labels if self.num_classes else None  # per-class reals for intra-FID
            floor = self.metrics.set_real(to_unit_range(real, output), labels)
            self._real.clear()
            self.floor = {f"val/{k}": float(v) for k, v in floor.items()}
            if not self._floor_logged:  # once per run: a resumed run's history has it
                log.info(
                    "real-vs-real floor (two halves of the held-out reals): %s", floor_line(floor)
                )
                self.log_dict({f"val/{k}": v for k, v in floor.items()})
                self._floor_logged = True
        c = self.cfg.metrics
        gen = torch.Generator().manual_seed(c.seed)  # the global RNG is left alone
        z = self.sample_z(c.num_samples, generator=gen)
        # Conditional: every class in turn, as often as the sample size allows.
        labels = torch.arange(c.num_samples) % self.num_classes if self.num_classes else None
        fake = generate(self, z, labels, batch_size=500)  # (N, C, H, W)
        scores = self.metrics.compute(to_unit_range(fake, output), labels)
        scalars = {f"val/{k}": v for k, v in scores.items() if v.dim() == 0}
        self.log_dict(scalars, sync_dist=True)
        fid = float(scores["fid"])
        if math.isfinite(fid) and (self.best_fid is None or fid < self.best_fid[0]):
            self.best_fid = (fid, self.current_epoch)  # for the end-of-run table
        # Wall-clock seconds of training so far (resumes included): time to a given score.
        self.log("val/elapsed_s", self.elapsed_s + time.perf_counter() - self._fit_start)

    # ---- checkpoints: the counters (RNG states are gan.training.faults.RngState's)
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gan_iteration"] = self.iteration
        checkpoint["gan_g_updates"] = self.g_updates
        checkpoint["gan_d_updates"] = self.gan_step.d_updates  # the lazy R1/R2 schedule
        if self.gan_step.ada is not None:  # ADA's p and its unfinished interval's sums
            checkpoint["gan_ada"] = self.gan_step.ada.state_dict()
        checkpoint["gan_elapsed_s"] = self.elapsed_s + time.perf_counter() - self._fit_start
        checkpoint["gan_floor_logged"] = self._floor_logged
        checkpoint["gan_best_fid"] = list(self.best_fid) if self.best_fid else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.iteration = int(checkpoint.get("gan_iteration", 0))
        self.g_updates = int(checkpoint.get("gan_g_updates", 0))
        self.gan_step.d_updates = int(checkpoint.get("gan_d_updates", 0))
        if self.gan_step.ada is not None and "gan_ada" in checkpoint:
            self.gan_step.ada.load_state_dict(checkpoint["gan_ada"])
        self._ema_bn_stale = self.ema_generator is not None  # statistics of any age: redo
        self.elapsed_s = float(checkpoint.get("gan_elapsed_s", 0.0))
        self._floor_logged = bool(checkpoint.get("gan_floor_logged", False))
        best = checkpoint.get("gan_best_fid")
        self.best_fid = (float(best[0]), int(best[1])) if best else None
