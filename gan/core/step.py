"""The one GAN update step, shared by the LightningModule and the benchmark's floor.

One *iteration* is `d_steps` discriminator updates, each on a fresh chunk of real images,
then `g_steps` generator updates, each on fresh noise. `GanStep` owns the losses, label
smoothing, the penalty and the reuse of fakes; how a loss becomes a weight update
(backward, clipping, the optimizer step) is the caller's `Updates`:

    step = GanStep.from_config(cfg, sample_z=lambda n: torch.randn(n, 100))
    out = step(g, d, real, updates)   # real (d_steps * B, 1, H, W)

The module's `Updates` goes through Lightning (`toggle_optimizer`, `manual_backward`,
precision plugins); the floor's (`gan.perf.floor.PlainUpdates`) is plain PyTorch. Both run
this same code, so the floor times the same computation.

The optimizers, their schedules and gradient clipping are gan.core.optim's.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

import torch.nn.functional as F
from torch import Tensor, nn

from gan.core.augment import AdaptiveAugment, DiffAugment, ada_policy
from gan.core.losses import LOSSES, Loss, make_targets, zero_centered_penalty
from gan.core.ranges import value_range
from gan.utils.errors import GanError

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
    With `twin` (tacgan, Gong et al. 2019), D's classifier learns from reals only and a
    twin head learns the fakes' classes; G adds the classifier's cross-entropy on its fakes
    and subtracts the twin's. AC-GAN's classifier also learns G's labelling of the fakes,
    so G and D can agree on classes that are not the data's (a permuted or collapsed
    labelling); TAC-GAN's cannot.

    Stabilisers: `augment` (DiffAugment, or ADA's `AdaptiveAugment`) transforms every image
    D scores, in both updates; an `AdaptiveAugment` is also `ada`, which sees D's logits of
    the reals after each D update to steer its probability (checkpoints keep its state);
    `r1`/`r2` add gamma/2 E||grad D||^2 on the (augmented) reals/fakes to D's loss, every
    `reg_every`-th D update, scaled by `reg_every`. `d_updates` counts D updates for that
    schedule; checkpoints keep it. `topk` < 1 (top-k training): G's loss averages over only
    that share of its fakes, those D scores highest. `pack` > 1 (PacGAN): D scores each
    run of `pack` images as one (see `view`).
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
        augment: Callable[[Tensor], Tensor] | AdaptiveAugment | None = None,
        r1: float = 0.0,
        r2: float = 0.0,
        reg_every: int = 1,
        topk: float = 1.0,
        twin: bool = False,
        pack: int = 1,
    ) -> None:
        self.loss = loss
        self.smoothing = smoothing  # LabelSmoothingConfig: real, fake, noise, flip_prob
        self.sample_z = sample_z  # n -> (n, noise.dim) on the step's device
        self.d_steps, self.g_steps = d_steps, g_steps
        self.penalty_weight = penalty_weight
        self.reuse_fake = reuse_fake
        self.sample_labels = sample_labels  # n -> (n,) class indices; None: unconditional
        self.aux_weight = aux_weight
        self.twin = twin
        self.augment = augment
        self.ada = augment if isinstance(augment, AdaptiveAugment) else None
        self.r1, self.r2, self.reg_every = r1, r2, reg_every
        self.topk = topk
        self.pack = pack
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
        heads = cfg.condition.name in ("acgan", "tacgan")  # D classifies (nets' CLASS_HEADS)
        st = cfg.stabilize
        # Translation and cutout fill with the background: the low end of G's range.
        fill = value_range(cfg.model.output)[0]
        augment: DiffAugment | AdaptiveAugment | None = None
        if st.ada:  # ADA gates diffaug's ops (or its defaults) with its p, instead of always
            policy = ada_policy(st.diffaug, cfg.model.channels)
            augment = AdaptiveAugment(
                policy, fill, st.ada_target, st.ada_interval, st.ada_kimg, st.ada_p0
            )
        elif st.diffaug:
            augment = DiffAugment(st.diffaug, fill)
        return cls(
            LOSSES[cfg.loss.name],
            cfg.label_smoothing,
            sample_z,
            d_steps=cfg.step_ratio.d_steps,
            g_steps=cfg.step_ratio.g_steps,
            penalty_weight=cfg.loss.gp_weight,
            reuse_fake=cfg.perf.reuse_fake,
            sample_labels=sample_labels if conditioned else None,
            aux_weight=cfg.condition.aux_weight if heads else 0.0,
            twin=cfg.condition.name == "tacgan",
            augment=augment,
            r1=st.r1,
            r2=st.r2,
            reg_every=st.reg_every,
            topk=st.topk,
            pack=st.pack,
        )

    def fakes(self, g: nn.Module, n: int) -> Fakes:
        """n fresh fakes from G (with its graph), of random classes when conditioned."""
        z = self.sample_z(n)
        if self.sample_labels is None:
            return g(z), None
        labels = self.sample_labels(n)
        return g(z, labels), labels

    def score(
        self, d: nn.Module, x: Tensor, labels: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """D's logits (B,), and under acgan/tacgan its class heads' logits, each (B,
        num_classes): (classifier,) or (classifier, twin); of x as it is (augment first
        with `view`)."""
        if self.sample_labels is None:
            return d(x), None
        if self.aux_weight:
            out = d(x, labels, aux=True)
            want = "(logits, classifier, twin)" if self.twin else "(logits, classifier)"
            if not isinstance(out, tuple | list) or len(out) != 2 + self.twin:
                got = f"{len(out)} outputs" if isinstance(out, tuple | list) else type(out).__name__
                raise GanError(  # a custom D that ignores aux=, or lacks tacgan's twin head
                    f"D(x, labels, aux=True) returned {got}, but condition="
                    f"{'tacgan' if self.twin else 'acgan'} needs {want}."
                )
            return out[0], tuple(out[1:])
        return d(x, labels), None

    def view(self, x: Tensor, penalized: bool = False) -> Tensor:
        """The images as D sees them: augmented (a fresh draw) when DiffAugment or ADA is
        on, then packed when `pack` > 1; with `penalized`, a leaf that requires grad, for R1/R2.

        Packing (PacGAN) stacks each run of `pack` consecutive images along the channels:
        (B, C, H, W) -> (B / pack, pack * C, H, W), so D gives one logit per pack.
        """
        if self.augment is not None:
            x = self.augment(x)
        if self.pack > 1:
            b, c, h, w = x.shape
            if b % self.pack:
                raise GanError(
                    f"stabilize.pack={self.pack} needs batches of a multiple of {self.pack} "
                    f"images, got {b}: set data.batch_size to a multiple of {self.pack}."
                )
            x = x.reshape(b // self.pack, self.pack * c, h, w)  # (B / pack, pack * C, H, W)
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
            # one target per logit: n, or n / pack when packed
            targets = make_targets(
                self.smoothing, real_logits.size(0), real.device, real_logits.dtype
            )
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
                # acgan: the classifier learns reals and fakes; tacgan: reals, and the twin fakes
                fake_head = fake_aux[1] if self.twin else fake_aux[0]
                aux = F.cross_entropy(real_aux[0], labels)
                aux = aux + F.cross_entropy(fake_head, fake_labels)
                loss = loss + self.aux_weight * aux
            updates.step("d", loss)
        if self.ada is not None:  # r_t: D's verdict on the reals it was trained on
            self.ada.observe(real_logits.detach(), self.pack)  # each logit: `pack` images
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
                if aux is not None:
                    aux, labels = tuple(head[keep] for head in aux), labels[keep]
            loss = self.loss.g(logits, real_logits)
            if aux is not None:
                loss = loss + self.aux_weight * F.cross_entropy(aux[0], labels)
                if self.twin:  # away from what the twin can tell of G's classes
                    loss = loss - self.aux_weight * F.cross_entropy(aux[1], labels)
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
