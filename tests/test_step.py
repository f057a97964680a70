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
