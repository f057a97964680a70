"""Loggers: W&B offline run folders and TensorBoard event files hold what a user looks for."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan.training.loggers import build_loggers, wandb_offline
from gan.training.run import train
from tests.helpers import cli_env, run_cli, tiny

MakeCfg = Callable[..., DictConfig]
SHORT = ["model=mlp", "trainer.max_epochs=1", "trainer.log_every_n_steps=1"]


def offline_runs(run: Path) -> list[Path]:
    return sorted((run / "wandb").glob("offline-run-*"))


def wandb_log(run: Path, timeout: float = 30.0) -> bytes:
    """The run's record file. wandb's service process writes it asynchronously: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        data = next(run.glob("run-*.wandb")).read_bytes()  # protobuf: keys are plain strings
        if b"train/d_loss" in data or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def test_wandb_offline_run_holds_images_metrics_and_config(make_cfg: MakeCfg) -> None:
    cfg = make_cfg(*SHORT, "logger=wandb", "tags=[smoke,mlp]")
    train(cfg)
    (wb,) = offline_runs(Path(cfg.paths.output_dir))
    assert list((wb / "files" / "media" / "images").rglob("fixed_noise*.png"))
    log = wandb_log(wb)
    for key in (b"train/d_loss", b"train/g_loss", b"train/d_acc_real", b"samples/fixed_noise"):
        assert key in log, key
    for key in (b"optimizer", b"label_smoothing", b"smoke"):  # resolved config and tags
        assert key in log, key


def test_no_credentials_means_offline_and_no_prompt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert wandb_offline()
    node = DictConfig(
        {
            "wandb": {
                "_target_": "lightning.pytorch.loggers.WandbLogger",
                "save_dir": str(tmp_path),
                "project": "gan",
            }
        }
    )
    (logger,) = build_loggers(node)
    assert logger._offline
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert not wandb_offline()


def test_tensorboard_events_hold_scalar_and_image_tags(make_cfg: MakeCfg) -> None:
    cfg = make_cfg(*SHORT, "logger=tensorboard")
    train(cfg)
    (events,) = (Path(cfg.paths.output_dir) / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"} <= set(
        acc.Tags()["scalars"]
    )
    assert "samples/fixed_noise" in acc.Tags()["images"]


@pytest.mark.slow
def test_sweep_jobs_are_separate_wandb_runs_in_one_group(tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    res = run_cli(
        "gan.train",
        "-m",
        "optimizer.lr=1e-4,2e-4",
        *tiny(
            "model=mlp",
            "logger=wandb",
            f"data.root={tiny_root}",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep}",
        ),
        timeout=300,
        env=cli_env(WANDB_MODE="offline"),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    runs = [offline_runs(sweep / j) for j in ("0", "1")]
    assert all(len(r) == 1 for r in runs), "one W&B run per job"
    ids = {r[0].name.rsplit("-", 1)[1] for r in runs}
    assert len(ids) == 2
    for job, (run,) in zip(("optimizer.lr=0.0001", "optimizer.lr=0.0002"), runs):
        log = wandb_log(run)
        assert b"2026-01-01_12-00-00" in log  # the shared group
        assert job.encode() in log  # the job's name: its overrides
