"""Compare the jobs of a sweep: one table, ranked by the best score each job reached.

    python -m gan.report multirun/2024-05-01/12-00-00              # one sweep
    python -m gan.report multirun/2024-05-01 --metric val/kid      # every sweep under a folder
    python -m gan.report multirun/a multirun/b --out reports/      # several sweeps, one table

A job is any folder holding `.hydra/overrides.yaml` or `result.json`. For each job the
table shows the overrides that differ between jobs (the swept values), how the job ended
(ok, failed, diverged, or running/killed while `result.json` is missing), the final and
best value of `--metric` in its `csv/metrics.csv` (or `result.json`'s value when the CSV
lacks it; best is the lowest, or the highest for scores such as val/mnist_score and
val/coverage), the final `val/coverage`, its time and, for a failed job, why. The table is
printed and written to `report.csv` and `report.md`; `report.png` plots the best score
against the first swept value, colored by the others. They land in the first folder
given, or in `--out`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

HIGHER_IS_BETTER = ("mnist_score", "coverage", "inception", "precision", "recall", "acc")
COVERAGE = "val/coverage"
# Scores only some runs log (conditional models, Stacked MNIST): a column when any job has it.
EXTRA = ("val/label_accuracy", "val/intra_fid", "val/modes", "val/kl")
ERROR_CHARS = 100


@dataclass
class Job:
    name: str
    path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    status: str = "running/killed"
    seconds: float | None = None
    error: str = ""
    final: float | None = None
    best: float | None = None
    coverage: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # the final EXTRA scores it logged


def higher_is_better(metric: str) -> bool:
    return any(word in metric.rsplit("/", 1)[-1] for word in HIGHER_IS_BETTER)


def is_job(path: Path) -> bool:
    return (path / ".hydra" / "overrides.yaml").is_file() or (path / "result.json").is_file()


def find_jobs(root: Path) -> list[Path]:
    """Job folders under `root` (or `root` itself), not looking inside a job."""
    jobs = []
    for here, dirs, _ in os.walk(root):
        if is_job(Path(here)):
            jobs.append(Path(here))
            dirs.clear()
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    return jobs


def read_overrides(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.is_file() else None
    pairs = (str(item).split("=", 1) for item in items or [])
    return {key.lstrip("+~"): value for key, value in (p for p in pairs if len(p) == 2)}


def read_series(job: Path, metric: str) -> list[float]:
    """The logged values of `metric` in the job's CSV log, in order (empty if none)."""
    for path in sorted(job.glob("csv/**/metrics.csv")):
        with path.open(newline="") as f:
            return [float(row[metric]) for row in csv.DictReader(f) if row.get(metric)]
    return []


def load_job(path: Path, name: str, metric: str) -> Job:
    job = Job(name, path, read_overrides(path))
    result_file = path / "result.json"
    try:
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    except ValueError:  # half-written when the job was killed
        result = {}
    if result:
        job.status = result.get("status", "?")
        job.seconds = result.get("seconds")
        job.error = (result.get("error") or "").strip().split("\n")[0]
    series = read_series(path, metric)
    if not series and result.get("metric") == metric and result.get("value") is not None:
        series = [float(result["value"])]  # e.g. a metric that only the job returned
    finite = [v for v in series if math.isfinite(v)]
    job.final = series[-1] if series else None
    if finite:
        job.best = max(finite) if higher_is_better(metric) else min(finite)
    coverage = read_series(path, COVERAGE)
    job.coverage = coverage[-1] if coverage else None
    for key in EXTRA:
        values = read_series(path, key)
        if values:
            job.extra[key] = values[-1]
    return job


def natural(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def collect(folders: Sequence[Path], metric: str) -> list[Job]:
    jobs = []
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"error: {folder} is not a folder")
        found = find_jobs(folder)
        if not found:
            raise SystemExit(
                f"error: {folder} holds no jobs (no folder with .hydra/overrides.yaml or "
                f"result.json); pass a sweep folder such as multirun/<date>/<time>"
            )
        for path in found:
            name = str(path.relative_to(folder)) if path != folder else folder.name
            if len(folders) > 1:
                name = f"{folder.name}/{name}"
            jobs.append(load_job(path, name, metric))
    sign = -1 if higher_is_better(metric) else 1
    return sorted(jobs, key=lambda j: (j.best is None, sign * (j.best or 0), natural(j.name)))


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (all keys for one job)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    if len(jobs) == 1:
        return keys
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def shorten(text: str, width: int = ERROR_CHARS) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def header(keys: Sequence[str], metric: str, extras: Sequence[str] = ()) -> list[str]:
    return [
        "job",
        *keys,
        "status",
        f"final {metric}",
        f"best {metric}",
        f"final {COVERAGE}",
        *(f"final {k}" for k in extras),
        "time (s)",
        "error",
    ]


def short_value(text: str) -> str:
    """An override as people read it: Optuna's 0.00010391172048651328 as 0.0001039."""
    number = as_number(text)
    return fmt(number) if number is not None and len(text) > 8 else text


def row(job: Job, keys: Sequence[str], raw: bool = False, extras: Sequence[str] = ()) -> list[str]:
    """One line of the table: rounded for people, or at full precision for report.csv."""
    num = (lambda v: "" if v is None else repr(v)) if raw else fmt
    values = [job.overrides.get(k, "") for k in keys]
    values = values if raw else [short_value(v) for v in values]
    return [
        job.name,
        *values,
        job.status,
        num(job.final),
        num(job.best),
        num(job.coverage),
        *(num(job.extra.get(k)) for k in extras),
        fmt(job.seconds, 6),
        job.error if raw else shorten(job.error),
    ]


def write_markdown(path: Path, head: list[str], rows: list[list[str]]) -> None:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [line(head), line(["---"] * len(head)), *(line(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, jobs: Sequence[Job], keys: Sequence[str], metric: str) -> bool:
    """Best score against the first swept value, one color per combination of the rest."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    scored = [j for j in jobs if j.best is not None]
    if not scored:
        return False
    x_key = keys[0] if keys else "job"
    xs = [j.overrides.get(x_key, "") if keys else j.name for j in scored]
    numbers = [as_number(x) for x in xs]
    numeric = all(n is not None for n in numbers)
    if not numeric:  # categories, in natural order
        order = list(dict.fromkeys(sorted(xs, key=natural)))
        numbers = [float(order.index(x)) for x in xs]
    groups: dict[str, list[tuple[float, float]]] = {}
    for job, x in zip(scored, numbers):
        label = ", ".join(f"{k}={job.overrides.get(k, '')}" for k in keys[1:])
        groups.setdefault(label, []).append((x, job.best))

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, points in groups.items():
        points.sort()
        ax.plot(*zip(*points), "o-" if numeric else "o", label=label or None, alpha=0.8)
    if numeric:
        low, high = min(numbers), max(numbers)
        if low > 0 and high / low > 10:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"best {metric}")
    ax.grid(alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize="small", title=", ".join(keys[1:]), title_fontsize="small")
    fig.savefig(path, dpi=120)
    return True


def report(folders: Sequence[Path], metric: str = "val/fid", out: Path | None = None) -> list[Job]:
    """Print the table and write report.csv, report.md and report.png into `out`."""
    jobs = collect(folders, metric)
    keys = swept_keys(jobs)
    extras = [k for k in EXTRA if any(k in job.extra for job in jobs)]
    head = header(keys, metric, extras)
    rows = [row(job, keys, extras=extras) for job in jobs]

    table = Table(title=f"{len(jobs)} jobs, ranked by best {metric}")
    for name in head:
        numeric = name.startswith(("final", "best", "time"))
        table.add_column(escape(name), justify="right" if numeric else "left", overflow="fold")
    for job, cells in zip(jobs, rows):
        style = {"failed": "red", "diverged": "yellow", "running/killed": "dim"}.get(job.status)
        table.add_row(*map(escape, cells), style=style)
    # Piped or captured output has no terminal width: keep rows on one line each.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if not console.is_terminal:  # piped or captured: no folding at 80 columns
        console.width = max(console.width, 300)
    console.print(table)

    out = out or folders[0]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "report.csv").open("w", newline="") as f:
        csv.writer(f).writerows([head, *(row(job, keys, True, extras) for job in jobs)])
    write_markdown(out / "report.md", head, rows)
    wrote = ["report.csv", "report.md"]
    if plot(out / "report.png", jobs, keys, metric):
        wrote.append("report.png")
    else:
        (out / "report.png").unlink(missing_ok=True)  # not an old sweep's plot
        console.print(f"no {metric} in any job: report.png is not drawn")
    console.print(f"wrote {', '.join(wrote)} to {out}")
    return jobs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gan.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("folders", nargs="+", type=Path, help="sweep folders, e.g. multirun/...")
    parser.add_argument("--metric", default="val/fid", help="the score to rank by (val/fid)")
    parser.add_argument("--out", type=Path, help="where the reports go (the first folder)")
    args = parser.parse_args(argv)
    report(args.folders, args.metric, args.out)


if __name__ == "__main__":
    main()
