"""Sweeps from the command line on tiny data: basic, Optuna, joblib; SLURM only composes.

Each sweep runs `python -m gan.train -m ...` in a subprocess, writing into tmp_path.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import submitit
import yaml
from hydra import compose, initialize_config_dir
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, LogUniformDistribution

from gan.tools.report import main as report
from gan.training.config import register
from tests.helpers import CONF, cli_env, run_cli, tiny

DEFAULTS = yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]
LISTED = any(isinstance(d, dict) and any("hparams_search" in k for k in d) for d in DEFAULTS)
SEARCH = "hparams_search" if LISTED else "+hparams_search"  # `+`: not in the defaults list yet


def tiny_job(root: Path) -> list[str]:
    """Each job: a 1-epoch mlp run on tiny data."""
    return tiny("model=mlp", f"data.root={root}", "trainer.max_epochs=1")


def sweep(*overrides: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "gan.train", "-m", *overrides, timeout=timeout, env=cli_env(WANDB_MODE="offline")
    )


def jobs_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def compose_with_hydra(*overrides: str) -> DictConfig:
    """conf/train.yaml with its `hydra` node, as the launcher and sweeper see it."""
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "multirun"
    res = sweep("optimizer.lr=1e-4,2e-4,-1", *tiny_job(tiny_root), f"hydra.sweep.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = jobs_in(out)
    assert [j.name for j in jobs] == ["0", "1", "2"]
    for job in jobs[:2]:
        assert (job / "checkpoints" / "last.ckpt").exists()
        result = json.loads((job / "result.json").read_text())
        assert result["status"] == "ok"
        # every last val/* score, whatever the logger: the report's fallback
        assert result["final"]["val/fid"] == result["value"]
        assert {"val/coverage", "val/precision", "val/fid_floor"} <= result["final"].keys()
    failed = json.loads((jobs[2] / "result.json").read_text())
    assert failed["status"] == "failed" and "optimizer.lr" in failed["error"]
    # The sweep ended on the report's table and where its files are.
    assert "3 jobs, ranked by best val/fid" in res.stdout, res.stdout[-3000:]
    assert f"python -m gan.report {out}" in res.stdout
    assert (out / "report.md").is_file()

    report([str(out)])  # val/fid: the metric the jobs log at each epoch end
    printed = capsys.readouterr().out
    assert "GanError: optimizer.lr=-1.0 is out of range" in printed
    with (out / "report.csv").open(newline="") as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert {j: r["status"] for j, r in rows.items()} == {"0": "ok", "1": "ok", "2": "failed"}
    assert {j: r["optimizer.lr"] for j, r in rows.items()} == {
        "0": "0.0001",
        "1": "0.0002",
        "2": "-1",
    }
    assert rows["0"]["best val/fid"] and not rows["2"]["best val/fid"]
    assert list(rows)[-1] == "2"  # no score ranks last
    assert (out / "report.png").exists()


@pytest.mark.slow
def test_optuna_search_runs_its_trials(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "optuna"
    res = sweep(
        f"{SEARCH}=fid_optuna",
        "hydra.sweeper.n_trials=2",
        *tiny_job(tiny_root),
        f"hydra.sweep.dir={out}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    results = yaml.safe_load((out / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    assert set(results["best_params"]) == {
        "optimizer.lr",
        "optimizer.g.betas.0",
        "step_ratio",
        "label_smoothing",
    }
    assert [j.name for j in jobs_in(out)] == ["0", "1"]
    for job in jobs_in(out):
        assert json.loads((job / "result.json").read_text())["status"] == "ok"
        config = yaml.safe_load((job / "config.yaml").read_text())
        assert config["optimizer"]["d"]["betas"] == config["optimizer"]["g"]["betas"]


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "joblib"
    res = sweep(
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "optimizer.lr=1e-4,2e-4",
        *tiny_job(tiny_root),
        f"hydra.sweep.dir={out}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in res.stdout + res.stderr
    for job in jobs_in(out):
        assert (job / "checkpoints" / "last.ckpt").exists()
        assert json.loads((job / "result.json").read_text())["status"] == "ok"
    assert len(jobs_in(out)) == 2


def test_the_optuna_search_composes_and_its_space_parses() -> None:
    cfg = compose_with_hydra(f"{SEARCH}=fid_optuna", "optimizer.g.betas.0=0.9")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "minimize" and cfg.hydra.sweeper.n_trials == 20
    assert cfg.hydra.sweeper.sampler.seed is not None
    assert cfg.optimized_metric == "val/fid"
    assert list(cfg.optimizer.d.betas) == [0.9, 0.999]  # D follows G's beta1
    space, fixed = create_params_from_overrides(
        [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    )
    assert not fixed and isinstance(space["optimizer.lr"], LogUniformDistribution)
    assert space["step_ratio"] == CategoricalDistribution(("d1g1", "d1g2", "d2g1"))
    assert space["label_smoothing"] == CategoricalDistribution(("none", "one_sided", "two_sided"))
    for name in ("step_ratio", "label_smoothing"):  # every choice is a real option
        for option in space[name].choices:
            assert (CONF / name / f"{option}.yaml").exists()


def test_the_slurm_launcher_composes_into_an_sbatch_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_with_hydra(
        "hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}"
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    for key in (
        "partition",
        "timeout_min",
        "gpus_per_node",
        "cpus_per_task",
        "mem_gb",
        "nodes",
        "tasks_per_node",
    ):
        assert key in launcher

    # What SlurmLauncher.launch does with these values, short of calling sbatch.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    params = OmegaConf.to_container(launcher, resolve=False)
    params.pop("_target_")
    executor = submitit.AutoExecutor(folder=tmp_path / ".submitit", cluster="slurm")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(  # raises on a key submitit does not know
        **{
            k if k in base else f"slurm_{k}": v
            for k, v in params.items()
            if k not in ("submitit_folder", "max_num_timeout", "name")
        }
    )
    script = executor._executor._make_submission_file_text("python -m gan.train", "uid")
    for line in (
        "--partition=gpu",
        f"--time={launcher.timeout_min}",
        f"--gpus-per-node={launcher.gpus_per_node}",
        f"--nodes={launcher.nodes}",
        f"--mem={launcher.mem_gb}GB",
    ):
        assert f"#SBATCH {line}\n" in script
