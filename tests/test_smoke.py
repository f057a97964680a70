"""Smoke tests: the real config, end to end, on tiny idx files the tests write themselves."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import DictConfig

from gan.training.checkpoints import load_gan
from gan.training.module import GAN
from gan.training.run import train
from tests.helpers import CONF, run_cli, tiny

MakeCfg = Callable[..., DictConfig]
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
SMALL = {  # thinner nets where the defaults are slow on 2 cores
    "dcgan64": ["model.generator.base_channels=8", "model.discriminator.base_channels=8"],
}


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_every_architecture(make_cfg: MakeCfg, model: str) -> None:
    cfg = make_cfg(f"model={model}", "trainer.fast_dev_run=true", *SMALL.get(model, []))
    train(cfg)
    run = Path(cfg.paths.output_dir)
    grids = list((run / "images").glob("grid_*.png"))
    assert len(grids) == 1, "the fixed-noise grid is saved in the run folder"
    assert (run / "config.yaml").exists()


def test_a_short_run_leaves_everything_in_the_run_folder(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("model=mlp", "trainer.max_epochs=2", "trainer.log_every_n_steps=1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    # the frozen classifier is in eval mode on purpose: no warning that says otherwise
    assert not [w for w in caught if "eval mode" in str(w.message)]
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert len(list((run / "checkpoints").glob("best_epoch*.ckpt"))) == 1  # best by val/fid
    assert len(list((run / "images").glob("grid_*.png"))) == 2
    assert (run / "images" / "progress.gif").exists()
    metrics = (run / "csv" / "metrics.csv").read_text()
    for key in (
        "train/d_loss",
        "train/g_loss",
        "train/d_real",
        "train/d_fake",
        "train/d_acc_real",
        "train/d_acc_fake",
        "train/iteration",
    ):
        assert key in metrics.splitlines()[0]
    for key in ("val/fid", "val/kid", "val/mnist_score", "val/coverage", "val/fid_floor"):
        assert key in metrics.splitlines()[0]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert not any(k.startswith("metrics.") for k in ckpt["state_dict"])  # classifier stays out
    assert len(ckpt["optimizer_states"]) == 2  # G's and D's
    assert ckpt["gan_iteration"] == 2 * 6  # 48 train images / batch 8, two epochs


def test_resume_from_last_ckpt_continues_the_run(make_cfg: MakeCfg, tmp_path: Path) -> None:
    first = make_cfg("model=mlp", "trainer.max_epochs=1")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    per = first.step_ratio.d_steps + first.step_ratio.g_steps  # optimizer steps an iteration
    assert (state["epoch"], state["global_step"], state["gan_iteration"]) == (0, 6 * per, 6)

    second = make_cfg("model=mlp", "trainer.max_epochs=2", f"ckpt_path={last}")
    second.paths.output_dir = str(tmp_path / "resumed")
    train(second)
    state = torch.load(last, weights_only=False)  # resumed into the checkpoint's run folder
    assert (state["epoch"], state["global_step"], state["gan_iteration"]) == (1, 12 * per, 12)
    adam = state["optimizer_states"][1]["state"][0]
    assert int(adam["step"]) == 12  # D's optimizer state carried over, not restarted


def test_two_job_sweep_from_the_command_line(tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    res = run_cli(
        "gan.train",
        "-m",
        "optimizer.lr=1e-4,2e-4",
        *tiny(
            "model=mlp",
            f"data.root={tiny_root}",
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=1",
            f"hydra.sweep.dir={sweep}",
        ),
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    lrs = []
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").exists()
        assert list((job / "images").glob("grid_*.png"))
        assert (job / "csv" / "metrics.csv").exists()
        lrs.append((job / "config.yaml").read_text().split("lr: ")[1].split()[0])
    assert lrs == ["0.0001", "0.0002"]


RECIPES = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_fast_dev_run_every_recipe(make_cfg: MakeCfg, recipe: str) -> None:
    # the recipes' own batch sizes (up to 256) exceed the 48 tiny training images
    small = SMALL.get("dcgan64", []) if recipe == "mxnet_dcgan" else []
    cfg = make_cfg(f"experiment={recipe}", "trainer.fast_dev_run=true", "data.batch_size=8", *small)
    train(cfg)
    assert list((Path(cfg.paths.output_dir) / "images").glob("grid_*.png"))


class Spy(L.Callback):
    """Records what a user cannot see from outside: modes and EMA weights during fit."""

    def __init__(self) -> None:
        self.classifier_training: list[bool] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: GAN, *args: object) -> None:
        self.classifier_training.append(pl_module.metrics.classifier.training)


def test_classifier_stays_in_eval_mode_during_fit(make_cfg: MakeCfg) -> None:
    from gan.training.build import build

    cfg = make_cfg("model=mlp", "trainer.max_epochs=2", "logger=none")
    spy = Spy()
    run = build(cfg, callbacks=[spy])  # the builder hands the module its scores' classifier
    module = run.module
    run.trainer.fit(module, datamodule=run.datamodule)
    assert spy.classifier_training and not any(spy.classifier_training)
    assert not any(p.requires_grad for p in module.metrics.classifier.parameters())


def test_ema_differs_from_g_and_is_restored_on_resume(make_cfg: MakeCfg, tmp_path: Path) -> None:
    first = make_cfg("model=mlp", "trainer.max_epochs=1", "ema.enabled=true", "ema.decay=0.9")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    sd = torch.load(last, weights_only=False)["state_dict"]
    g, ema = sd["generator.net.0.weight"], sd["ema_generator.module.net.0.weight"]
    assert not torch.equal(g, ema)  # an average of past weights, not G itself
    g_steps = first.step_ratio.g_steps
    assert int(sd["ema_generator.n_averaged"]) == 6 * g_steps  # one update per G step

    module = load_gan(Path(last))
    assert torch.equal(module.ema_generator.module.net[0].weight, ema)
    assert module.sampling_generator() is module.ema_generator.module

    second = make_cfg(
        "model=mlp",
        "trainer.max_epochs=2",
        "ema.enabled=true",
        "ema.decay=0.9",
        f"ckpt_path={last}",
    )
    second.paths.output_dir = str(tmp_path / "resumed")
    train(second)
    sd2 = torch.load(last, weights_only=False)["state_dict"]  # same run folder
    assert int(sd2["ema_generator.n_averaged"]) == 12 * g_steps  # went on from the checkpoint


def test_ema_never_changes_how_g_trains(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """G's weights after two epochs (a validation between them, which recomputes the EMA's
    BatchNorm statistics) are the same with the average kept or not: G itself of an EMA run
    is what the same run with ema.enabled=false draws (bench/default_vs_plain.py)."""
    state = {}
    for enabled in (True, False):
        cfg = make_cfg("model=dcgan", "trainer.max_epochs=2", f"ema.enabled={enabled}")
        cfg.paths.output_dir = str(tmp_path / str(enabled))
        train(cfg)
        last = tmp_path / str(enabled) / "checkpoints" / "last.ckpt"
        state[enabled] = torch.load(last, weights_only=False)["state_dict"]
    assert any(k.startswith("ema_generator.") for k in state[True])
    g = [k for k in state[False] if k.startswith("generator.")]
    assert g and all(torch.equal(state[True][k], state[False][k]) for k in g)


def test_resume_from_a_run_folder_continues_in_it(make_cfg: MakeCfg, tmp_path: Path) -> None:
    first = make_cfg("model=mlp", "trainer.max_epochs=1", "logger=many")
    train(first)
    run = Path(first.paths.output_dir)
    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    second = make_cfg("model=mlp", "trainer.max_epochs=2", "logger=many", f"ckpt_path={run}")
    second.paths.output_dir = str(tmp_path / "elsewhere")  # what a new Hydra run would get
    train(second)
    assert not (tmp_path / "elsewhere" / "checkpoints").exists()
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert (state["epoch"], state["gan_iteration"]) == (1, 12)
    assert len(list((run / "images").glob("grid_*.png"))) == 2  # epoch 0 and epoch 1, one folder
    assert len(list((run / "csv").glob("metrics*.csv"))) >= 1
    runs = list((run / "wandb").glob("offline-run-*"))

    def run_id(folder: Path) -> str:  # offline-run-<date>_<time>-<id>[-<n> on a name clash]
        return folder.name.split("-")[3]

    assert len(runs) >= 1 and {run_id(r) for r in runs} == {run_id(wandb_run)}  # resumed


def test_metrics_off_with_default_callbacks(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("model=mlp", "trainer.max_epochs=1", "metrics.enabled=false")
    train(cfg)  # no val/fid to rank by: the checkpoint callback keeps the latest instead
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").exists()
