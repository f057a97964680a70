"""The one update step: the module and the benchmark's floor run the same computation.

From the same weights, noise (the same RNG state) and real images, one iteration of the
module inside `trainer.fit` and one of the plain floor (`gan.perf.floor.PlainLoop`) must
leave bit-identical weights, for every kind of step: losses with and without targets,
the gradient penalty, label smoothing that draws noise, uniform latents, a D:G ratio,
reuse of fakes, clipping and each kind of class conditioning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import pytest
import torch
from omegaconf import DictConfig

from gan.core.losses import LOSSES
from gan.core.step import GanStep
from gan.perf.floor import PlainLoop
from gan.training.build import build
from gan.utils.errors import GanError

MakeCfg = Callable[..., DictConfig]


class Capture(L.Callback):
    """Before the first iteration: the weights, the RNG state and the real batch."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, *args: Any
    ) -> None:
        if not hasattr(self, "rng"):
            self.g = {k: v.clone() for k, v in pl_module.generator.state_dict().items()}
            self.d = {k: v.clone() for k, v in pl_module.discriminator.state_dict().items()}
            self.real = batch[0].clone()  # (d_steps * B, 1, 28, 28), in the model's range
            self.labels = batch[1].clone()  # (d_steps * B,)
            self.rng = torch.get_rng_state()


CASES = {
    "bce": [],
    "bce-d1g1": ["step_ratio=d1g1"],  # the default takes two G updates; most recipes one
    "wgan_gp-d2g1-uniform": ["loss=wgan_gp", "step_ratio=d2g1", "noise=uniform"],
    "lsgan-noisy-smoothing": ["loss=lsgan", "label_smoothing=noisy"],
    "hinge-d1g2-reuse-fake-topk": [
        "loss=hinge",
        "step_ratio=d1g2",
        "perf.reuse_fake=true",
        "stabilize.topk=0.5",
    ],
    "rmsprop-clipped": [
        "optimizer=rmsprop",
        "optimizer.clip_norm=0.1",
        "optimizer.clip_value=0.01",
    ],
    "projection-d2g1": ["condition=projection", "step_ratio=d2g1"],
    "acgan-wgan_gp-reuse-fake": ["condition=acgan", "loss=wgan_gp", "perf.reuse_fake=true"],
    "concat-lsgan": ["condition=concat", "loss=lsgan"],
    "tacgan-hinge-d2g1": ["condition=tacgan", "loss=hinge", "step_ratio=d2g1"],
    # the stabilisers: every one draws from the RNG or keeps state in the step or in D
    "rpgan-r1-r2-diffaug-reuse": [
        "loss=rpgan",
        "stabilize.r1=1",
        "stabilize.r2=1",
        "stabilize.diffaug=[translation,cutout,color]",
        "perf.reuse_fake=true",
    ],
    "spectral-norm-hinge-d2g1-lazy-r1": [
        "loss=hinge",
        "stabilize.spectral_norm=true",
        "stabilize.r1=5",
        "stabilize.reg_every=2",
        "step_ratio=d2g1",
    ],
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_one_iteration_of_the_module_and_of_the_floor_give_the_same_weights(
    make_cfg: MakeCfg, overrides: list[str]
) -> None:
    cfg = make_cfg(
        "model=dcgan",
        "model.generator.base_channels=8",
        "model.discriminator.base_channels=8",
        "metrics.enabled=false",
        "callbacks=none",
        "logger=none",
        *overrides,
    )
    capture = Capture()
    ratio = cfg.step_ratio.d_steps + cfg.step_ratio.g_steps
    run = build(
        cfg, callbacks=[capture], max_steps=ratio, enable_checkpointing=False, limit_val_batches=0
    )
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert run.module.iteration == 1

    floor = PlainLoop(cfg, capture.real, torch.device("cpu"), labels=capture.labels)
    floor.g.load_state_dict(capture.g)
    floor.d.load_state_dict(capture.d)
    torch.set_rng_state(capture.rng)
    floor.step()

    for name, ours, plain in (
        ("G", run.module.generator, floor.g),
        ("D", run.module.discriminator, floor.d),
    ):
        theirs = plain.state_dict()
        moved = any(
            not torch.equal(v, capture.g.get(k, capture.d.get(k))) for k, v in theirs.items()
        )
        assert moved, f"{name} did not train"
        for k, v in ours.state_dict().items():
            assert torch.equal(v, theirs[k]), f"{name}.{k} differs between the module and the floor"


def test_every_registered_loss_runs_through_the_step() -> None:
    """A loss is one record: the step calls its D loss, G loss and penalty, never its name."""
    g = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Unflatten(1, (1, 2, 3)))
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 1), torch.nn.Flatten(0))
    calls: list[str] = []

    class Record:  # an Updates that records and steps nothing
        def train(self, net: str) -> Any:
            import contextlib

            return contextlib.nullcontext()

        def step(self, net: str, loss: torch.Tensor) -> None:
            assert loss.dim() == 0 and torch.isfinite(loss)
            calls.append(net)

    smoothing = DictConfig({"real": 1.0, "fake": 0.0, "noise": 0.0, "flip_prob": 0.0})
    for name, loss in LOSSES.items():
        penalties: list[int] = []
        penalty = loss.penalty

        def counted(*a: Any, _p: Any = penalty, _n: list[int] = penalties) -> torch.Tensor:
            _n.append(1)
            return _p(*a)

        record = loss._replace(penalty=counted if penalty else None)
        step = GanStep(
            record,
            smoothing,
            lambda n: torch.randn(n, 4),
            d_steps=2,
            g_steps=3,
            penalty_weight=10.0,
        )
        calls.clear()
        out = step(g, d, torch.randn(10, 1, 2, 3), Record())
        assert calls == ["d", "d", "g", "g", "g"], name
        assert len(penalties) == (2 if penalty else 0), name
        assert out.real_logits.shape == (5,) and out.fake_logits.shape == (5,)


@pytest.mark.parametrize("condition", ["acgan", "tacgan"])
def test_class_heads_learn_what_their_method_says(condition: str) -> None:
    """AC-GAN's classifier learns the reals' and the fakes' classes; TAC-GAN's learns the
    reals' only, its twin the fakes', and G's loss subtracts the twin's cross-entropy."""
    import contextlib

    import torch.nn.functional as F

    from gan.nets.base import BaseDiscriminator

    class D(BaseDiscriminator):  # the smallest D with class heads
        def __init__(self) -> None:
            super().__init__(condition=condition, num_classes=3)
            self.img_size = 2
            self.net = torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(4, 5), torch.nn.Linear(5, 1)
            )
            self.attach_condition()

    class G(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self.lin(z + labels[:, None]).view(-1, 1, 2, 2)

    losses: dict[str, torch.Tensor] = {}

    class Keep:  # an Updates that keeps the loss and steps nothing
        def train(self, net: str) -> Any:
            return contextlib.nullcontext()

        def step(self, net: str, loss: torch.Tensor) -> None:
            losses[net] = loss

    torch.manual_seed(0)
    g, d = G(), D()
    z, fake_labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    real, real_labels = torch.randn(6, 1, 2, 2), torch.tensor([2, 2, 1, 1, 0, 0])
    smoothing = DictConfig({"real": 1.0, "fake": 0.0, "noise": 0.0, "flip_prob": 0.0})
    step = GanStep(
        LOSSES["hinge"],
        smoothing,
        lambda n: z[:n],
        sample_labels=lambda n: fake_labels[:n],
        aux_weight=1.0,
        twin=condition == "tacgan",
    )
    step(g, d, real, Keep(), labels=real_labels)

    fake = g(z, fake_labels)
    real_out, fake_out = d(real, real_labels, aux=True), d(fake, fake_labels, aux=True)
    adv_d = LOSSES["hinge"].d(real_out[0], fake_out[0], None)
    real_ce = F.cross_entropy(real_out[1], real_labels)
    if condition == "acgan":
        d_aux = real_ce + F.cross_entropy(fake_out[1], fake_labels)
        g_aux = F.cross_entropy(fake_out[1], fake_labels)
    else:  # the twin (the third output) learns the fakes; G moves away from it
        d_aux = real_ce + F.cross_entropy(fake_out[2], fake_labels)
        g_aux = F.cross_entropy(fake_out[1], fake_labels) - F.cross_entropy(
            fake_out[2], fake_labels
        )
    torch.testing.assert_close(losses["d"], adv_d + d_aux)
    torch.testing.assert_close(losses["g"], LOSSES["hinge"].g(fake_out[0], None) + g_aux)


def test_a_d_without_the_twin_head_is_a_clear_error_under_tacgan() -> None:
    class OneHead(torch.nn.Module):  # a custom D written for acgan
        def forward(self, x: torch.Tensor, labels: torch.Tensor, aux: bool = False) -> Any:
            logits = x.flatten(1).sum(1)  # (B,)
            return (logits, torch.zeros(len(x), 3)) if aux else logits

    smoothing = DictConfig({"real": 1.0, "fake": 0.0, "noise": 0.0, "flip_prob": 0.0})
    labels = torch.tensor([0, 1])
    draw = dict(sample_labels=lambda n: labels[:n], aux_weight=1.0)
    step = GanStep(LOSSES["hinge"], smoothing, torch.randn, **draw, twin=True)
    with pytest.raises(
        GanError, match=r"returned 2 outputs.*tacgan needs \(logits, classifier, twin\)"
    ):
        step.score(OneHead(), torch.randn(2, 1, 2, 2), labels)

    class NoHeads(torch.nn.Module):  # ignores aux=: its (B,) logits must not pass for heads
        def forward(self, x: torch.Tensor, labels: torch.Tensor, aux: bool = False) -> Any:
            return x.flatten(1).sum(1)

    acgan = GanStep(LOSSES["hinge"], smoothing, torch.randn, **draw)
    for s, batch in ((acgan, 2), (step, 3), (acgan, 64)):  # 2, 3: would unpack along B
        with pytest.raises(GanError, match="returned Tensor"):
            s.score(NoHeads(), torch.randn(batch, 1, 2, 2), labels.repeat(32)[:batch])
    logits, heads = acgan.score(OneHead(), torch.randn(2, 1, 2, 2), labels)
    assert logits.shape == (2,) and heads is not None and len(heads) == 1
