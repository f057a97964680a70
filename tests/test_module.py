"""Unit tests of the LightningModule: the D:G schedule, step counts, clipping, forward."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig

from gan.training.module import LightningUpdates
from gan.utils.errors import GanError
from tests.helpers import adam_steps, build, fit, read_metrics

MakeCfg = Callable[..., DictConfig]


@pytest.mark.parametrize(("ratio", "d", "g"), [("d1g1", 1, 1), ("d1g2", 1, 2), ("d5g1", 5, 1)])
def test_exact_optimizer_step_counts(
    make_cfg: MakeCfg, tmp_path, ratio: str, d: int, g: int
) -> None:
    # 64 tiny images, 4 per D step: d5g1 needs 20 per batch, so 3 batches fit
    module, dm = build(
        make_cfg("model=mlp", f"step_ratio={ratio}", "data.batch_size=4", "data.val_size=0")
    )
    seen: list[torch.Tensor] = []
    d_update = module.gan_step.d_update
    module.gan_step.d_update = lambda g, d, real, *a: (
        seen.append(real.clone()),
        d_update(g, d, real, *a),
    )[1]  # type: ignore[method-assign]
    trainer = fit(module, dm, batches=3, tmp_path=str(tmp_path), log_every_n_steps=3)
    opt_g, opt_d = (o.optimizer for o in module.optimizers())
    assert adam_steps(opt_d) == 3 * d
    assert adam_steps(opt_g) == 3 * g
    assert module.iteration == 3
    assert trainer.global_step == 3 * (d + g)  # Lightning counts every optimizer step
    assert float(trainer.callback_metrics["train/iteration"]) == 3.0
    # each D update saw a fresh batch of real images, never the same one again
    assert len(seen) == 3 * d
    assert all(x.shape[0] == 4 for x in seen)
    flat = torch.stack([x.flatten() for x in seen])
    assert torch.cdist(flat, flat).add(torch.eye(len(seen)) * 1e9).min() > 0


def test_diagnostics_reach_the_logger_on_every_logging_step(make_cfg: MakeCfg, tmp_path) -> None:
    # The five diagnostics are logged only on log_every_n_steps iterations (each self.log
    # has a fixed cost); the logger must still get every one of them, fresh, on those steps.
    module, dm = build(make_cfg("model=mlp", "data.batch_size=4", "data.val_size=0"))
    logger = CSVLogger(str(tmp_path), name="csv")
    trainer = fit(module, dm, batches=7, tmp_path=str(tmp_path), logger=logger, log_every_n_steps=3)
    rows = [r for r in read_metrics(Path(logger.log_dir) / "metrics.csv") if r.get("train/d_loss")]
    assert [int(r["step"]) for r in rows] == [2, 5]  # iterations 3 and 6, counted from 0
    assert [float(r["train/iteration"]) for r in rows] == [3.0, 6.0]
    for r in rows:
        assert 0 <= float(r["train/d_real"]) <= 1 and 0 <= float(r["train/d_fake"]) <= 1
        assert float(r["train/d_acc_real"]) in {i / 4 for i in range(5)}  # a share of 4 images
    assert float(trainer.callback_metrics["train/iteration"]) == 6.0


def test_d_and_g_steps_update_only_their_own_network(make_cfg: MakeCfg) -> None:
    module, _ = build(make_cfg("model=mlp"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    module.trainer = trainer
    opt_g, opt_d = module.configure_optimizers()
    trainer.strategy.optimizers = [opt_g, opt_d]  # what toggle_optimizer looks up
    g0 = [p.clone() for p in module.generator.parameters()]
    d0 = [p.clone() for p in module.discriminator.parameters()]

    updates, step = LightningUpdates(module), module.gan_step
    step.d_update(module.generator, module.discriminator, torch.rand(8, 1, 28, 28) * 2 - 1, updates)
    assert all(torch.equal(a, b) for a, b in zip(g0, module.generator.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(d0, module.discriminator.parameters()))
    d1 = [p.clone() for p in module.discriminator.parameters()]
    step.g_update(module.generator, module.discriminator, 8, updates)
    assert all(torch.equal(a, b) for a, b in zip(d1, module.discriminator.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g0, module.generator.parameters()))


def test_gradient_clipping_by_value_is_applied(make_cfg: MakeCfg, tmp_path) -> None:
    cfg = make_cfg(
        "model=mlp",
        "optimizer=sgd",
        "optimizer.lr=1.0",
        "optimizer.clip_value=1e-3",
        "optimizer.g.momentum=0",
        "optimizer.d.momentum=0",
    )
    module, dm = build(cfg)
    before = [p.clone() for p in module.discriminator.parameters()]
    fit(module, dm, batches=1, tmp_path=str(tmp_path))
    # plain SGD with lr 1: each weight moves by its clipped gradient, at most 1e-3
    moved = max(
        (a - b).abs().max().item() for a, b in zip(before, module.discriminator.parameters())
    )
    assert 0 < moved <= 1e-3 + 1e-7


def test_optimizer_settings_reach_torch(make_cfg: MakeCfg) -> None:
    module, _ = build(make_cfg("optimizer=adam_ttur"))
    opt_g, opt_d = module.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(4e-4)
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.999)
    module, _ = build(make_cfg("optimizer=rmsprop"))
    assert all(isinstance(o, torch.optim.RMSprop) for o in module.configure_optimizers())


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_noise_distribution(make_cfg: MakeCfg, dist: str) -> None:
    module, _ = build(make_cfg(f"noise={dist}", "noise.dim=32"))
    z = module.sample_z(4096)
    assert z.shape == (4096, 32)
    if dist == "uniform":
        assert z.min() >= -1 and z.max() <= 1 and z.std().item() == pytest.approx(3**-0.5, abs=0.01)
    else:
        assert z.min() < -3 and z.std().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("reuse", [False, True])
def test_reuse_fake_saves_one_generator_pass(make_cfg: MakeCfg, tmp_path, reuse: bool) -> None:
    reuse_flag = f"perf.reuse_fake={str(reuse).lower()}"
    cfg = make_cfg("model=mlp", "step_ratio=d1g1", reuse_flag, "metrics.enabled=false")
    module, dm = build(cfg)
    calls = []
    module.generator.register_forward_hook(lambda *a: calls.append(1))
    fit(module, dm, batches=3, tmp_path=str(tmp_path))
    opt_g, opt_d = (o.optimizer for o in module.optimizers())
    assert (adam_steps(opt_d), adam_steps(opt_g)) == (3, 3)  # the same updates either way
    assert len(calls) == 3 * (1 if reuse else 2)  # d1g1: one G pass per iteration, not two


class LrSeen(L.Callback):
    """Test helper: G's and D's learning rates as each iteration starts."""

    def __init__(self) -> None:
        self.g: list[float] = []
        self.d: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        opt_g, opt_d = trainer.optimizers
        self.g.append(opt_g.param_groups[0]["lr"])
        self.d.append(opt_d.param_groups[0]["lr"])


# 8 iterations, the decay from the 4th on: the factor on each iteration, worked by hand
LINEAR = [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
COSINE = [1, 1, 1, 1, 1, 0.85355339, 0.5, 0.14644661]  # 1 - (1 - cos(pi t)) / 2, t = 1/4, 2/4, 3/4


@pytest.mark.parametrize(
    ("schedule", "ratio", "length", "factors"),
    [
        ("linear", "d1g1", {"max_epochs": 2}, LINEAR),  # 2 epochs of 4 batches
        ("cosine", "d2g1", {"max_epochs": -1, "max_steps": 24}, COSINE),  # 24 = 8 x (2 + 1)
    ],
)
def test_lr_schedule_holds_then_decays_to_the_runs_end(
    make_cfg: MakeCfg,
    tmp_path,
    schedule: str,
    ratio: str,
    length: dict[str, int],
    factors: list[float],
) -> None:
    module, dm = build(
        make_cfg(
            "model=mlp",
            f"step_ratio={ratio}",
            "data.batch_size=4",
            "data.val_size=0",
            "optimizer.lr=0.01",
            "optimizer.d_lr_scale=2",
            f"optimizer.schedule={schedule}",
        )
    )
    seen = LrSeen()
    fit(module, dm, batches=4, tmp_path=str(tmp_path), callbacks=[seen], **length)
    assert module.iteration == 8
    assert seen.g == pytest.approx([0.01 * f for f in factors])
    assert seen.d == pytest.approx([0.02 * f for f in factors])  # D's rate follows the same curve
    opt_g, _ = (o.optimizer for o in module.optimizers())
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.0)  # final_lr_scale=0 at the end


def test_lr_schedule_without_a_run_length_is_one_clear_error(make_cfg: MakeCfg, tmp_path) -> None:
    module, dm = build(make_cfg("model=mlp", "data.val_size=0", "optimizer.schedule=linear"))
    with pytest.raises(GanError, match="this run has no set length. Set trainer.max_epochs"):
        fit(module, dm, batches=2, tmp_path=str(tmp_path), max_epochs=-1)
