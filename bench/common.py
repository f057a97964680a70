"""What the benchmark scripts share, stated once.

- **Where**: `ROOT`, the MNIST files the figures were measured on (`DATA_ROOT`, the test
  split) and the results folder of each script, `bench/results/<name>/`; the options every
  script shares (`parser`, `add_data_args`, `add_out_arg`). Training runs go under
  `<out>/runs/`, which git ignores.
- **Training**: `train_command` builds the `python -m gan.train` command line of a bench run
  and `train` runs it in a subprocess (`run`: any `python -m gan.<tool>`), from the
  repository root with its `gan` first on PYTHONPATH. Training into a folder that already
  holds a run is refused by gan.training.run unless the command resumes it (`ckpt_path=`) or says
  `overwrite=true`: a script that redoes a run in its own folder passes `overwrite=true`.
  `train_or_reuse` does so, or reads a run that finished there again, only if it was
  trained with the same settings (`check_reusable`).
- **Reading a run**: `read_metrics` gives the rows of its `csv/metrics.csv`, `val_curve` its
  validations with the one epoch convention below, `status` how it ended, `final_scores` the
  last scores of a run that finished.
- **Reporting**: `machine` (the line results files give the machine by), `mean_std` and
  `format_mean_std` (mean ± std), `cell` (a number, or a dash).

The epoch convention. Lightning's CSVLogger writes one row per logging call with blank
cells for the keys not logged in it: training rows (`train/*`, every `log_every_n_steps`)
and one row per validation holding every `val/*` score. Its `epoch` column is 0-based, the
epoch being trained when the row was logged; a validation at an epoch's end carries that
epoch's number (gan.train's console, its `images/grid_epoch<NNN>_*.png` and its
checkpoints count the same way). In `val_curve`, `epoch` is the number of **epochs done**
at that validation: Lightning's column + 1, as bench/plain_dcgan.py counts and the docs'
"epochs trained" columns read. A run's metrics.csv keeps its history across resumes (every
epoch's rows; a resume cuts it back to its checkpoint, so no validation appears twice), and
`val/*_floor` is logged once per run, on its first validation.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]  # the repository
RESULTS = ROOT / "bench" / "results"  # bench/results/<name>/: what each script writes
DATA_ROOT = ROOT.parent / "shared" / "mnist"  # the MNIST test split every figure comes from


# ---- the command line of a script --------------------------------------------------------


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The command line of `python -m bench.<name>`, described by its docstring's first line."""
    return argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.split("\n")[0])


def add_data_args(p: argparse.ArgumentParser, split: bool = True) -> None:
    """`--data-root` (default DATA_ROOT) and `--split` (default test)."""
    p.add_argument("--data-root", default=str(DATA_ROOT), help="MNIST files (default: %(default)s)")
    if split:
        p.add_argument("--split", default="test", help="the split to train on (default: test)")


def add_out_arg(p: argparse.ArgumentParser, name: str) -> None:
    """`--out`, by default bench/results/<name>."""
    p.add_argument(
        "--out",
        default=str(RESULTS / name),
        help=f"the results folder (default: bench/results/{name})",
    )


# ---- running gan.train -------------------------------------------------------------------


def command(module: str, args: Iterable[str] = ()) -> list[str]:
    """`python -m <module> <args>` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def train_command(
    overrides: Iterable[str] = (),
    *,
    data_root: str | Path,
    split: str,
    sweep: bool = False,
) -> list[str]:
    """`python -m gan.train [-m]` on the bench's MNIST files, without a progress bar and with
    the CSV logger (what `read_metrics` reads), then `overrides` (they come last and win)."""
    return command(
        "gan.train",
        [
            *(["-m"] if sweep else []),
            f"data.root={data_root}",
            f"data.split={split}",
            "data.download=false",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            *overrides,
        ],
    )


def env() -> dict[str, str]:
    """The environment of a subprocess: this one, with the repository first on PYTHONPATH."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def run(
    cmd: Sequence[str], *, check: bool = True, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Print `cmd` and run it from the repository root with `env()`; waits for it. `check`:
    fail if it fails; `capture`: keep its output (stdout, stderr) instead of showing it."""
    print("$", " ".join(map(str, cmd)), flush=True)
    return subprocess.run(
        list(cmd), cwd=ROOT, env=env(), check=check, capture_output=capture, text=True
    )


def train(
    overrides: Iterable[str] = (),
    *,
    data_root: str | Path,
    split: str,
    sweep: bool = False,
    check: bool = True,
    capture: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`run(train_command(...))`."""
    cmd = train_command(overrides, data_root=data_root, split=split, sweep=sweep)
    return run(cmd, check=check, capture=capture)


def settings(overrides: Iterable[str]) -> dict[str, str]:
    """Hydra overrides as key -> value, the last of a repeated key winning (as in Hydra);
    `hydra.*` (the run's folder: not the run's settings) and `overwrite` left out."""
    pairs = (str(o).partition("=") for o in overrides)
    return {k: v for k, _, v in pairs if not k.startswith("hydra.") and k != "overwrite"}


def check_reusable(
    folder: Path, overrides: Sequence[str], *, data_root: str | Path, split: str
) -> None:
    """Exit with one line when the finished run in `folder` was trained with other settings
    than `train_command(overrides, ...)` gives (its `.hydra/overrides.yaml`, as typed): a
    setting missing, added or changed would make its figures another run's. Retraining it
    is the user's call (`--fresh`), not the bench's."""
    path = Path(folder) / ".hydra" / "overrides.yaml"
    had = settings((yaml.safe_load(path.read_text()) or []) if path.exists() else [])
    want = settings(train_command(overrides, data_root=data_root, split=split)[3:])
    differ = [
        f"{k}={had.get(k, '(unset)')} (now {want.get(k, '(unset)')})"
        for k in sorted(had.keys() | want.keys())
        if had.get(k) != want.get(k)
    ]
    if differ:
        raise SystemExit(
            f"bench: the finished run {folder} was trained with {', '.join(differ)}; "
            f"retrain it with --fresh, or write elsewhere with --out."
        )


def train_or_reuse(
    folder: Path,
    overrides: Sequence[str],
    *,
    data_root: str | Path,
    split: str,
    fresh: bool = False,
    finished: Sequence[str] = ("ok",),
    check: bool = True,
    capture: bool = False,
) -> subprocess.CompletedProcess[str] | None:
    """`train(overrides)` into `folder`, or, unless `fresh`, the run that finished there
    (its status one of `finished`) read again: None. A finished run is reused only if it
    was trained with the same settings (`check_reusable`); one not reused is redone in its
    folder (overwrite=true)."""
    if not fresh and status(folder) in finished:
        check_reusable(folder, overrides, data_root=data_root, split=split)
        print(f"reusing the finished run {folder}", flush=True)
        return None
    return train(
        [f"hydra.run.dir={folder}", "overwrite=true", *overrides],
        data_root=data_root,
        split=split,
        check=check,
        capture=capture,
    )


# ---- reading a run -----------------------------------------------------------------------


def status(run_dir: Path) -> str | None:
    """How the run in `run_dir` ended (result.json's status: ok, diverged, failed, ...), or
    None if it holds no finished run."""
    path = Path(run_dir) / "result.json"
    return json.loads(path.read_text()).get("status") if path.exists() else None


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """The rows of `<run_dir>/csv/metrics.csv` as CSVLogger wrote them: a dict per row, ""
    where the row holds no value for a key."""
    with (Path(run_dir) / "csv" / "metrics.csv").open(newline="") as f:
        return [{k: v or "" for k, v in row.items()} for row in csv.DictReader(f)]


def val_curve(run_dir: Path) -> list[dict[str, float]]:
    """One dict per validation of the run, in order: every `val/*` score logged at it
    (without the prefix; `val/elapsed_s`, training wall time so far with validation and
    resumes included, as `seconds`) and `epoch`, the epochs done (Lightning's 0-based
    `epoch` column + 1; see the module's docstring). Floors are in the first dict only."""
    curve = []
    for row in read_metrics(run_dir):
        scores = {k[4:]: float(v) for k, v in row.items() if k.startswith("val/") and v != ""}
        if not scores:  # a training row
            continue
        if "elapsed_s" in scores:
            scores["seconds"] = scores.pop("elapsed_s")
        scores["epoch"] = int(float(row["epoch"])) + 1
        curve.append(scores)
    return curve


def last_values(curve: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each key's value at the last validation that logged it (a floor: at the first)."""
    return {k: v for row in curve for k, v in row.items()}


def final_scores(run_dir: Path) -> dict[str, float] | None:
    """`last_values` of a run that finished ok (see `val_curve` for the keys); None for a
    run that failed, diverged or never finished."""
    if status(run_dir) != "ok":
        return None
    return last_values(val_curve(run_dir))


# ---- reporting ---------------------------------------------------------------------------


def machine() -> str:
    """The machine, as results files give it: `x86_64, 2 CPUs, torch 2.15.0+cu132` (the
    processor as the platform names it, CPU cores, torch), and the GPU's name if CUDA is
    available."""
    import torch

    where = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
    where += f"torch {torch.__version__}"
    if torch.cuda.is_available():
        where += f", {torch.cuda.get_device_name()}"
    return where


def format_mean_std(mean: float | None, std: float | None, spec: str) -> str:
    """`mean ± std`, each formatted with `spec`; the mean alone without a std; "—" without
    a mean."""
    if mean is None:
        return "—"
    if std is None:
        return format(mean, spec)
    return f"{format(mean, spec)} ± {format(std, spec)}"


def mean_std(values: Iterable[float], spec: str = ".3f") -> str:
    """Mean ± sample standard deviation of `values` (the value alone if only one; "—" if
    none), each formatted with `spec`."""
    values = list(values)
    if len(values) < 2:
        return format_mean_std(values[0] if values else None, None, spec)
    return format_mean_std(statistics.mean(values), statistics.stdev(values), spec)


def cell(value: object, spec: str) -> str:
    """A table cell: a number formatted with `spec`, anything else (a missing score) "—"."""
    return format(value, spec) if isinstance(value, (int, float)) else "—"
