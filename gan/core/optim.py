"""The optimizer registry, stated once: `OPTIMIZERS` (`optimizer.g.name`, `optimizer.d.name`),
`build_optimizers`, the learning-rate schedules (`SCHEDULES`, `build_schedulers`, the
`optimizer.schedule` option) and `clip_gradients`. The module, the benchmark's floor and
validation all read them here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from gan.utils.errors import GanError

# ---- optimizers ------------------------------------------------------------------------


def _adam(params: Any, spec: Any, common: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, betas=tuple(spec.betas), eps=spec.eps, **common)


def _rmsprop(params: Any, spec: Any, common: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params, alpha=spec.alpha, eps=spec.eps, momentum=spec.momentum, **common
    )


def _sgd(params: Any, spec: Any, common: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, momentum=spec.momentum, **common)


# `optimizer.g.name` / `optimizer.d.name` -> a builder. A new optimizer is one entry here.
OPTIMIZERS: dict[str, Callable[[Any, Any, dict[str, Any]], torch.optim.Optimizer]] = {
    "adam": _adam,
    "rmsprop": _rmsprop,
    "sgd": _sgd,
}
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
    per op, not per tensor). On a 2-core CPU, fused Adam steps dcgan's G in 1.1 ms against
    2.6 ms for foreach and 6.1 ms for the per-tensor loop.
    """
    kernel = {"fused": True} if fused and spec.name in FUSED else {"foreach": True}
    return OPTIMIZERS[spec.name](
        params, spec, {"lr": lr, "weight_decay": spec.weight_decay, **kernel}
    )


def build_optimizers(
    g: nn.Module, d: nn.Module, optim_cfg: Any, precision: str = "32-true"
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """G's and D's optimizers. Learning rates: `g.lr` / `d.lr` when set, else `lr` (times
    `d_lr_scale` for D, as TTUR does)."""
    c = optim_cfg
    g_lr = c.g.lr if c.g.lr is not None else c.lr
    d_lr = c.d.lr if c.d.lr is not None else c.lr * c.d_lr_scale
    fused = use_fused(c, precision)
    return build_optimizer(g.parameters(), c.g, g_lr, fused), build_optimizer(
        d.parameters(), c.d, d_lr, fused
    )


def _linear(t: float) -> float:
    return t


def _cosine(t: float) -> float:
    return (1 - math.cos(math.pi * t)) / 2


# `optimizer.schedule` -> the share (0 .. 1) of the decay done at t (0 .. 1) of the decay's
# span; None keeps the lr constant. A new schedule is one entry here.
SCHEDULES: dict[str, Callable[[float], float] | None] = {
    "constant": None,
    "linear": _linear,  # CycleGAN's `lr_policy=linear`
    "cosine": _cosine,
}


def lr_factor(
    iteration: int, total: float, schedule: str, decay_start: float, final_scale: float
) -> float:
    """The multiplier of both learning rates after `iteration` of `total` iterations: 1 until
    `decay_start` (a share of the run), then down to `final_scale` at the run's end."""
    shape = SCHEDULES[schedule]
    start = decay_start * total
    if shape is None or iteration <= start:
        return 1.0
    done = shape(min(1.0, (iteration - start) / max(total - start, 1.0)))
    return 1.0 + (final_scale - 1.0) * done


def build_schedulers(
    optimizers: Iterable[torch.optim.Optimizer], optim_cfg: Any, total: float
) -> list[torch.optim.lr_scheduler.LambdaLR]:
    """One `LambdaLR` per optimizer for `optimizer.schedule` over a run of `total`
    iterations; the caller steps each once per iteration. [] for a constant lr."""
    c = optim_cfg
    if SCHEDULES[c.schedule] is None:
        return []
    if not (0 < total < math.inf):
        raise GanError(
            f"optimizer.schedule={c.schedule} decays the lr over the run, but this run has no "
            f"set length. Set trainer.max_epochs (or trainer.max_steps), or "
            f"optimizer.schedule=constant."
        )
    factor = partial(
        lr_factor,
        total=float(total),
        schedule=c.schedule,
        decay_start=c.decay_start,
        final_scale=c.final_lr_scale,
    )
    return [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in optimizers]


def clip_gradients(
    params: Iterable[Tensor], clip_value: float | None, clip_norm: float | None
) -> None:
    """Clamp each gradient to [-clip_value, clip_value], then rescale to total norm clip_norm.

    Call it on unscaled gradients: under 16-mixed, after the GradScaler's unscale.
    """
    params = [p for p in params if p.grad is not None]
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(params, clip_value)
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
