"""What the tests share: paths, the tiny-run overrides, configs, checkpoints, the command line
and readers of run folders.

Fixtures live in tests/conftest.py (and tests/faults/conftest.py); every test module takes its
helpers from here, never from another test module.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from gan.training.config import register, to_dict
from gan.training.module import GAN
from tests.mnist_files import write_tiny_mnist

ROOT = Path(__file__).resolve().parents[1]  # the repository
CONF = ROOT / "conf"
SHARED_MNIST = ROOT.parent / "shared" / "mnist"  # the real MNIST test split, when present
HAS_SHARED = (SHARED_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
needs_mnist = pytest.mark.skipif(not HAS_SHARED, reason=f"no MNIST test split in {SHARED_MNIST}")


# ---- the tiny run ---------------------------------------------------------------------------

# The one set of overrides for a run on tiny data (conftest's 64 images a split): CPU, quiet,
# CSV logs, cheap metrics. Every variant below is derived from it with `tiny()`.
TINY = (
    "data.download=false",
    "data.val_size=16",
    "data.batch_size=8",
    "data.val_batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "metrics.num_samples=64",  # keep the FID-like checks cheap on tiny data
    "metrics.classifier_epochs=1",
)
# The cheap-metrics keys. The bit-exact kill tests leave them out: their reference runs load
# the classifier that `warm_classifier` cached with the default recipe.
METRICS = ("metrics.num_samples", "metrics.classifier_epochs")


def key(override: str) -> str:
    """The key an override sets: `+callbacks.x._target_=...` -> `callbacks.x._target_`."""
    return override.split("=", 1)[0].lstrip("+")


def with_overrides(base: Iterable[str], *extra: str, drop: Iterable[str] = ()) -> list[str]:
    """`base` less the keys that `extra` sets (`extra` wins) and those in `drop`; then `extra`."""
    gone = {key(a) for a in extra} | set(drop)
    return [a for a in base if key(a) not in gone] + list(extra)


def tiny(*extra: str, drop: Iterable[str] = ()) -> list[str]:
    """TINY with `extra` on top (an override of `extra` replaces TINY's of the same key), less
    the keys in `drop`."""
    return with_overrides(TINY, *extra, drop=drop)


def compose_cfg(*overrides: str, out: Path | None = None) -> DictConfig:
    """conf/train.yaml composed with `overrides` (as given: no TINY), writing into `out`."""
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    if out is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
    return cfg


# ---- checkpoints ------------------------------------------------------------------------------


def save_untrained(cfg: DictConfig, path: Path, seed: int = 0) -> Path:
    """An untrained GAN as a checkpoint `gan.tools.sample.load_gan` reads (what a Trainer writes,
    less the optimizer and loop state)."""
    torch.manual_seed(seed)
    module = GAN.from_config(cfg)
    hparams = dict(module.hparams)  # a plain dict: weights_only
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, path)
    return path


def train_existing_run(data: Path, out: Path) -> Path:
    """A finished 1-epoch mlp run in `out` (no EMA); returns its last.ckpt."""
    from gan.training.run import train

    run = ("model=mlp", "trainer.max_epochs=1", "ema.enabled=false")
    train(compose_cfg(*TINY, f"data.root={data}", *run, out=out))
    return out / "checkpoints" / "last.ckpt"


def load_ckpt(path: Path) -> dict[str, Any]:
    """A checkpoint file as a dict, on the CPU (what the tests inspect, not what users load)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def make_inputs(base: Path, data: Path, ckpt: Path) -> dict[str, Path]:
    """The broken files and folders bad-input cases point at (`{name}` in their arguments);
    `ckpt` is an mlp run's last.ckpt (without EMA)."""
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
    state = load_ckpt(ckpt)
    dcgan = compose_cfg(f"data.root={data}", "model=dcgan", out=base / "unused")
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


# ---- training in-process --------------------------------------------------------------------


def build(cfg: DictConfig) -> tuple[GAN, L.LightningDataModule]:
    """The module and the data module of a config."""
    return GAN.from_config(cfg), instantiate(cfg.data)


def fit(
    module: GAN, dm: L.LightningDataModule, batches: int, tmp_path: str, **trainer_kw: Any
) -> L.Trainer:
    """`batches` training batches of one epoch on the CPU: no validation, logs or saves."""
    kw = dict(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer = L.Trainer(**{**kw, **trainer_kw})
    trainer.fit(module, datamodule=dm)
    return trainer


def adam_steps(opt: torch.optim.Optimizer) -> int:
    """How many times this optimizer really stepped (Adam counts it per parameter)."""
    steps = {int(s["step"]) for s in opt.state.values()}
    assert len(steps) == 1
    return steps.pop()


def warm_classifier(root: Path) -> None:
    """Cache the metrics' classifier for `root` before a reference run.

    Loading it from the cache builds a fresh network, which draws from the global RNG, while
    training it does not (fork_rng): a run that trains it and a run that loads it would
    start from different RNG states, however exact the resume.
    """
    from gan.metrics.classifier import load_or_train

    load_or_train(str(root), "train", download=False, accelerator="cpu", progress_bar=False)


def real_classifier(tmp_path_factory: pytest.TempPathFactory, max_epochs: int | None = None) -> Any:
    """The classifier trained on the real test split's first 8,000 images, once per session.

    The cache folder is shared by the session (one per `max_epochs`), so the tests that need
    it train it once and then load it. `max_epochs=None`: the default recipe.
    """
    from gan.metrics.classifier import load_or_train

    if not HAS_SHARED:
        pytest.skip(f"no MNIST test split in {SHARED_MNIST}")
    name = f"gan-cache-{max_epochs or 'default'}"
    kwargs = {} if max_epochs is None else {"max_epochs": max_epochs}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_CACHE", str(tmp_path_factory.getbasetemp() / name))
        return load_or_train(str(SHARED_MNIST), split="test", progress_bar=False, **kwargs)


# ---- the command line -------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of every `python -m ...` the tests start: this checkout first on the
    path, one thread (reproducible float math, no oversubscription of a small machine) and
    the user's view of errors (no HYDRA_FULL_ERROR); then `extra`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(extra)
    return env


def run_cli(
    module: str,
    *args: str | bytes | Path,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    text: bool = True,
    merge_output: bool = False,
) -> subprocess.CompletedProcess:
    """`python -m <module> args...` as a user runs it, from `cwd`, with `cli_env()` (or `env`)
    and no stdin; its output captured (stderr into stdout with `merge_output`)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        text=text,
        timeout=timeout,
    )


def start_cli(
    module: str,
    *args: str | Path,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    **popen: Any,
) -> subprocess.Popen:
    """Start `python -m <module> args...` as `run_cli` does, without waiting; `popen` (stdout,
    stderr, text, ...) goes to subprocess.Popen."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        **popen,
    )


def cli_error(main: Callable[[list[str]], object], *args: str) -> str:
    """The one `error: ...` line a `python -m gan.<tool>` entry exits with on bad input."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    message = str(info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


# ---- files and run folders ----------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder` (hidden ones too): its sha256 and mtime."""
    return {
        str(p.relative_to(folder)): (sha256(p), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Existing(NamedTuple):
    """A run folder and its snapshot when made: what no bad input may touch."""

    path: Path
    files: dict[str, tuple[str, int]]

    def assert_untouched(self) -> None:
        assert snapshot(self.path) == self.files, "a bad input changed an existing run folder"

    def copy_to(self, dest: Path) -> Existing:
        """A copy of its own for a case: a case that writes into it harms no other test."""
        shutil.copytree(self.path, dest)  # copy2: mtimes kept
        return Existing(dest, snapshot(dest))


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv: `path` is the file or a run folder (its csv/metrics.csv);
    none without a file."""
    path = path if path.suffix == ".csv" else path / "csv" / "metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def metrics_rows(run: Path) -> list[dict[str, str]]:
    """The run's metrics.csv rows, less the wall-clock column (val/elapsed_s)."""
    return [{k: v for k, v in r.items() if k != "val/elapsed_s"} for r in read_metrics(run)]


def val_fid_epochs(run: Path) -> list[int]:
    """The epochs of the `val/fid` rows in the run's metrics.csv, in file order."""
    return [int(float(r["epoch"])) for r in read_metrics(run) if r.get("val/fid")]


# ---- the fault tests' run: 3 epochs, a save every 3 iterations, bit-exact resumes -----------

EVERY = 3  # callbacks.checkpointing.every_n_iterations in the fault tests
RUN_ARGS = tuple(
    tiny(
        "model=mlp",
        "trainer.max_epochs=3",
        "ema.enabled=true",
        f"callbacks.checkpointing.every_n_iterations={EVERY}",
        drop=METRICS,
    )
)
PER_EPOCH = (256 - 16) // 8  # iterations per epoch on the kill tests' data (`kill_data`)
TOTAL = 3 * PER_EPOCH


def train_cli(data: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    """`python -m gan.train` with RUN_ARGS on `data`, into `run`; `extra` overrides RUN_ARGS."""
    base = with_overrides(RUN_ARGS, drop={key(a) for a in extra})
    return run_cli("gan.train", *base, f"data.root={data}", f"hydra.run.dir={run}", *extra)


def assert_same_training_state(a: Path, b: Path) -> None:
    """G, D and EMA weights, both optimizers' states and the counters: bit for bit."""
    ca, cb = load_ckpt(a), load_ckpt(b)
    assert (ca["gan_iteration"], ca["global_step"]) == (cb["gan_iteration"], cb["global_step"])
    assert ca["gan_d_updates"] == cb["gan_d_updates"]  # the lazy R1/R2 schedule
    assert ca.get("gan_ada") == cb.get("gan_ada")  # ADA's p and its interval's sums
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
            for name, value in state.items():
                assert torch.equal(value, ob["state"][p][name]), f"optimizer {i} {p}.{name} differs"
    assert ca.get("lr_schedulers") == cb.get("lr_schedulers")  # optimizer.schedule's place


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
