"""Fault tolerance end to end: kill and resume bit-exactly, torn saves, NaNs, bad inputs.

The slow tests (`-m slow`) drive the real command line in subprocesses; the fast ones run
in-process on conftest's tiny data. `CASES` lists every bad input with the text the user
must see; docs/troubleshooting.md shows each one (`test_every_case_is_in_the_doc` keeps
the two in step). Print the doc's table from real runs with:

    .venv/bin/python -m tests.test_faults /tmp/table.md
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import gan.health
import gan.sample
import gan.train
from gan.config import register, to_dict
from gan.errors import GanError
from gan.faults import AtomicCheckpointIO, CheckOutputDir, Interrupted, check_resume_checkpoint
from gan.files import check_writable, checkpoint_dir
from gan.train import train
from tests.helpers import CONF, TINY
from tests.mnist_files import write_tiny_mnist

ROOT = CONF.parent
DOC = ROOT / "docs" / "troubleshooting.md"
EVERY = 3  # callbacks.checkpointing.every_n_iterations in these tests


# ---- the list of bad inputs ---------------------------------------------------------------


class Case(NamedTuple):
    """A bad input: `python -m <args>` must print `expected` (and exit 1 unless `ok`).

    `{name}` in args is a path the tests make (see `make_inputs`); `cli`: also run through a
    real subprocess (slow); `needs`: the project checks that the clean message relies on.
    """

    description: str
    args: tuple[str, ...]
    expected: str
    ok: bool = False
    cli: bool = False
    needs: tuple[str, ...] = ()


CASES: list[Case] = [
    Case(
        "unknown option of a config group",
        ("gan.train", "model=foo"),
        "Could not find 'model/foo'",
        cli=True,
    ),
    Case(
        "unknown key",
        ("gan.train", "optimizer.lrr=1"),
        "Key 'lrr' not in 'OptimizerConfig'",
        cli=True,
    ),
    Case(
        "value of the wrong type",
        ("gan.train", "step_ratio.d_steps=two"),
        "Value 'two' of type 'str' could not be converted to Integer",
        cli=True,
    ),
    Case(
        "learning rate of zero",
        ("gan.train", "optimizer.lr=0"),
        "optimizer.lr=0.0 is out of range: it must be > 0",
        cli=True,
    ),
    Case(
        "negative learning rate",
        ("gan.train", "optimizer.lr=-0.001"),
        "optimizer.lr=-0.001 is out of range: it must be > 0",
    ),
    Case(
        "unknown lr schedule",
        ("gan.train", "optimizer.schedule=step"),
        "optimizer.schedule='step' is out of range: it must be one of ('constant', 'linear', "
        "'cosine')",
    ),
    Case(
        "a decay that starts at the run's end",
        ("gan.train", "optimizer.schedule=linear", "optimizer.decay_start=1"),
        "optimizer.decay_start=1.0 is out of range: it must be within [0, 1)",
    ),
    Case(
        "batch size of zero",
        ("gan.train", "data.batch_size=0"),
        "data.batch_size=0 is out of range: it must be >= 1",
    ),
    Case(
        "fewer than one D step",
        ("gan.train", "step_ratio.d_steps=0"),
        "step_ratio.d_steps=0 is out of range: it must be >= 1",
    ),
    Case(
        "label smoothing target above 1",
        ("gan.train", "label_smoothing.real=1.5"),
        "label_smoothing.real=1.5 is out of range: it must be within [0, 1]",
    ),
    Case(
        "label smoothing target below 0",
        ("gan.train", "label_smoothing.fake=-0.1"),
        "label_smoothing.fake=-0.1 is out of range: it must be within [0, 1]",
    ),
    Case(
        "negative R1 weight",
        ("gan.train", "stabilize.r1=-1"),
        "stabilize.r1=-1.0 is out of range: it must be >= 0 (0 turns it off)",
    ),
    Case(
        "unknown DiffAugment policy",
        ("gan.train", "stabilize.diffaug=[translation,rotate]"),
        "stabilize.diffaug=['translation', 'rotate'] is out of range: it must be a list of "
        "('color', 'translation', 'cutout')",
    ),
    Case(
        "latent size of zero",
        ("gan.train", "noise.dim=0"),
        "noise.dim=0 is out of range: it must be >= 1",
    ),
    Case(
        "architecture paired with the wrong image size",
        ("gan.train", "model=dcgan", "data.img_size=64"),
        "model=dcgan makes 28x28 images, but data.img_size=64",
        cli=True,
    ),
    Case(
        "no MNIST files and no network",
        ("gan.train", "data.root={empty}", "data.download=true"),
        "the download failed",
        cli=True,
    ),
    Case(
        "MNIST archive that fails its md5",
        ("gan.train", "data.root={bad_md5}"),
        "the archive is corrupt or not the official MNIST file",
        cli=True,
    ),
    Case(
        "truncated MNIST file",
        ("gan.train", "data.root={truncated}"),
        "is not a valid MNIST idx file",
    ),
    Case(
        "output folder that cannot be created",
        ("gan.train", "hydra.run.dir={file}/run"),
        "is a file, not a folder",
        cli=True,
        needs=("writable-check", "dir-callback"),
    ),
    Case(
        "output folder in a place where no folder can be made",
        ("gan.train", "hydra.run.dir=/proc/forbidden"),
        "/proc does not accept new folders",
        cli=True,
        needs=("writable-check", "dir-callback"),
    ),
    Case(
        "resume from a checkpoint of another architecture",
        ("gan.train", "model=dcgan", "ckpt_path={ckpt}"),
        "was written by a model=mlp run, but this run has model=dcgan",
        cli=True,
        needs=("resume-check",),
    ),
    Case(
        "resume from a file that is not a checkpoint",
        ("gan.train", "ckpt_path={text}"),
        "is not a checkpoint: it is not a file written by torch.save",
        cli=True,
        needs=("resume-check",),
    ),
    Case(
        "resume from a checkpoint that does not exist",
        ("gan.train", "ckpt_path={missing}"),
        "does not exist. Resume with ckpt_path=<run>/checkpoints/last.ckpt",
        needs=("resume-check",),
    ),
    Case(
        "resume from a truncated checkpoint",
        ("gan.train", "ckpt_path={torn}"),
        "is not a readable checkpoint",
        needs=("resume-check",),
    ),
    Case(
        "resume from a Lightning checkpoint of another project",
        ("gan.train", "ckpt_path={foreign}"),
        "is not a checkpoint of this project",
        needs=("resume-check",),
    ),
    Case(
        "resume with EMA on from a run without EMA",
        ("gan.train", "model=mlp", "ema.enabled=true", "ckpt_path={ckpt}"),
        "holds no EMA weights",
        needs=("resume-check",),
    ),
    Case(
        "sample from a file that is not a checkpoint",
        ("gan.sample", "ckpt={text}", "out={run}/s.png"),
        "is not a checkpoint: it is not a file written by torch.save",
        cli=True,
    ),
    Case(
        "sample from a checkpoint whose weights are of another architecture",
        ("gan.sample", "ckpt={mismatched}", "out={run}/s.png"),
        "its weights do not fit the model its hyper_parameters describe",
        cli=True,
    ),
    Case(
        "sample from a Lightning checkpoint of another project",
        ("gan.sample", "ckpt={foreign}", "out={run}/s.png"),
        "is not a checkpoint of this project",
    ),
    Case(
        "GPU asked for on a machine without one",
        ("gan.train", "trainer.accelerator=gpu"),
        "Use trainer.accelerator=cpu",
        cli=True,
    ),
    Case(
        "W&B with no credentials and no network",
        (
            "gan.train",
            "model=mlp",
            "logger=wandb",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
        ),
        "W&B run saved offline; upload it with: wandb sync",
        ok=True,
        cli=True,
    ),
]

# Added to every gan.train case unless the case sets the same key: tiny data, CPU, quiet.
TRAIN_BASE = (
    "data.root={data}",
    "data.download=false",
    "data.val_size=16",
    "data.batch_size=8",
    "data.val_batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "hydra.run.dir={run}",
)


def case_id(case: Case) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", case.description).strip("-")  # also a folder name


def _key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+")


def full_args(case: Case) -> list[str]:
    """`gan.train` cases on top of TRAIN_BASE (the case wins); `gan.sample` as they are."""
    module, *args = case.args
    if module != "gan.train":
        return [module, *args]
    own = {_key(a) for a in args}
    return [module, *[a for a in TRAIN_BASE if _key(a) not in own], *args]


def fill(args: list[str], paths: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: its sha256 and mtime."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- configs, inputs and subprocesses -------------------------------------------------------


def compose_cfg(out: Path, *overrides: str) -> DictConfig:
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def train_existing_run(data: Path, out: Path) -> Path:
    """A finished 1-epoch mlp run in `out` (no EMA); returns its last.ckpt."""
    base = [a for a in TINY if not a.startswith("data.root")]
    run = ("model=mlp", "trainer.max_epochs=1", "ema.enabled=false")
    train(compose_cfg(out, *base, f"data.root={data}", *run))
    return out / "checkpoints" / "last.ckpt"


def make_inputs(base: Path, data: Path, ckpt: Path) -> dict[str, Path]:
    """The files the cases point at; `ckpt` is an mlp run's last.ckpt (without EMA)."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "empty").mkdir(exist_ok=True)
    write_tiny_mnist(base / "md5", split="all", n=64, gz=True)
    raw = write_tiny_mnist(base / "truncated", split="all", n=64)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    (base / "afile").write_text("a regular file, where a folder is expected\n")
    (base / "notes.txt").write_text("not a checkpoint\n")
    blob = ckpt.read_bytes()
    (base / "torn.ckpt").write_bytes(blob[: len(blob) // 2])
    torch.save(
        {
            "state_dict": {"layer.weight": torch.zeros(2, 2)},
            "hyper_parameters": {"lr": 0.1},
            "pytorch-lightning_version": "2.6.0",
            "epoch": 0,
            "global_step": 0,
        },
        base / "foreign.ckpt",
    )
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    dcgan = compose_cfg(base / "unused", f"data.root={data}", "model=dcgan")
    state["hyper_parameters"]["model"] = to_dict(dcgan.model)  # mlp weights, dcgan config
    torch.save(state, base / "mismatched.ckpt")
    return {
        "data": data,
        "empty": base / "empty",
        "bad_md5": base / "md5",
        "truncated": base / "truncated",
        "file": base / "afile",
        "ckpt": ckpt,
        "text": base / "notes.txt",
        "missing": base / "nowhere" / "last.ckpt",
        "torn": base / "torn.ckpt",
        "foreign": base / "foreign.ckpt",
        "mismatched": base / "mismatched.ckpt",
    }


def warm_classifier(root: Path) -> None:
    """Cache the metrics' classifier for `root` before a reference run.

    Loading it from the cache builds a fresh network, which draws from the global RNG, while
    training it does not (fork_rng): a run that trains it and a run that loads it would
    start from different RNG states, however exact the resume.
    """
    from gan.classifier import load_or_train

    load_or_train(str(root), "train", download=False, accelerator="cpu", progress_bar=False)


def cli_env(**extra: str) -> dict[str, str]:
    """Same thread count in every run (reproducible float math), the user's view of errors."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(extra)
    return env


def case_env(case: Case, home: Path) -> dict[str, str]:
    env = cli_env(
        # A download goes to a closed port: "no network", here and on machines that have one.
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        no_proxy="",
    )
    if "logger=wandb" in case.args:  # a first-time user: no key, no login, no mode set
        for k in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SILENT", "WANDB_DIR"):
            env.pop(k, None)
        env["HOME"] = str(home)
    return env


def run_case_cli(case: Case, paths: dict[str, Path], run: Path) -> subprocess.CompletedProcess:
    args = fill(full_args(case), {**paths, "run": run})
    home = run.parent / f"{run.name}-home"
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=case_env(case, home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


RUN_ARGS = (
    "model=mlp",
    "data.download=false",
    "data.val_size=16",
    "data.batch_size=8",
    "data.val_batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "ema.enabled=true",
    f"callbacks.checkpointing.every_n_iterations={EVERY}",
)
PER_EPOCH = (256 - 16) // 8  # iterations per epoch on the kill tests' data
TOTAL = 3 * PER_EPOCH

# `python -m gan.train`, with a pause right after iteration $GAN_TEST_PAUSE_AT's updates
# (before its batch-end hooks), so that a signal lands at a known, arbitrary step. The pause
# ends when a signal handler has run (SIGTERM) or never (SIGKILL).
LAUNCHER = """
import os, runpy, sys, time
from pathlib import Path
import gan.module

AT = int(os.environ["GAN_TEST_PAUSE_AT"])
FLAG = Path(os.environ["GAN_TEST_PAUSE_FLAG"])
step = gan.module.GAN.training_step

def training_step(self, batch, batch_idx):
    out = step(self, batch, batch_idx)
    if self.iteration == AT:
        FLAG.write_text(str(self.iteration))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
            getattr(cb, "signal", None) for cb in self.trainer.callbacks
        ):
            time.sleep(0.01)
    return out

gan.module.GAN.training_step = training_step
sys.argv[0] = "gan/train.py"
runpy.run_module("gan.train", run_name="__main__", alter_sys=True)
"""


def train_cli(data: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    own = {_key(a) for a in extra}
    base = [a for a in RUN_ARGS if _key(a) not in own]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gan.train",
            *base,
            f"data.root={data}",
            f"hydra.run.dir={run}",
            *extra,
        ],
        cwd=ROOT,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


class PauseIn(L.Callback):
    """Test helper: pause in `hook` at iteration `at`, like LAUNCHER does in the step.

    `hook`: `on_validation_start` (the epoch's validation is about to run) or
    `on_train_epoch_end` (after the epoch-end hooks of the callbacks before this one,
    `Checkpointing` among them; before ModelCheckpoint's). Writes $GAN_TEST_PAUSE_FLAG
    once paused; the pause ends when a signal handler has run (SIGTERM) or never (SIGKILL).
    """

    def __init__(self, hook: str, at: int) -> None:
        assert hook in ("on_validation_start", "on_train_epoch_end"), hook
        self.hook, self.at = hook, at

    def _pause(self, hook: str, trainer: L.Trainer, pl_module: Any) -> None:
        if hook != self.hook or trainer.sanity_checking or pl_module.iteration != self.at:
            return
        Path(os.environ["GAN_TEST_PAUSE_FLAG"]).write_text(str(self.at))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
            getattr(cb, "signal", None) for cb in trainer.callbacks
        ):
            time.sleep(0.01)

    def on_validation_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._pause("on_validation_start", trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._pause("on_train_epoch_end", trainer, pl_module)


def start_paused(
    data: Path, run: Path, at: int, *extra: str, hook: str = "step"
) -> tuple[subprocess.Popen, Path]:
    """Start a run that pauses at iteration `at`; returns it once it is paused there.

    `hook="step"`: right after that iteration's updates (LAUNCHER); else in that hook of
    the iteration (`PauseIn`). `extra` overrides RUN_ARGS.
    """
    run.mkdir(parents=True)
    flag, out = run.parent / f"{run.name}.paused", run.parent / f"{run.name}.out"
    env = cli_env(
        GAN_TEST_PAUSE_AT=str(at if hook == "step" else -1), GAN_TEST_PAUSE_FLAG=str(flag)
    )
    if hook != "step":
        extra = (
            *extra,
            "+callbacks.pause._target_=tests.test_faults.PauseIn",
            f"+callbacks.pause.hook={hook}",
            f"+callbacks.pause.at={at}",
        )
    own = {_key(a) for a in extra}
    with out.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                *[a for a in RUN_ARGS if _key(a) not in own],
                f"data.root={data}",
                f"hydra.run.dir={run}",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 600
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not reach iteration {at}:\n{out.read_text()[-3000:]}")
        time.sleep(0.05)
    return proc, out


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_training_state(a: Path, b: Path) -> None:
    """G, D and EMA weights, both optimizers' states and the counters: bit for bit."""
    ca, cb = load(a), load(b)
    assert (ca["gan_iteration"], ca["global_step"]) == (cb["gan_iteration"], cb["global_step"])
    assert ca["gan_d_updates"] == cb["gan_d_updates"]  # the lazy R1/R2 schedule
    sa, sb = ca["state_dict"], cb["state_dict"]
    assert sa.keys() == sb.keys()
    for prefix in ("generator.", "discriminator.", "ema_generator."):
        assert any(k.startswith(prefix) for k in sa), f"no {prefix}* weights"
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"
    assert len(ca["optimizer_states"]) == len(cb["optimizer_states"]) == 2
    for i, (oa, ob) in enumerate(zip(ca["optimizer_states"], cb["optimizer_states"])):
        assert oa["param_groups"] == ob["param_groups"], f"optimizer {i} param_groups differ"
        assert oa["state"].keys() == ob["state"].keys()
        for p, state in oa["state"].items():
            for key, value in state.items():
                assert torch.equal(value, ob["state"][p][key]), f"optimizer {i} {p}.{key} differs"
    assert ca.get("lr_schedulers") == cb.get("lr_schedulers")  # optimizer.schedule's place


def val_fid_epochs(run: Path) -> list[int]:
    """The epochs of the `val/fid` rows in the run's metrics.csv, in file order."""
    with (run / "csv" / "metrics.csv").open() as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("val/fid")]


def metrics_rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv's rows, less the wall-clock column (val/elapsed_s); none without a file."""
    if not (run / "csv" / "metrics.csv").exists():
        return []
    with (run / "csv" / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "val/elapsed_s"} for r in csv.DictReader(f)]


def assert_same_metrics(a: Path, b: Path) -> None:
    """The run folders' metrics.csv hold the same rows: a resume kept the history, and
    dropped what was logged after the checkpoint it resumed from."""
    ra, rb = metrics_rows(a), metrics_rows(b)
    assert len(ra) == len(rb), f"{len(rb)} rows, expected {len(ra)}"
    for i, (x, y) in enumerate(zip(ra, rb)):
        assert x == y, f"row {i} differs: {x} != {y}"


def assert_every_epoch_validated(run: Path, epochs: int, resumed_from: int | None = None) -> None:
    """No epoch's validation or epoch-end hooks were skipped by a kill and a resume.

    Every epoch has its images (made at the epoch's end, after its validation). With
    `resumed_from` (metrics on), metrics.csv holds one `val/fid` row for every epoch: the
    ones before the kill kept, none logged twice.
    """
    for epoch in range(epochs):
        for name in (f"real_vs_fake_epoch{epoch:03d}.png", f"interpolation_epoch{epoch:03d}.png"):
            assert (run / "images" / name).is_file(), f"epoch {epoch}: no {name}"
    if resumed_from is not None:
        assert val_fid_epochs(run) == list(range(epochs)), (
            f"resumed from iteration {resumed_from}: val/fid rows {val_fid_epochs(run)}"
        )


# ---- fixtures ---------------------------------------------------------------------------------


class Existing(NamedTuple):
    path: Path
    files: dict[str, tuple[str, int]]  # its snapshot when made

    def assert_untouched(self) -> None:
        assert snapshot(self.path) == self.files, "a bad input changed an existing run folder"

    def copy_to(self, dest: Path) -> Existing:
        """A copy of its own for a case: a case that writes into it harms no other test."""
        shutil.copytree(self.path, dest)  # copy2: mtimes kept
        return Existing(dest, snapshot(dest))


@pytest.fixture(scope="module")
def existing_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Existing:
    """A finished run folder (mlp, no EMA) that no bad input may touch."""
    run = tmp_path_factory.mktemp("existing") / "run"
    train_existing_run(tiny_root, run)
    return Existing(run, snapshot(run))


@pytest.fixture(scope="module")
def inputs(
    existing_run: Existing, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inputs")
    return make_inputs(base, tiny_root, existing_run.path / "checkpoints" / "last.ckpt")


@pytest.fixture(scope="module")
def kill_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 images per split: 30 batches of 8 per epoch after 16 held out."""
    root = tmp_path_factory.mktemp("mnist256")
    write_tiny_mnist(root, split="all", n=256)
    return root


@pytest.fixture(scope="module")
def run_a(kill_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run."""
    warm_classifier(kill_data)
    run = tmp_path_factory.mktemp("reference") / "a"
    res = train_cli(kill_data, run)
    assert res.returncode == 0, res.stderr[-3000:]
    assert load(run / "checkpoints" / "last.ckpt")["gan_iteration"] == TOTAL
    return run


@pytest.fixture(scope="module")
def run_a_no_metrics(kill_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run with metrics.enabled=false."""
    run = tmp_path_factory.mktemp("reference") / "a-no-metrics"
    res = train_cli(kill_data, run, "metrics.enabled=false")
    assert res.returncode == 0, res.stderr[-3000:]
    return run


def params(cases: list[Case]) -> list[Any]:
    """Cases as pytest params, named after what they try."""
    return [pytest.param(case, id=case_id(case)) for case in cases]


# ---- 1. kill and resume, bit-exact ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "pause_at", [41, 32], ids=["mid-epoch", "from-the-save-that-ended-an-epoch"]
)
def test_sigkill_then_resume_matches_the_uninterrupted_run(
    run_a: Path, kill_data: Path, tmp_path: Path, pause_at: int
) -> None:
    run_b = tmp_path / "b"
    proc, out = start_paused(kill_data, run_b, pause_at)
    last = run_b / "checkpoints" / "last.ckpt"
    saved = load(last)["gan_iteration"]
    assert saved == pause_at - pause_at % EVERY < pause_at  # killed between two saves
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    res = train_cli(kill_data, run_b, f"ckpt_path={last}")  # the same run folder
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(run_a / "checkpoints" / "last.ckpt", last)
    assert_same_metrics(run_a, run_b)
    assert not list((run_b / "checkpoints").glob("last-v*.ckpt")), "one last.ckpt only"


@pytest.mark.slow
def test_sigterm_saves_at_the_next_iteration_and_exits_143(
    run_a: Path, kill_data: Path, tmp_path: Path
) -> None:
    run_b = tmp_path / "b"
    at = 44  # the periodic save before it is at 42
    proc, out = start_paused(kill_data, run_b, at)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    text = out.read_text()
    assert "Traceback" not in text, text[-3000:]
    last = run_b / "checkpoints" / "last.ckpt"
    assert f"resume with: python -m gan.train ckpt_path={run_b}" in text
    assert load(last)["gan_iteration"] == at  # saved at the iteration boundary, not at 42
    assert not list(last.parent.glob(".last.ckpt*.tmp"))

    res = train_cli(kill_data, run_b, f"ckpt_path={last}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(run_a / "checkpoints" / "last.ckpt", last)


@pytest.mark.slow
def test_kill_then_resume_from_the_folder_alone(
    run_a: Path, kill_data: Path, tmp_path: Path
) -> None:
    """SIGKILL mid-epoch; `ckpt_path=<run>` with no other override, from another folder:
    the weights and metrics.csv equal the uninterrupted run's, and nothing lands in cwd."""
    run_b = tmp_path / "b"
    proc, _ = start_paused(kill_data, run_b, 41)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = resume_cli(run_b, cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(
        run_a / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    )
    assert_same_metrics(run_a, run_b)
    assert list(elsewhere.iterdir()) == [], "the resume wrote into the current folder"
    assert (run_b / ".hydra" / "overrides.yaml").is_file()  # the run's own record is kept
    assert json.loads((run_b / "result.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_the_printed_hint_resumes_verbatim(run_a: Path, kill_data: Path, tmp_path: Path) -> None:
    run_b = tmp_path / "b"
    proc, out = start_paused(kill_data, run_b, 44)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    text = out.read_text()
    hint = text[text.index("resume with: ") + len("resume with: ") :].splitlines()[0]
    result = json.loads((run_b / "result.json").read_text())
    assert result["status"] == "interrupted" and hint in result["error"]
    args = shlex.split(hint)
    assert args[:3] == ["python", "-m", "gan.train"]
    res = resume_cli(*args[3:])
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(
        run_a / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    )
    assert_same_metrics(run_a, run_b)


def resume_cli(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m gan.train ckpt_path=<run>` (a run folder) or `python -m gan.train <args>`,
    and nothing else: the run's own config.yaml is the config."""
    argv = [f"ckpt_path={args[0]}"] if len(args) == 1 and isinstance(args[0], Path) else args
    return subprocess.run(
        [sys.executable, "-m", "gan.train", *map(str, argv)],
        cwd=cwd,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def kill_and_resume(
    data: Path, run_b: Path, hook: str, at: int, *extra: str, sig: int = signal.SIGKILL
) -> int:
    """Pause run_b at (hook, at), send `sig`, resume it in its folder; the iteration saved.

    SIGKILL: the process dies there. SIGTERM: it must save and exit with 128 + 15.
    """
    proc, out = start_paused(data, run_b, at, *extra, hook=hook)
    proc.send_signal(sig)
    expected = -signal.SIGKILL if sig == signal.SIGKILL else 128 + sig
    assert proc.wait(timeout=120) == expected, out.read_text()[-3000:]
    last = run_b / "checkpoints" / "last.ckpt"
    saved = load(last)["gan_iteration"]
    drop = ("+callbacks.pause=null",) if hook != "step" else ()  # the pause is the test's
    res = train_cli(data, run_b, *extra, *drop, f"ckpt_path={run_b}")  # the same run folder
    assert res.returncode == 0, res.stderr[-3000:]
    assert not list((run_b / "checkpoints").glob("last-v*.ckpt")), "one last.ckpt only"
    return saved


# Where a kill can leave the last checkpoint: (hook, iteration, the iteration saved). At
# iteration 30, an epoch's last, the periodic save waits for the epoch's end (after
# validation): a kill before then resumes from iteration 27.
POSITIONS = {
    "mid-epoch-periodic-save": ("step", 41, 39),
    "epoch-last-batch-killed-in-validation": ("on_validation_start", 30, 27),
    "epoch-end-save-after-validation": ("on_train_epoch_end", 30, 30),
    "the-runs-last-iteration": ("step", TOTAL, TOTAL - EVERY),
    "the-runs-last-validation": ("on_validation_start", TOTAL, TOTAL - EVERY),
}


@pytest.mark.slow
@pytest.mark.parametrize("position", list(POSITIONS))
def test_sigkill_at_every_kind_of_save_position_resumes_bit_exact(
    run_a: Path, kill_data: Path, tmp_path: Path, position: str
) -> None:
    hook, at, expected = POSITIONS[position]
    run_b = tmp_path / "b"
    saved = kill_and_resume(kill_data, run_b, hook, at)
    assert_same_training_state(
        run_a / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    )
    assert saved == expected
    assert_every_epoch_validated(run_b, 3, resumed_from=saved)
    assert_same_metrics(run_a, run_b)


@pytest.mark.slow
@pytest.mark.parametrize(
    "position", ["epoch-last-batch-killed-in-validation", "epoch-end-save-after-validation"]
)
def test_sigkill_with_metrics_off_resumes_bit_exact(
    run_a_no_metrics: Path, kill_data: Path, tmp_path: Path, position: str
) -> None:
    hook, at, expected = POSITIONS[position]
    run_b = tmp_path / "b"
    saved = kill_and_resume(kill_data, run_b, hook, at, "metrics.enabled=false")
    a, b = run_a_no_metrics / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    assert_same_training_state(a, b)
    assert saved == expected
    assert_every_epoch_validated(run_b, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hook", "at"),
    [("step", 30), ("on_validation_start", 60)],
    ids=["in-an-epochs-last-iteration", "during-validation"],
)
def test_sigterm_at_an_epochs_end_saves_after_validation(
    run_a: Path, kill_data: Path, tmp_path: Path, hook: str, at: int
) -> None:
    """The save waits for the epoch's validation; the exit follows it: exit 143."""
    run_b = tmp_path / "b"
    proc, out = start_paused(kill_data, run_b, at, hook=hook)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, out.read_text()[-3000:]
    text = out.read_text()
    assert "Traceback" not in text, text[-3000:]
    last = run_b / "checkpoints" / "last.ckpt"
    assert f"resume with: python -m gan.train ckpt_path={run_b}" in text
    saved = load(last)["gan_iteration"]
    epoch = at // PER_EPOCH - 1
    with (run_b / "csv" / "metrics.csv").open() as f:
        fid = [float(r["val/fid"]) for r in csv.DictReader(f) if r.get("val/fid")]
    assert val_fid_epochs(run_b)[-1] == epoch, "the epoch was validated before the exit"
    states = load(last)["callbacks"]
    mc = next(v for k, v in states.items() if k.startswith("ModelCheckpoint"))
    assert float(mc["current_score"]) == pytest.approx(fid[-1]), "the best-checkpoint check ran"

    drop = ("+callbacks.pause=null",) if hook != "step" else ()  # the pause is the test's
    res = train_cli(kill_data, run_b, *drop, f"ckpt_path={last}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(run_a / "checkpoints" / "last.ckpt", last)
    assert saved == at  # at the epoch's end, not at the next iteration boundary
    assert_every_epoch_validated(run_b, 3, resumed_from=saved)


KILL_SEED = int(os.environ.get("GAN_TEST_KILL_SEED", "20251202"))


def random_kill_positions(seed: int, trials: int) -> list[tuple[str, int]]:
    """`trials` pause points, one drawn at random from each stretch of the run, in order.

    Every point where the run can be: after any iteration's updates, and at each epoch's
    end before and after validation.
    """
    points: list[tuple[str, int]] = []
    for i in range(1, TOTAL + 1):
        points.append(("step", i))
        if i % PER_EPOCH == 0:
            points += [("on_validation_start", i), ("on_train_epoch_end", i)]
    rng = random.Random(seed)
    size = len(points) / trials
    return [points[int(k * size) + rng.randrange(int(size))] for k in range(trials)]


@pytest.mark.slow
def test_random_sigkills_all_resume_bit_exact(run_a: Path, kill_data: Path, tmp_path: Path) -> None:
    """5 SIGKILLs at random points (GAN_TEST_KILL_SEED picks others), two at a time."""
    positions = random_kill_positions(KILL_SEED, 5)

    def trial(k: int, hook: str, at: int) -> tuple[str, int, int]:
        run_b = tmp_path / f"b{k}"
        saved = kill_and_resume(kill_data, run_b, hook, at)
        return hook, at, saved

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(trial, k, hook, at) for k, (hook, at) in enumerate(positions)]
        results = [f.result() for f in futures]
    a = run_a / "checkpoints" / "last.ckpt"
    for k, (hook, at, saved) in enumerate(results):
        where = f"GAN_TEST_KILL_SEED={KILL_SEED}: killed in {hook} at {at}, saved at {saved}"
        try:
            assert_same_training_state(a, tmp_path / f"b{k}" / "checkpoints" / "last.ckpt")
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from None
        assert_every_epoch_validated(tmp_path / f"b{k}", 3)


class CrashAt(L.Callback):
    """Test helper: raise before iteration `at` runs, as a crash would (once per instance)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.iteration + 1 == self.at:
            raise RuntimeError(f"crash before iteration {self.at}")


@pytest.mark.parametrize(
    ("at", "extra"),
    [
        (11, ()),
        (7, ()),
        (8, ("condition=acgan",)),
        # each stabiliser keeps state (D's power-iteration vectors, the lazy R1/R2
        # schedule) or draws from the RNG (DiffAugment), and must survive a resume
        (8, ("stabilize.spectral_norm=true",)),
        (11, ("stabilize.r1=1", "stabilize.r2=1", "stabilize.reg_every=4")),
        (8, ("stabilize.diffaug=[translation,cutout,color]", "perf.reuse_fake=true")),
        (11, ("loss=rpgan", "stabilize.topk=0.5")),
        # the lr schedule's place in the run is saved (Lightning's lr_schedulers)
        (8, ("optimizer.schedule=linear", "optimizer.decay_start=0.25")),
    ],
    ids=[
        "mid-epoch",
        "after-an-epoch-end-save",
        "class-conditional",
        "spectral-norm",
        "lazy-r1-r2",
        "diffaug",
        "rpgan-topk",
        "lr-schedule",
    ],
)
def test_crash_and_resume_in_process_is_bit_exact(
    make_cfg: Callable[..., DictConfig],
    tiny_root: Path,
    tmp_path: Path,
    at: int,
    extra: tuple[str, ...],
) -> None:
    """The fast cousin of the SIGKILL test: 6 iterations per epoch, saves every 3."""
    warm_classifier(tiny_root)
    args = (
        "model=mlp",
        *extra,
        "trainer.max_epochs=2",
        "ema.enabled=true",
        f"callbacks.checkpointing.every_n_iterations={EVERY}",
    )
    a = make_cfg(*args)
    a.paths.output_dir = str(tmp_path / "a")
    train(a)
    b = make_cfg(*args)
    b.paths.output_dir = str(tmp_path / "b")
    with open_dict(b):
        b.callbacks.crash = {"_target_": "tests.test_faults.CrashAt", "at": at}
    with pytest.raises(RuntimeError, match="crash before"):
        train(b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert load(last)["gan_iteration"] == (at - 1) - (at - 1) % EVERY
    with open_dict(b):
        del b.callbacks.crash
        b.ckpt_path = str(last)
    train(b)
    assert_same_training_state(tmp_path / "a" / "checkpoints" / "last.ckpt", last)


class CrashIn(L.Callback):
    """Test helper: raise in `hook` at iteration `at` (once), as a crash there would.

    `hook`: `on_validation_start` or `on_train_epoch_end` (after `Checkpointing`'s).
    """

    def __init__(self, hook: str, at: int) -> None:
        self.hook, self.at, self.done = hook, at, False

    def _crash(self, hook: str, trainer: L.Trainer, pl_module: Any) -> None:
        if self.done or hook != self.hook or trainer.sanity_checking:
            return
        if pl_module.iteration == self.at:
            self.done = True
            raise RuntimeError(f"crash in {hook} at iteration {self.at}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._crash("on_validation_start", trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._crash("on_train_epoch_end", trainer, pl_module)


class SigtermAt(L.Callback):
    """Test helper: SIGTERM to this process right before iteration `at` runs (once)."""

    def __init__(self, at: int) -> None:
        self.at, self.done = at, False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if not self.done and pl_module.iteration + 1 == self.at:
            self.done = True
            os.kill(os.getpid(), signal.SIGTERM)  # Checkpointing's handler: save, then exit


FAST_ARGS = (
    "model=mlp",
    "ema.enabled=true",
    f"callbacks.checkpointing.every_n_iterations={EVERY}",
)  # conftest's tiny data: 6 iterations per epoch, so every epoch's last one is a save's


@pytest.fixture
def fast_reference(
    make_cfg: Callable[..., DictConfig], tiny_root: Path, tmp_path: Path
) -> Callable[..., Path]:
    """`reference(*extra)`: last.ckpt of an uninterrupted 2-epoch run with those overrides."""
    warm_classifier(tiny_root)

    def reference(*extra: str) -> Path:
        a = make_cfg(*FAST_ARGS, "trainer.max_epochs=2", *extra)
        a.paths.output_dir = str(tmp_path / "a")
        train(a)
        return tmp_path / "a" / "checkpoints" / "last.ckpt"

    return reference


@pytest.mark.parametrize(
    ("hook", "expected"),
    [("on_validation_start", 3), ("on_train_epoch_end", 6)],
    ids=["killed-in-validation-after-the-epochs-last-batch", "after-the-epoch-end-save"],
)
def test_crash_at_an_epochs_end_and_resume_in_process_is_bit_exact(
    make_cfg: Callable[..., DictConfig],
    fast_reference: Callable[..., Path],
    tmp_path: Path,
    hook: str,
    expected: int,
) -> None:
    """Iteration 6 ends epoch 0 and is a periodic save's: that save waits for validation."""
    a = fast_reference()
    b = make_cfg(*FAST_ARGS, "trainer.max_epochs=2")
    b.paths.output_dir = str(tmp_path / "b")
    with open_dict(b):
        b.callbacks.crash = {"_target_": "tests.test_faults.CrashIn", "hook": hook, "at": 6}
    with pytest.raises(RuntimeError, match="crash in"):
        train(b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    saved = load(last)["gan_iteration"]
    with open_dict(b):
        del b.callbacks.crash
        b.ckpt_path = str(last)
    train(b)
    assert_same_training_state(a, last)
    assert saved == expected
    assert val_fid_epochs(tmp_path / "b") == [0, 1], "an epoch went unvalidated, or twice"
    assert_same_metrics(tmp_path / "a", tmp_path / "b")


def test_sigterm_in_an_epochs_last_iteration_in_process_saves_after_validation(
    make_cfg: Callable[..., DictConfig], fast_reference: Callable[..., Path], tmp_path: Path
) -> None:
    a = fast_reference()
    b = make_cfg(*FAST_ARGS, "trainer.max_epochs=2")
    b.paths.output_dir = str(tmp_path / "b")
    with open_dict(b):
        b.callbacks.sigterm = {"_target_": "tests.test_faults.SigtermAt", "at": 6}
    with pytest.raises(Interrupted) as exit_:
        train(b)
    assert exit_.value.code == 128 + signal.SIGTERM
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    saved = load(last)["gan_iteration"]
    assert val_fid_epochs(tmp_path / "b") == [0], "epoch 0 was validated before the exit"
    with open_dict(b):
        del b.callbacks.sigterm
        b.ckpt_path = str(last)
    train(b)
    assert_same_training_state(a, last)
    assert saved == 6
    assert val_fid_epochs(tmp_path / "b") == [0, 1]
    assert_same_metrics(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("metrics", ["true", "false"], ids=["metrics-on", "metrics-off"])
def test_a_finished_run_continued_for_more_epochs_is_bit_exact(
    make_cfg: Callable[..., DictConfig],
    fast_reference: Callable[..., Path],
    tmp_path: Path,
    metrics: str,
) -> None:
    """No kill: 1 epoch whose last.ckpt is Checkpointing's alone, then 1 more via ckpt_path.

    The run ends on a periodic save at the epoch's last batch; without ModelCheckpoint
    nothing overwrites it, so the second epoch starts from exactly that checkpoint.
    """
    only_ours = (
        f"metrics.enabled={metrics}",
        "callbacks.model_checkpoint=null",
        "trainer.enable_checkpointing=false",
    )
    a = fast_reference(*only_ours)
    b = make_cfg(*FAST_ARGS, "trainer.max_epochs=1", *only_ours)
    b.paths.output_dir = str(tmp_path / "b")
    train(b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert load(last)["gan_iteration"] == 6
    c = make_cfg(*FAST_ARGS, "trainer.max_epochs=2", *only_ours, f"ckpt_path={tmp_path / 'b'}")
    train(c)  # continues in run folder b
    assert_same_training_state(a, last)
    for epoch in (0, 1):
        assert (tmp_path / "b" / "images" / f"real_vs_fake_epoch{epoch:03d}.png").is_file()
    if metrics == "true":
        assert val_fid_epochs(tmp_path / "b") == [0, 1]
    assert_same_metrics(tmp_path / "a", tmp_path / "b")


# ---- 2. a kill during a checkpoint save -----------------------------------------------------


class KilledMidSave(BaseException):
    """Stands for the process dying: not an Exception, so nothing may swallow it."""


def test_a_save_cut_short_leaves_last_ckpt_intact(
    existing_run: Existing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes((existing_run.path / "checkpoints" / "last.ckpt").read_bytes())
    before = snapshot(last.parent)
    checkpoint = load(last)
    checkpoint["gan_iteration"] += 100  # what the interrupted save would have written
    real_save = torch.save

    def half_then_die(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, tmp_path / "whole")
        data = (tmp_path / "whole").read_bytes()
        f.write(data[: len(data) // 2])
        f.flush()
        raise KilledMidSave

    monkeypatch.setattr(torch, "save", half_then_die)
    with pytest.raises(KilledMidSave):
        AtomicCheckpointIO().save_checkpoint(checkpoint, last)
    monkeypatch.undo()

    # The old checkpoint is untouched and loadable; the half-written temp file is removed.
    assert snapshot(last.parent) == before
    assert not list(last.parent.glob(".last.ckpt*.tmp"))
    check_resume_checkpoint(last, to_dict(compose_cfg(tmp_path, "model=mlp").model), ema=False)
    assert gan.sample.load_gan(last).iteration == checkpoint["gan_iteration"] - 100

    # A real SIGKILL cannot clean up: its temp file is ignored, then removed by the next save
    # (the random name of this version, and the fixed one of older versions).
    for left in (".last.ckpt.k1ll3d00.tmp", ".last.ckpt.tmp"):
        (last.parent / left).write_bytes(b"half a checkpoint")
    assert gan.sample.load_gan(last).iteration == checkpoint["gan_iteration"] - 100
    AtomicCheckpointIO().save_checkpoint(checkpoint, last)
    assert not list(last.parent.glob(".last.ckpt*.tmp"))
    assert load(last)["gan_iteration"] == checkpoint["gan_iteration"]


# ---- 3. NaN ---------------------------------------------------------------------------------


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
        cfg.callbacks.nan = {"_target_": "tests.test_faults.NanLoss", "at": at}
    return cfg


def assert_finite_checkpoint(path: Path) -> dict[str, Any]:
    ckpt = load(path)
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
    monkeypatch.setattr(gan.health.NanGuard, "defer_checks", lambda self, pl_module: True)
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
        "+callbacks.nan._target_=tests.test_faults.NanLoss",
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


# ---- 4. bad inputs --------------------------------------------------------------------------


def run_case_in_process(case: Case, paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> str:
    """What the case raises in-process: the GanError message, or Hydra's/OmegaConf's."""
    module, *args = fill(full_args(case), paths)
    if module == "gan.sample":
        with pytest.raises(SystemExit) as exit_:
            gan.sample.main(args)
        return str(exit_.value.code)

    def no_network(*a: Any, **k: Any) -> Any:
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    run = next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir="))
    try:
        cfg = compose_cfg(Path(run), *[a for a in args if not a.startswith("hydra.")])
    except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf: the CLI prints both lines
        return f"{e}\n{e.__cause__}"
    with pytest.raises(GanError) as err:
        train(cfg)
    return str(err.value)


@pytest.mark.parametrize("case", params([c for c in CASES if not c.ok]))
def test_bad_input_in_process(
    case: Case,
    inputs: dict[str, Path],
    existing_run: Existing,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "trainer.accelerator=gpu" in case.args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    mine = existing_run.copy_to(tmp_path / "existing")  # what {ckpt} cases resume from
    paths = {**inputs, "ckpt": mine.path / "checkpoints" / "last.ckpt", "run": tmp_path / "run"}
    message = run_case_in_process(case, paths, monkeypatch)
    assert case.expected in message
    mine.assert_untouched()
    existing_run.assert_untouched()


@pytest.fixture(scope="module")
def cli_results(
    inputs: dict[str, Path], existing_run: Existing, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[subprocess.CompletedProcess, Path, Existing]]:
    """Every `cli` case through the real command line, two at a time.

    Each case resumes ({ckpt}) from its own copy of the existing run.
    """
    base = tmp_path_factory.mktemp("cli")
    runs = {}
    for case in [c for c in CASES if c.cli]:
        mine = existing_run.copy_to(base / f"{case_id(case)}-existing")
        runs[case_id(case)] = (case, base / case_id(case), mine)
    with ThreadPoolExecutor(2) as pool:
        futures = {
            key: pool.submit(
                run_case_cli, case, {**inputs, "ckpt": mine.path / "checkpoints" / "last.ckpt"}, run
            )
            for key, (case, run, mine) in runs.items()
        }
        return {key: (futures[key].result(), run, mine) for key, (_, run, mine) in runs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", params([c for c in CASES if c.cli]))
def test_bad_input_from_the_command_line(
    case: Case,
    cli_results: dict[str, tuple[subprocess.CompletedProcess, Path, Existing]],
    existing_run: Existing,
) -> None:
    if "trainer.accelerator=gpu" in case.args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res, run, mine = cli_results[case_id(case)]
    shown = res.stdout + res.stderr
    assert res.returncode == (0 if case.ok else 1), shown[-3000:]
    assert case.expected in shown, shown[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    if "logger=wandb" in case.args:
        assert list((run / "wandb").glob("offline-run-*")), "W&B did not run offline"
    mine.assert_untouched()  # the run folder it resumed from, or could have
    existing_run.assert_untouched()


@pytest.mark.slow
def test_the_output_dir_callback_from_the_command_line(tmp_path: Path) -> None:
    """CheckOutputDir (a Hydra callback in conf/train.yaml) catches an unwritable run folder."""
    (tmp_path / "afile").write_text("x")
    res = subprocess.run(
        [sys.executable, "-m", "gan.train", "model=mlp", f"hydra.run.dir={tmp_path}/afile/run"],
        cwd=ROOT,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"error: cannot create the output folder {tmp_path}/afile/run: ")
    assert "hydra.run.dir=" in res.stderr


# ---- the checks themselves, called directly -------------------------------------------------


def test_check_resume_checkpoint_names_the_problem(
    inputs: dict[str, Path], tmp_path: Path, tiny_root: Path
) -> None:
    mlp = to_dict(compose_cfg(tmp_path, f"data.root={tiny_root}", "model=mlp").model)
    dcgan = to_dict(compose_cfg(tmp_path, f"data.root={tiny_root}", "model=dcgan").model)
    check_resume_checkpoint(inputs["ckpt"], mlp, ema=False)  # the right one passes
    check_resume_checkpoint(inputs["ckpt"].parent.parent, mlp, ema=False)  # or its run folder
    check_resume_checkpoint("last", dcgan)  # Lightning's names are Lightning's business
    expect = {
        ("ckpt", "dcgan"): "was written by a model=mlp run, but this run has model=dcgan",
        ("text", "mlp"): "is not a checkpoint: it is not a file written by torch.save",
        ("missing", "mlp"): "does not exist",
        ("torn", "mlp"): "is not a readable checkpoint",
        ("foreign", "mlp"): "a Lightning checkpoint of another module",
        ("empty", "mlp"): "is a folder without checkpoints/last.ckpt, not a checkpoint",
    }
    for (name, model), text in expect.items():
        with pytest.raises(GanError) as err:
            check_resume_checkpoint(inputs[name], dcgan if model == "dcgan" else mlp)
        assert text in str(err.value), str(err.value)
        assert f"ckpt_path={inputs[name]}" in str(err.value)
    wide = {**mlp, "generator": {**mlp["generator"], "hidden": 256}}
    with pytest.raises(
        GanError,
        match=r"model\.generator\.hidden=128, but this run has model\.generator\.hidden=256",
    ):
        check_resume_checkpoint(inputs["ckpt"], wide)
    with pytest.raises(GanError, match="holds no EMA weights .* Resume with ema.enabled=false"):
        check_resume_checkpoint(inputs["ckpt"], mlp, ema=True)


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "run")  # can be created: fine, and nothing is made
    assert not (tmp_path / "new").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(
        GanError, match="afile is a file, not a folder. Pick another folder: hydra.run.dir="
    ):
        check_writable(tmp_path / "afile" / "run")
    with pytest.raises(GanError, match="hydra.sweep.dir="):
        check_writable(tmp_path / "afile" / "run", key="hydra.sweep.dir")
    if Path("/proc/self").is_dir():  # a place where no folder can be made, whoever you are
        with pytest.raises(GanError, match="/proc does not accept new folders .*hydra.run.dir="):
            check_writable("/proc/forbidden/run")
    with pytest.raises(SystemExit, match="^error: cannot create the output folder"):
        CheckOutputDir().on_run_start(
            DictConfig({"hydra": {"run": {"dir": str(tmp_path / "afile" / "run")}}})
        )


# ---- 5. the doc -----------------------------------------------------------------------------


def test_every_case_is_in_the_doc() -> None:
    doc = DOC.read_text()
    for case in CASES:
        assert case.description in doc, (
            f"docs/troubleshooting.md lacks the case {case.description!r}"
        )
        assert case.expected in doc, f"docs/troubleshooting.md lacks the message {case.expected!r}"


def doc_table() -> str:  # pragma: no cover - run by hand: python -m tests.test_faults
    """The troubleshooting table from real command-line runs of every case."""
    rows = ["| Bad input | Command | What you see |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ.setdefault("GAN_CACHE", str(base / "cache"))
        data = base / "data"
        write_tiny_mnist(data, split="all", n=64)
        ckpt = train_existing_run(data, base / "existing")
        paths = make_inputs(base / "inputs", data, ckpt)
        for case in CASES:
            res = run_case_cli(case, paths, base / "runs" / case_id(case))
            lines = [
                ln
                for ln in (res.stderr + res.stdout).splitlines()
                if ln.strip() and "HYDRA_FULL_ERROR" not in ln
            ]
            hit = next((i for i, ln in enumerate(lines) if case.expected in ln), 0)
            shown = " ".join(lines[hit : hit + 1]).replace(tmp, "<tmp>").replace("|", "/")
            command = "python -m " + " ".join(case.args).replace("{", "<").replace("}", ">")
            rows.append(f"| {case.description} | `{command}` | `{shown}` |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    Path(sys.argv[1]).write_text(doc_table() + "\n")
