"""The one GAN update step, shared by the LightningModule and the benchmark's floor.

One *iteration* is `d_steps` discriminator updates, each on a fresh chunk of real images,
then `g_steps` generator updates, each on fresh noise. `GanStep` owns the losses, label
smoothing, the penalty and the reuse of fakes; how a loss becomes a weight update
(backward, clipping, the optimizer step) is the caller's `Updates`:

    step = GanStep.from_config(cfg, sample_z=lambda n: torch.randn(n, 100))
    out = step(g, d, real, updates)   # real (d_steps * B, 1, H, W)

The module's `Updates` goes through Lightning (`toggle_optimizer`, `manual_backward`,
precision plugins); the floor's (`gan.floor.PlainUpdates`) is plain PyTorch. Both run
this same code, so the floor times the same computation.

The optimizer registry lives here too: `OPTIMIZERS`, `build_optimizers`, `clip_gradients`,
and the learning-rate schedules (`SCHEDULES`, `build_schedulers`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan.augment import DiffAugment
from gan.errors import GanError
from gan.losses import LOSSES, Loss, make_targets, zero_centered_penalty
from gan.ranges import value_range

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


# ---- the step --------------------------------------------------------------------------


class Updates(Protocol):
    """How a loss becomes an update of "g" or "d"."""

    def train(self, net: str) -> AbstractContextManager[Any]:
        """Inside the block only `net`'s weights get gradients (no graph through the other)."""

    def step(self, net: str, loss: Tensor) -> None:
        """Backward, clip, optimizer step, zero the gradients."""


class StepOutput(NamedTuple):
    """What one iteration reports, detached: the last D update's and G update's values."""

    d_loss: Tensor  # ()
    g_loss: Tensor  # ()
    real_logits: Tensor  # (B,)
    fake_logits: Tensor  # (B,)


Fakes = tuple[Tensor, Tensor | None]  # images (B, C, H, W), and their labels (B,) if conditioned


class GanStep:
    """One GAN iteration: D updates, then G updates, under one loss record.

    With `num_classes` > 0 the networks are class-conditional (gan.nets.base): G draws
    fakes of random classes, D scores reals with their labels and fakes with theirs, and
    with `aux_weight` > 0 (acgan) both losses add the auxiliary classifier's cross-entropy.

    Stabilisers: `augment` (DiffAugment) transforms every image D scores, in both updates;
    `r1`/`r2` add gamma/2 E||grad D||^2 on the (augmented) reals/fakes to D's loss, every
    `reg_every`-th D update, scaled by `reg_every`. `d_updates` counts D updates for that
    schedule; checkpoints keep it. `topk` < 1 (top-k training): G's loss averages over only
    that share of its fakes, those D scores highest.
    """

    def __init__(
        self,
        loss: Loss,
        smoothing: Any,
        sample_z: Callable[[int], Tensor],
        d_steps: int = 1,
        g_steps: int = 1,
        penalty_weight: float = 0.0,
        reuse_fake: bool = False,
        sample_labels: Callable[[int], Tensor] | None = None,
        aux_weight: float = 0.0,
        augment: Callable[[Tensor], Tensor] | None = None,
        r1: float = 0.0,
        r2: float = 0.0,
        reg_every: int = 1,
        topk: float = 1.0,
    ) -> None:
        self.loss = loss
        self.smoothing = smoothing  # LabelSmoothingConfig: real, fake, noise, flip_prob
        self.sample_z = sample_z  # n -> (n, noise.dim) on the step's device
        self.d_steps, self.g_steps = d_steps, g_steps
        self.penalty_weight = penalty_weight
        self.reuse_fake = reuse_fake
        self.sample_labels = sample_labels  # n -> (n,) class indices; None: unconditional
        self.aux_weight = aux_weight
        self.augment = augment
        self.r1, self.r2, self.reg_every = r1, r2, reg_every
        self.topk = topk
        self.d_updates = 0

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        sample_z: Callable[[int], Tensor],
        sample_labels: Callable[[int], Tensor] | None = None,
    ) -> GanStep:
        """From a config with `loss`, `label_smoothing`, `step_ratio`, `perf`, `condition`,
        `stabilize` and `model.output`."""
        conditioned = cfg.condition.name != "none"
        st = cfg.stabilize
        # Translation and cutout fill with the background: the low end of G's range.
        augment = DiffAugment(st.diffaug, value_range(cfg.model.output)[0]) if st.diffaug else None
        return cls(
            LOSSES[cfg.loss.name],
            cfg.label_smoothing,
            sample_z,
            d_steps=cfg.step_ratio.d_steps,
            g_steps=cfg.step_ratio.g_steps,
            penalty_weight=cfg.loss.gp_weight,
            reuse_fake=cfg.perf.reuse_fake,
            sample_labels=sample_labels if conditioned else None,
            aux_weight=cfg.condition.aux_weight if cfg.condition.name == "acgan" else 0.0,
            augment=augment,
            r1=st.r1,
            r2=st.r2,
            reg_every=st.reg_every,
            topk=st.topk,
        )

    def fakes(self, g: nn.Module, n: int) -> Fakes:
        """n fresh fakes from G (with its graph), of random classes when conditioned."""
        z = self.sample_z(n)
        if self.sample_labels is None:
            return g(z), None
        labels = self.sample_labels(n)
        return g(z, labels), labels

    def score(self, d: nn.Module, x: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """D's logits (B,), and its class logits (B, num_classes) under acgan, of x as it is
        (augment first with `view`)."""
        if self.sample_labels is None:
            return d(x), None
        if self.aux_weight:
            return d(x, labels, aux=True)
        return d(x, labels), None

    def view(self, x: Tensor, penalized: bool = False) -> Tensor:
        """The images as D sees them: augmented (a fresh draw) when DiffAugment is on; with
        `penalized`, a leaf that requires grad, for R1/R2."""
        if self.augment is not None:
            x = self.augment(x)
        return x.detach().requires_grad_(True) if penalized else x

    def d_update(
        self,
        g: nn.Module,
        d: nn.Module,
        real: Tensor,
        updates: Updates,
        keep_fake: bool = False,
        labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Fakes | None]:
        """One D update on real images (B, C, H, W) (with their labels) and as many fakes.

        With keep_fake, the fakes are made with G's graph and returned, so the next G
        update can reuse them instead of running G again (perf.reuse_fake).
        """
        n = real.size(0)
        kept = self.fakes(g, n) if keep_fake else None  # with G's graph
        lazy = self.d_updates % self.reg_every == 0  # R1/R2 on this update
        r1, r2 = (self.r1, self.r2) if lazy else (0.0, 0.0)
        self.d_updates += 1
        with updates.train("d"):
            fake, fake_labels = (kept[0].detach(), kept[1]) if kept else self.fakes(g, n)
            real_in, fake_in = self.view(real, r1 > 0), self.view(fake, r2 > 0)
            real_logits, real_aux = self.score(d, real_in, labels)  # (B,), (B, K) or None
            fake_logits, fake_aux = self.score(d, fake_in, fake_labels)
            targets = make_targets(self.smoothing, n, real.device, real_logits.dtype)
            loss = self.loss.d(real_logits, fake_logits, targets)
            if self.loss.penalty is not None:
                critic = d if labels is None else (lambda x: self.score(d, x, labels)[0])
                loss = loss + self.penalty_weight * self.loss.penalty(
                    critic, real_in.detach(), fake_in.detach()
                )
            if r1:  # lazy: every reg_every-th update, reg_every times the weight
                loss = loss + r1 / 2 * self.reg_every * zero_centered_penalty(real_logits, real_in)
            if r2:
                loss = loss + r2 / 2 * self.reg_every * zero_centered_penalty(fake_logits, fake_in)
            if real_aux is not None and fake_aux is not None:
                aux = F.cross_entropy(real_aux, labels) + F.cross_entropy(fake_aux, fake_labels)
                loss = loss + self.aux_weight * aux
            updates.step("d", loss)
        return loss.detach(), real_logits.detach(), fake_logits.detach(), kept

    def g_update(
        self,
        g: nn.Module,
        d: nn.Module,
        n: int,
        updates: Updates,
        fake: Fakes | None = None,
        real: Tensor | None = None,
        real_labels: Tensor | None = None,
    ) -> Tensor:
        """One G update on n fresh fakes (or on `fake`, kept from the D update). A
        relativistic loss also scores `real` (n, C, H, W), the last D update's reals."""
        with updates.train("g"):  # no gradients for D's weights
            images, labels = fake if fake is not None else self.fakes(g, n)  # (n, C, H, W)
            logits, aux = self.score(d, self.view(images), labels)  # D(G(z)): (n,)
            real_logits = None
            if self.loss.g_needs_real and real is not None:
                real_logits = self.score(d, self.view(real), real_labels)[0]  # (n,)
            if self.topk < 1.0:  # only the fakes D rates most real teach G
                keep = logits.detach().topk(max(1, round(self.topk * logits.size(0)))).indices
                logits = logits[keep]  # (k,)
                real_logits = real_logits[keep] if real_logits is not None else None
                aux, labels = (aux[keep], labels[keep]) if aux is not None else (aux, labels)
            loss = self.loss.g(logits, real_logits)
            if aux is not None:
                loss = loss + self.aux_weight * F.cross_entropy(aux, labels)
            updates.step("g", loss)
        return loss.detach()

    def __call__(
        self,
        g: nn.Module,
        d: nn.Module,
        real: Tensor,
        updates: Updates,
        after_g_update: Callable[[], None] | None = None,
        labels: Tensor | None = None,
    ) -> StepOutput:
        """One iteration on `real` (d_steps * B, C, H, W): one fresh chunk per D update.

        `labels` (d_steps * B,) are the reals' classes; a conditioned step needs them.
        """
        chunks = real.chunk(self.d_steps)
        label_chunks = labels.chunk(self.d_steps) if labels is not None else [None] * len(chunks)
        for i, (chunk, chunk_labels) in enumerate(zip(chunks, label_chunks)):
            keep = self.reuse_fake and i == len(chunks) - 1
            d_loss, real_logits, fake_logits, kept = self.d_update(
                g, d, chunk, updates, keep, chunk_labels
            )
        for j in range(self.g_steps):
            fake = kept if j == 0 else None
            g_loss = self.g_update(g, d, chunk.size(0), updates, fake, chunk, chunk_labels)
            if after_g_update is not None:
                after_g_update()
        return StepOutput(d_loss, g_loss, real_logits, fake_logits)
