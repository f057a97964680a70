"""The GAN LightningModule: manual optimization of any G/D pair with a D:G step schedule.

One training step is one *iteration*: `d_steps` discriminator updates, each on a fresh
chunk of real images (the DataModule hands over `d_steps * batch_size` images per
batch), then `g_steps` generator updates, each on fresh noise.

Lightning's `global_step` counts optimizer steps, so under manual optimization one batch
raises it by `d_steps + g_steps` (2 for d1g1, 6 for d5g1). `trainer.max_steps` counts the
same way. The true iteration count is logged as `train/iteration` and kept in
checkpoints.

Build it from config dicts (what `gan.train` does, and what `load_from_checkpoint` does
from the hyperparameters saved in every checkpoint):

    module = GAN(model=..., optimizer=..., loss=..., label_smoothing=..., step_ratio=..., noise=...)
    images = module(module.sample_z(16))  # (16, 1, 28, 28)
"""

from __future__ import annotations

import logging
import os
import random
import time
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gan.classifier import load_or_train
from gan.config import (
    EmaConfig,
    GuardConfig,
    LabelSmoothingConfig,
    LossConfig,
    MetricsConfig,
    ModelConfig,
    NoiseConfig,
    OptimizerConfig,
    OptimSpec,
    PerfConfig,
    StepRatioConfig,
)
from gan.errors import GanError
from gan.losses import LOSSES, gradient_penalty, make_targets
from gan.metrics import GanMetrics, to_unit_range

log = logging.getLogger("gan.module")


def rng_states() -> dict[str, Any]:
    """Every RNG the step draws from, as tensors and tuples (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "python": random.getstate(),
        "numpy": (
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
    }


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _typed(schema: type, node: Any) -> DictConfig:
    """Merge a plain dict onto its schema: typed attribute access and validation."""
    return OmegaConf.merge(OmegaConf.structured(schema), node)  # type: ignore[return-value]


FUSED = {"adam", "sgd"}  # torch (>= 2.4) has fused kernels for these on CPU and CUDA


def use_fused(optim_cfg: Any, precision: str) -> bool:
    """Whether the optimizers may be fused under this `trainer.precision`.

    A fused optimizer unscales 16-mixed gradients inside its own step, too late for
    clipping: Lightning refuses that pair, so clipped 16-mixed runs use foreach.
    """
    clipped = optim_cfg.clip_value is not None or optim_cfg.clip_norm is not None
    return not (clipped and str(precision) == "16-mixed")


def build_optimizer(params: Any, spec: Any, lr: float, fused: bool = True) -> torch.optim.Optimizer:
    """One network's optimizer from an `OptimSpec`, with torch's fastest kernels.

    Fused (one kernel for the whole update) where torch has it, else foreach (one kernel
    per op, not per tensor). On this CPU, fused Adam steps dcgan's G in 1.1 ms against
    2.6 ms for foreach and 6.1 ms for the per-tensor loop.
    """
    kernel = {"fused": True} if fused and spec.name in FUSED else {"foreach": True}
    common = {"lr": lr, "weight_decay": spec.weight_decay, **kernel}
    if spec.name == "adam":
        return torch.optim.Adam(params, betas=tuple(spec.betas), eps=spec.eps, **common)
    if spec.name == "rmsprop":
        return torch.optim.RMSprop(
            params, alpha=spec.alpha, eps=spec.eps, momentum=spec.momentum, **common
        )
    if spec.name == "sgd":
        return torch.optim.SGD(params, momentum=spec.momentum, **common)
    raise GanError(f"unknown optimizer {spec.name!r}: use adam, rmsprop or sgd")


class GAN(L.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        label_smoothing: dict[str, Any] | None = None,
        step_ratio: dict[str, Any] | None = None,
        noise: dict[str, Any] | None = None,
        ema: dict[str, Any] | None = None,
        guard: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        perf: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # GANs step two optimizers by hand
        self.model_cfg = _typed(ModelConfig, model)
        self.optim_cfg = _typed(OptimizerConfig, optimizer or {})
        self.loss_cfg = _typed(LossConfig, loss or {})
        self.smoothing = _typed(LabelSmoothingConfig, label_smoothing or {})
        self.ratio = _typed(StepRatioConfig, step_ratio or {})
        self.noise = _typed(NoiseConfig, noise or {})
        self.ema_cfg = _typed(EmaConfig, ema or {})
        self.guard = _typed(GuardConfig, guard or {})
        # Interpolations (${data.root}) are resolved by gan.train; defaults here are for
        # modules built by hand, which get no metrics unless a root is given.
        self.metrics_cfg = OmegaConf.merge(
            OmegaConf.structured(MetricsConfig(root="data", split="train", download=False)),
            metrics or {"enabled": False},
        )
        self.metrics: GanMetrics | None = None  # built in setup(): not needed to sample
        self.perf = _typed(PerfConfig, perf or {})
        self._real: list[Tensor] = []
        self.rollbacks = 0
        self._pending_check: tuple[Tensor, Any, int, int] | None = None  # see defer_checks
        if self.loss_cfg.name not in LOSSES:
            raise GanError(f"loss={self.loss_cfg.name} is unknown: use one of {list(LOSSES)}")
        self.d_loss_fn, self.g_loss_fn = LOSSES[self.loss_cfg.name]

        self.generator: nn.Module = instantiate(self.model_cfg.generator)
        self.discriminator: nn.Module = instantiate(self.model_cfg.discriminator)
        # What the training step calls: G and D, or their compiled versions (set in setup).
        # Kept out of the module registry, so checkpoints hold the plain networks' keys.
        self.__dict__["_g"], self.__dict__["_d"] = self.generator, self.discriminator
        size = self.model_cfg.img_size
        for net in (self.generator, self.discriminator):
            if getattr(net, "img_size", size) != size:
                raise GanError(
                    f"model.img_size={size} but {type(net).__module__}.{type(net).__name__} "
                    f"works on {net.img_size}x{net.img_size} images; set model.img_size="
                    f"{net.img_size}."
                )
        if getattr(self.generator, "output", self.model_cfg.output) != self.model_cfg.output:
            raise GanError(
                f"model.output={self.model_cfg.output} but the generator ends in "
                f"{self.generator.output}; set model.output={self.generator.output}."
            )
        self.iteration = 0  # true GAN iterations (batches), unlike Lightning's global_step
        self.elapsed_s = 0.0  # training wall time before this fit (from a checkpoint)
        self._fit_start = time.perf_counter()
        self.g_updates = 0
        # EMA of G's weights only (Lightning's weight averaging would average D too).
        # A submodule, so it is saved in and restored from checkpoints with the rest.
        self.ema_generator: AveragedModel | None = None
        if self.ema_cfg.enabled:
            self.ema_generator = AveragedModel(
                self.generator,
                multi_avg_fn=get_ema_multi_avg_fn(self.ema_cfg.decay),
                use_buffers=True,  # BatchNorm running stats are averaged too
            )
            self.ema_generator.requires_grad_(False)

    # ---- sampling
    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Latent vectors (n, noise.dim) on the module's device."""
        shape = (n, self.noise.dim)
        device = generator.device if generator is not None else self.device
        if self.noise.dist == "uniform":  # U[-1, 1]
            z = torch.rand(shape, generator=generator, device=device) * 2 - 1
        else:  # N(0, 1)
            z = torch.randn(shape, generator=generator, device=device)
        return z.to(self.device)

    def sampling_generator(self, ema: bool | None = None) -> nn.Module:
        """The G to draw from: the EMA copy when enabled (or ema=True), else G itself."""
        use_ema = self.ema_generator is not None if ema is None else ema
        if use_ema and self.ema_generator is None:
            raise GanError("this model has no EMA weights: it was trained with ema.enabled=false")
        return self.ema_generator.module if use_ema else self.generator

    def forward(self, z: Tensor) -> Tensor:
        """Images from latent vectors: (B, noise.dim) -> (B, 1, H, W) in G's output range."""
        return self.generator(z)

    # ---- training
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        c = self.optim_cfg
        g_spec: OptimSpec = c.g
        d_spec: OptimSpec = c.d
        g_lr = g_spec.lr if g_spec.lr is not None else c.lr
        d_lr = d_spec.lr if d_spec.lr is not None else c.lr * c.d_lr_scale
        fused = use_fused(c, self.trainer.precision if self._trainer is not None else "32-true")
        return [
            build_optimizer(self.generator.parameters(), g_spec, g_lr, fused),
            build_optimizer(self.discriminator.parameters(), d_spec, d_lr, fused),
        ]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Clip here, inside opt.step(): under 16-mixed, Lightning's GradScaler has unscaled
        # the gradients by now, so the thresholds apply to their true size (clipping before
        # opt.step() would clip gradients still multiplied by the loss scale, 65,536 at
        # first). The Trainer's gradient_clip_* flags do not apply under manual optimization.
        if self.optim_cfg.clip_value is not None:
            self.clip_gradients(optimizer, self.optim_cfg.clip_value, "value")
        if self.optim_cfg.clip_norm is not None:
            self.clip_gradients(optimizer, self.optim_cfg.clip_norm, "norm")

    def _update(self, opt: Any, loss: Tensor) -> None:
        self.manual_backward(loss)
        opt.step()  # unscales (16-mixed), clips (on_before_optimizer_step), then steps
        opt.zero_grad(set_to_none=True)

    def d_step(
        self, real: Tensor, opt: Any, keep_fake: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """One D update on real images (B, 1, H, W) and as many fresh fakes.

        With keep_fake, the fakes are made with G's graph and returned, so the next G
        update can reuse them instead of running G again (perf.reuse_fake).
        """
        kept = self._g(self.sample_z(real.size(0))) if keep_fake else None  # (B, 1, H, W)
        self.toggle_optimizer(opt)  # G's params stop requiring grad: no graph through G
        fake = kept.detach() if kept is not None else self._g(self.sample_z(real.size(0)))
        real_logits = self._d(real)  # (B,)
        fake_logits = self._d(fake)  # (B,)
        targets = make_targets(self.smoothing, real.size(0), real.device, real_logits.dtype)
        loss = self.d_loss_fn(real_logits, fake_logits, targets)
        if self.loss_cfg.name == "wgan_gp":
            loss = loss + self.loss_cfg.gp_weight * gradient_penalty(self.discriminator, real, fake)
        self._update(opt, loss)
        self.untoggle_optimizer(opt)
        return loss.detach(), real_logits.detach(), fake_logits.detach(), kept

    def g_step(self, n: int, opt: Any, fake: Tensor | None = None) -> Tensor:
        """One G update on n fresh latent vectors (or on `fake`, kept from the D update)."""
        self.toggle_optimizer(opt)  # D's params stop requiring grad: no D weight grads
        if fake is None:
            fake = self._g(self.sample_z(n))  # (n, 1, H, W)
        loss = self.g_loss_fn(self._d(fake))  # D(G(z)): (n,)
        self._update(opt, loss)
        self.untoggle_optimizer(opt)
        self.g_updates += 1
        if self.ema_generator is not None and self.g_updates % self.ema_cfg.every_n_steps == 0:
            self.ema_generator.update_parameters(self.generator)
        return loss.detach()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, _ = batch  # (d_steps * B, 1, H, W): one fresh chunk per D update
        if self.perf.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        opt_g, opt_d = self.optimizers()
        chunks = real.chunk(self.ratio.d_steps)
        for i, chunk in enumerate(chunks):
            keep = self.perf.reuse_fake and i == len(chunks) - 1
            d_loss, real_logits, fake_logits, kept = self.d_step(chunk, opt_d, keep_fake=keep)
        for j in range(self.ratio.g_steps):
            g_loss = self.g_step(chunk.size(0), opt_g, kept if j == 0 else None)
        self.iteration += 1
        if self.guard.check_every_n and self.iteration % self.guard.check_every_n == 0:
            self.check_finite(d_loss, g_loss)
        # Tensors, not .item(): Lightning reduces them off the hot path.
        self.log_dict({"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True, on_step=True)
        # Loggers receive values only every log_every_n_steps, and each self.log costs about
        # 0.5 ms on a CPU (a tiny MLP's whole iteration is 2.6 ms): the diagnostics are
        # computed and logged on those iterations only.
        every = self.trainer.log_every_n_steps
        if every and self.iteration % every == 0:
            self.log_dict(
                {
                    "train/d_real": torch.sigmoid(real_logits).mean(),  # D(x)
                    "train/d_fake": torch.sigmoid(fake_logits).mean(),  # D(G(z))
                    "train/d_acc_real": (real_logits > 0).float().mean(),
                    "train/d_acc_fake": (fake_logits < 0).float().mean(),
                    "train/iteration": float(self.iteration),
                },
                on_step=True,
            )

    # ---- metrics (FID-like scores against held-out reals; see gan.metrics)
    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        if self.perf.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        if self.perf.compile and self._g is self.generator:
            log.info("compiling G and D with torch.compile: the first steps take longer")
            mode = self.perf.compile_mode
            self.__dict__["_g"] = torch.compile(self.generator, mode=mode)
            self.__dict__["_d"] = torch.compile(self.discriminator, mode=mode)
        if self.metrics_cfg.enabled and self.metrics is None:
            c = self.metrics_cfg  # gan.train has made the classifier already: this loads it
            clf = load_or_train(c.root, c.split, c.download, max_epochs=c.classifier_epochs)
            self.metrics = GanMetrics(clf)  # frozen; its state_dict is empty: not in checkpoints
            # Lightning warns about modules left in eval mode when fit starts: those are the
            # frozen classifier's, on purpose (G and D train as usual).
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if self.metrics is not None and self.metrics.num_real == 0:
            self._real.append(batch[0])  # (B, 1, H, W): the real statistics, once per run

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if self.metrics is None or self.trainer.sanity_checking:
            return
        output = self.model_cfg.output
        if self.metrics.num_real == 0:
            if not self._real:
                return
            floor = self.metrics.set_real(to_unit_range(torch.cat(self._real), output))
            self._real.clear()
            log.info(
                "real-vs-real floor (two halves of the held-out reals): FID %.3f, KID %.4f",
                floor["fid_floor"],
                floor["kid_floor"],
            )
            self.log_dict(
                {"val/fid_floor": floor["fid_floor"], "val/kid_floor": floor["kid_floor"]}
            )
        gen = torch.Generator().manual_seed(self.metrics_cfg.seed)  # the global RNG is left alone
        z = self.sample_z(self.metrics_cfg.num_samples, generator=gen)
        net = self.sampling_generator()
        was_training = net.training
        net.eval()
        try:
            fake = torch.cat([net(chunk) for chunk in z.split(500)])  # (N, 1, H, W)
        finally:
            net.train(was_training)
        scores = self.metrics.compute(to_unit_range(fake.float(), output))
        keys = ("fid", "kid", "mnist_score", "coverage", "coverage_entropy")
        self.log_dict({f"val/{k}": scores[k] for k in keys}, sync_dist=True)
        # Wall-clock seconds of training so far (resumes included): time to a given score.
        self.log("val/elapsed_s", self.elapsed_s + time.perf_counter() - self._fit_start)

    # ---- divergence
    def _nonfinite_nets(self) -> list[str]:
        nets = (("generator", self.generator), ("discriminator", self.discriminator))
        return [n for n, net in nets if not all(torch.isfinite(p).all() for p in net.parameters())]

    def defer_checks(self) -> bool:
        """Whether a NaN check's flag is read at the next check instead of at once.

        On a GPU, reading the flag at once waits for the step to finish: a sync every
        iteration, and the GPU idles while Python prepares the next step. Read one check
        later, the flag has long arrived, at the price of finding a NaN one check late.
        """
        return self.device.type == "cuda"

    def check_finite(self, d_loss: Tensor, g_loss: Tensor) -> None:
        """Stop (or roll back) on a NaN/Inf loss or weight, naming the step and the network."""
        losses = torch.stack([d_loss, g_loss]).float()  # (2,)
        flagged = torch.cat([torch.isfinite(losses).all().float()[None], losses])  # (3,)
        if not self.defer_checks():
            self._read_check((flagged, None, self.iteration, self.global_step))  # one sync
            return
        event = None
        if flagged.is_cuda:  # to pinned host memory without waiting; the event marks arrival
            flagged = torch.empty(3, pin_memory=True).copy_(flagged, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        pending = self._pending_check
        self._pending_check = (flagged, event, self.iteration, self.global_step)
        if pending is not None:
            self._read_check(pending)

    def on_train_epoch_end(self) -> None:
        pending, self._pending_check = self._pending_check, None
        if pending is not None:  # the epoch's last deferred check
            self._read_check(pending)

    def _read_check(self, check: tuple[Tensor, Any, int, int]) -> None:
        flagged, event, iteration, step = check
        if event is not None:
            event.synchronize()  # recorded a whole check ago: done by now
        if bool(flagged[0]):
            return
        self._pending_check = None  # a rollback or a stop: what is in flight is moot
        bad = self._nonfinite_nets() or ["none (only the loss)"]
        late = (
            f" (found at iteration {self.iteration}: GPU checks are read one check late)"
            if iteration != self.iteration
            else ""
        )
        where = (
            f"at iteration {iteration} (global step {step}){late}: D loss "
            f"{flagged[1].item():.4g}, G loss {flagged[2].item():.4g}; networks with "
            f"non-finite weights: {', '.join(bad)}"
        )
        last = self._last_checkpoint()
        if (
            self.guard.on_nonfinite == "rollback"
            and last
            and self.rollbacks < self.guard.max_rollbacks
        ):
            self._rollback(last, where)
            return
        keep = (
            f"The last good checkpoint is kept: {last}." if last else "No checkpoint was saved yet."
        )
        raise GanError(
            f"training diverged {where}. {keep} Lower optimizer.lr, add optimizer.clip_norm=1.0, "
            f"or set guard.on_nonfinite=rollback to reload the last checkpoint with a lower lr."
        )

    def _last_checkpoint(self) -> str | None:
        cb = self.trainer.checkpoint_callback if self._trainer is not None else None
        path = getattr(cb, "dirpath", None)
        if path and os.path.exists(os.path.join(path, "last.ckpt")):
            return os.path.join(path, "last.ckpt")
        return None

    def _rollback(self, path: str, where: str) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.load_state_dict(ckpt["state_dict"])
        for opt, state in zip([o.optimizer for o in self.optimizers()], ckpt["optimizer_states"]):
            opt.load_state_dict(state)
            for group in opt.param_groups:
                group["lr"] *= self.guard.lr_factor
        self.rollbacks += 1
        log.warning(
            "training diverged %s; rolled back to %s and multiplied the learning rates "
            "by %s (rollback %d of %d)",
            where,
            path,
            self.guard.lr_factor,
            self.rollbacks,
            self.guard.max_rollbacks,
        )

    # ---- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = self._nonfinite_nets()
        if bad:  # never overwrite a good checkpoint with broken weights
            raise GanError(f"refusing to save a checkpoint: non-finite weights in {', '.join(bad)}")
        checkpoint["gan_iteration"] = self.iteration
        checkpoint["gan_g_updates"] = self.g_updates
        checkpoint["gan_elapsed_s"] = self.elapsed_s + time.perf_counter() - self._fit_start
        checkpoint["gan_rng"] = rng_states()  # exact resume: noise, flips, dropout

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.iteration = int(checkpoint.get("gan_iteration", 0))
        self.g_updates = int(checkpoint.get("gan_g_updates", 0))
        self.elapsed_s = float(checkpoint.get("gan_elapsed_s", 0.0))
        self._pending_rng = checkpoint.get("gan_rng")

    def on_train_start(self) -> None:
        self._fit_start = time.perf_counter()
        # Restore the RNG last, after everything that restoring and setup may have drawn.
        rng = getattr(self, "_pending_rng", None)
        if rng is not None:
            set_rng_states(rng)
            self._pending_rng = None
