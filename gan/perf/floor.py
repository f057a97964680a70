"""The benchmark's floor: our update step in a plain PyTorch loop, without Lightning.

`gan.bench` times the module's training step against this. Both run `gan.core.step.GanStep`
with the same networks, optimizers, losses, noise and D:G ratio; only what is around
the step differs (the Trainer, the DataModule, hooks, logging, callbacks):

    loop = PlainLoop(cfg, images, torch.device("cpu"))  # images (N, 1, S, S) float
    loop.step()                                          # one iteration on the next slice
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from gan.core.optim import build_optimizers, build_schedulers, clip_gradients
from gan.core.sampling import sample_labels, sample_z
from gan.core.step import GanStep
from gan.nets.base import build_nets


def compute_dtype(cfg: DictConfig) -> torch.dtype:
    """The dtype that matmuls and convolutions run in under `trainer.precision`."""
    precision = str(cfg.trainer.precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    return torch.float16 if precision.startswith("16") else torch.float32


class PlainUpdates:
    """`gan.core.step.Updates` in plain PyTorch: requires_grad toggles, a GradScaler, clipping."""

    def __init__(
        self,
        nets: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        clip_value: float | None = None,
        clip_norm: float | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.nets, self.optimizers = nets, optimizers
        self.clip_value, self.clip_norm = clip_value, clip_norm
        self.scaler = scaler or torch.amp.GradScaler(enabled=False)  # on only for 16-mixed

    @contextmanager
    def train(self, net: str) -> Iterator[None]:
        # What Lightning's toggle_optimizer does: the other network's weights stop
        # requiring gradients, so no graph is built through it.
        others = [p for name, m in self.nets.items() if name != net for p in m.parameters()]
        flags = [p.requires_grad for p in others]
        for p in others:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(others, flags):
                p.requires_grad_(flag)

    def step(self, net: str, loss: Tensor) -> None:
        opt = self.optimizers[net]
        self.scaler.scale(loss).backward()
        if self.clip_value is not None or self.clip_norm is not None:
            self.scaler.unscale_(opt)
            clip_gradients(self.nets[net].parameters(), self.clip_value, self.clip_norm)
        self.scaler.step(opt)
        self.scaler.update()
        opt.zero_grad(set_to_none=True)


class PlainLoop:
    """The floor: the same nets, step and optimizers; data already a float tensor in memory."""

    def __init__(
        self, cfg: DictConfig, images: Tensor, device: torch.device, labels: Tensor | None = None
    ) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        g, d = (net.to(device) for net in build_nets(cfg, bool(cfg.get("trust_code", False))))
        k = cfg.condition.num_classes if cfg.condition.name != "none" else 0
        # A conditional floor needs the reals' classes: the data's, or random ones.
        if k and labels is None:
            labels = torch.randint(k, images.shape[:1])
        self.labels = labels.to(device) if k else None  # (N,): the reals' classes
        dtype = compute_dtype(cfg)
        self.per = cfg.data.batch_size * cfg.step_ratio.d_steps  # real images per iteration
        self.data = images.to(device)  # (N, 1, S, S) float
        if cfg.perf.channels_last:  # the module's options, for a fair floor
            g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
            self.data = self.data.contiguous(memory_format=torch.channels_last)
        self.g, self.d = g, d
        opt_g, opt_d = build_optimizers(g, d, cfg.optimizer, cfg.trainer.precision)
        c = cfg.optimizer
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # 16-mixed
        self.updates = PlainUpdates(
            {"g": g, "d": d}, {"g": opt_g, "d": opt_d}, c.clip_value, c.clip_norm, scaler
        )
        noise = cfg.noise
        self.gan_step = GanStep.from_config(
            cfg,
            lambda n: sample_z(noise.dist, noise.dim, n, device),
            lambda n: sample_labels(k, n, device),
        )
        mode = cfg.perf.compile_mode
        compiled = cfg.perf.compile
        self.gc = torch.compile(g, mode=mode) if compiled else g
        self.dc = torch.compile(d, mode=mode) if compiled else d
        self.amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
        self.n, self.i = self.data.size(0) // self.per, 0
        # optimizer.schedule over trainer.max_epochs passes of the data, as the module's
        self.schedulers = build_schedulers((opt_g, opt_d), c, cfg.trainer.max_epochs * self.n)

    def step(self) -> None:
        """One iteration on the next slice of the data."""
        k = self.i % self.n
        self.i += 1
        part = slice(k * self.per, (k + 1) * self.per)
        labels = self.labels[part] if self.labels is not None else None
        with self.amp:
            self.gan_step(self.gc, self.dc, self.data[part], self.updates, labels=labels)
        for scheduler in self.schedulers:
            scheduler.step()

    def flops_per_iter(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        flops = FlopCounterMode(display=False)
        labels = self.labels[: self.per] if self.labels is not None else None
        with flops, self.amp:
            self.gan_step(self.g, self.d, self.data[: self.per], self.updates, labels=labels)
        return float(flops.get_total_flops())
