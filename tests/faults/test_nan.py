"""A NaN loss: the run stops naming the iteration and the network, or rolls back to the last
good checkpoint with lower learning rates; the last good checkpoint is never rewritten."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from omegaconf import DictConfig, open_dict

import gan.training.health
from gan.training.checkpoints import checkpoint_dir
from gan.training.run import train
from gan.utils.errors import GanError
from tests.helpers import EVERY, load_ckpt, sha256, train_cli


class NanLoss(L.Callback):
    """Test helper: G's loss is NaN in iteration `at` (once).

    Writes `<run>/nan_injected.json` (the iteration and last.ckpt's sha256 at that moment),
    so a test can tell that the last good checkpoint was not touched afterwards.
    """

    def __init__(self, at: int) -> None:
        self.at = at
        self.done = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if self.done or pl_module.iteration + 1 != self.at:
            return
        self.done = True
        last = checkpoint_dir(trainer) / "last.ckpt"
        record = {"at": self.at, "last_sha256": sha256(last) if last.exists() else None}
        (Path(trainer.default_root_dir) / "nan_injected.json").write_text(json.dumps(record))
        step = pl_module.gan_step
        loss = step.loss

        def nan_once(*args: Any) -> torch.Tensor:
            step.loss = loss
            return loss.g(*args) * float("nan")

        step.loss = loss._replace(g=nan_once)


def nan_cfg(make_cfg: Callable[..., DictConfig], *extra: str, at: int = 8) -> DictConfig:
    cfg = make_cfg(
        "model=mlp",
        "trainer.max_epochs=3",
        "ema.enabled=true",
        f"callbacks.checkpointing.every_n_iterations={EVERY}",
        *extra,
    )
    with open_dict(cfg):
        cfg.callbacks.nan = {"_target_": "tests.faults.test_nan.NanLoss", "at": at}
    return cfg


def assert_finite_checkpoint(path: Path) -> dict[str, Any]:
    ckpt = load_ckpt(path)
    for k, v in ckpt["state_dict"].items():
        assert torch.isfinite(v.float()).all(), k
    return ckpt


def test_nan_stops_naming_the_iteration_and_the_network(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = nan_cfg(make_cfg, at=8)
    run = Path(cfg.paths.output_dir)
    with pytest.raises(GanError) as err:
        train(cfg)
    msg = str(err.value)
    assert "training diverged at iteration 8 " in msg
    assert "non-finite weights: generator." in msg  # G's loss was NaN; D's weights are fine
    last = run / "checkpoints" / "last.ckpt"
    assert f"The last good checkpoint is kept: {last}" in msg
    assert "guard.on_nonfinite=rollback" in msg
    record = json.loads((run / "nan_injected.json").read_text())
    assert sha256(last) == record["last_sha256"], "the last good checkpoint was rewritten"
    assert assert_finite_checkpoint(last)["gan_iteration"] == 6


@pytest.mark.parametrize(
    ("schedule", "at_end"),
    [((), 1.0), (("optimizer.schedule=linear", "optimizer.final_lr_scale=0.5"), 0.5)],
    ids=["constant", "linear-schedule"],
)
def test_nan_rollback_reloads_last_ckpt_with_lower_learning_rates(
    make_cfg: Callable[..., DictConfig], schedule: tuple[str, ...], at_end: float
) -> None:
    cfg = nan_cfg(make_cfg, "guard.on_nonfinite=rollback", *schedule, at=8)
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    ckpt = assert_finite_checkpoint(last)
    assert ckpt["gan_iteration"] == 18  # the run finished: 3 epochs of 6
    # the lowered rate stays lowered along the schedule: base * factor * the schedule's end
    factor, lr = cfg.guard.lr_factor, cfg.optimizer.lr
    for opt in ckpt["optimizer_states"]:  # G's, then D's
        assert opt["param_groups"][0]["lr"] == pytest.approx(lr * factor * at_end)
    assert not list(last.parent.glob("last-v*.ckpt"))


@pytest.mark.parametrize("on_nonfinite", ["stop", "rollback"])
def test_deferred_nan_checks_find_the_iteration_one_check_later(
    make_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch, on_nonfinite: str
) -> None:
    # On a GPU each check's flag is read at the next check (no sync per iteration); forced here.
    monkeypatch.setattr(gan.training.health.NanGuard, "defer_checks", lambda self, pl_module: True)
    cfg = nan_cfg(make_cfg, f"guard.on_nonfinite={on_nonfinite}", at=8)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if on_nonfinite == "rollback":
        train(cfg)
        ckpt = assert_finite_checkpoint(last)
        assert ckpt["gan_iteration"] == 18  # rolled back to iteration 6, then finished
        assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(
            cfg.optimizer.lr * cfg.guard.lr_factor
        )
        return
    with pytest.raises(GanError) as err:
        train(cfg)
    msg = str(err.value)
    step = 8 * (cfg.step_ratio.d_steps + cfg.step_ratio.g_steps)  # optimizer steps so far
    assert f"training diverged at iteration 8 (global step {step}) (found at iteration 9" in msg
    record = json.loads((last.parent.parent / "nan_injected.json").read_text())
    assert sha256(last) == record["last_sha256"], "the last good checkpoint was rewritten"
    assert assert_finite_checkpoint(last)["gan_iteration"] == 6


@pytest.mark.slow
def test_nan_from_the_command_line_is_one_error_line_and_a_failed_result(
    kill_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    res = train_cli(
        kill_data,
        run,
        "trainer.max_epochs=1",
        "+callbacks.nan._target_=tests.faults.test_nan.NanLoss",
        "+callbacks.nan.at=8",
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "error: training diverged at iteration 8 " in res.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "failed" and "iteration 8" in result["error"]
    last = run / "checkpoints" / "last.ckpt"
    assert sha256(last) == json.loads((run / "nan_injected.json").read_text())["last_sha256"]
    assert assert_finite_checkpoint(last)["gan_iteration"] == 6
