"""Compare the jobs of a sweep: one table, ranked by the best score each job reached.

    python -m gan.report multirun/2024-05-01/12-00-00              # one sweep
    python -m gan.report multirun/2024-05-01 metric=val/kid        # every sweep under a folder
    python -m gan.report multirun/a multirun/b out=reports/        # several sweeps, one table
    python -m gan.report multirun/a columns=[val/kid,val/precision] per_job=true

A job is any folder holding `.hydra/overrides.yaml` or `result.json`. For each job the
table shows the overrides that differ between jobs (the swept values), how the job ended
(ok, failed, diverged, or running/killed while `result.json` is missing), the final and
best value of `metric=` (best is the lowest, or the highest for scores such as
val/mnist_score, val/coverage, val/precision), the final `val/coverage` and other scores,
its time and, for a failed job, why. Every scalar score any job logged gets a column
(floors and the wall clock aside); `columns=[val/kid,val/precision]` picks them instead. Scores are read whatever the logger was: csv, then
TensorBoard, then W&B (offline runs too), then `result.json` (gan/tools/report_scores.py).
A job folder holding `cas.json` (`python -m gan.cas`) adds `cas` and `cas_real` (higher is
better): the Classification Accuracy Score and the real-trained classifier's accuracy.

When the jobs differ in `seed` (`-m seed=0,1,2 loss=bce,hinge`), the jobs that differ only
in their seed are grouped: one row per setting, ranked by the mean over seeds of the best
score, with each score's mean ± standard deviation and its best single seed, the number of
seeds and how many failed or diverged. Means count the seeds that logged the score (a
diverged seed's values before it diverged count).

Written into the first folder given, or `--out`: `report.csv` and `report.md` (the grouped
table when seeds are grouped, else the per-job one), `report_jobs.csv` and `report_jobs.md`
(the per-job table, when seeds are grouped), and `report.png`: the best score (its mean
and standard deviation over seeds) against the first swept value, colored by the others,
on a log axis for a learning rate (`*lr`) or positive values spanning over a decade.
`per_job=true` turns the grouping off.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gan.tools.report_plot import natural, plot
from gan.tools.report_scores import CAS, number, read_scores
from gan.utils.errors import GanError
from gan.utils.files import atomic_write
from gan.utils.options import command, parse_options

# Scores that are better when higher (a word of the name after "val/"); prdc_coverage: coverage.
HIGHER_IS_BETTER = ("mnist_score", "coverage", "inception", "precision", "recall", "density")
HIGHER_IS_BETTER += ("acc", "modes", "cas")  # label accuracy; Stacked MNIST's modes; CAS
COVERAGE = "val/coverage"
# Scores only some runs log (conditional, Stacked MNIST, PRDC): a column when any job has one.
EXTRA = ("val/label_accuracy", "val/intra_fid", "val/modes", "val/kl", "val/precision")
EXTRA += ("val/recall", "val/density", "val/prdc_coverage", *CAS)
SEED = "seed"
ERROR_CHARS = 100
STYLES = {"failed": "red", "diverged": "yellow", "running/killed": "dim"}


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
    last: dict[str, float] = field(default_factory=dict)  # the last value of every scalar

    def score(self, column: Column) -> float | None:
        return self.best if column.best else self.last.get(column.name)


@dataclass(frozen=True)
class Column:
    """A score column: the best or the final value of `name`."""

    name: str
    best: bool = False

    @property
    def label(self) -> str:
        return f"{'best' if self.best else 'final'} {self.name}"


@dataclass
class Stat:
    """One score over the seeds of a setting that logged it (finite values only)."""

    mean: float | None = None
    std: float | None = None  # sample standard deviation; None for a single seed
    top: float | None = None  # the best single seed's value
    n: int = 0


@dataclass
class Group:
    setting: dict[str, str]  # the swept values other than the seed
    jobs: list[Job]
    stats: list[Stat] = field(default_factory=list)  # one per column

    def count(self, status: str) -> int:
        return sum(job.status == status for job in self.jobs)


def named(setting: dict[str, str]) -> str:
    """A setting as its non-empty `key=value` pairs (`default` when it sets nothing)."""
    return " ".join(f"{k}={v}" for k, v in setting.items() if v) or "default"


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
    scores = read_scores(path, result)
    series = scores.get(metric, [])
    finite = [v for v in series if math.isfinite(v)]
    job.final = series[-1] if series else None
    if finite:
        job.best = max(finite) if higher_is_better(metric) else min(finite)
    job.last = {key: values[-1] for key, values in scores.items() if values}
    return job


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


def stat(values: Sequence[float | None], higher: bool) -> Stat:
    done = [v for v in values if v is not None and math.isfinite(v)]
    if not done:
        return Stat()
    std = statistics.stdev(done) if len(done) > 1 else None
    return Stat(statistics.fmean(done), std, max(done) if higher else min(done), len(done))


def group_jobs(jobs: Sequence[Job], keys: Sequence[str], columns: Sequence[Column]) -> list[Group]:
    """One group per setting (the values of `keys`), ranked by the mean of the first column."""
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        values = tuple(job.overrides.get(k, "") for k in keys)
        groups.setdefault(values, Group(dict(zip(keys, values)), [])).jobs.append(job)
    for group in groups.values():
        group.jobs.sort(key=lambda j: natural(j.overrides.get(SEED, "")))
        for c in columns:
            group.stats.append(stat([j.score(c) for j in group.jobs], higher_is_better(c.name)))
    sign = -1 if higher_is_better(columns[0].name) else 1

    def rank(g: Group) -> tuple:
        mean = g.stats[0].mean
        return (mean is None, sign * (mean or 0), natural(" ".join(g.setting.values())))

    return sorted(groups.values(), key=rank)


def fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def shorten(text: str, width: int = ERROR_CHARS) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def job_columns(metric: str, extras: Sequence[str], coverage: bool = True) -> list[Column]:
    first = [Column(metric), Column(metric, True)] + ([Column(COVERAGE)] if coverage else [])
    return [*first, *map(Column, extras)]


def score_names(jobs: Sequence[Job], metric: str, chosen: Sequence[str] | None = None) -> list[str]:
    """The score columns after `metric`'s: `chosen`, or every scalar val/* score a job logged
    (less the floors and the wall clock) and CAS (a run's cas.json), EXTRA's first."""
    logged = {k for job in jobs for k in job.last if k.startswith("val/") or k in CAS}
    if chosen:
        unknown = [c for c in chosen if c not in logged]
        if unknown:
            have = ", ".join(sorted(logged)) or "none"
            raise GanError(f"no job logged {', '.join(unknown)}; the scores are: {have}.")
        return list(chosen)
    skip = {metric, COVERAGE, "val/elapsed_s"}
    rest = sorted(k for k in logged if k not in skip and not k.endswith("_floor"))
    return [k for k in EXTRA if k in rest] + [k for k in rest if k not in EXTRA]


def header(keys: Sequence[str], columns: Sequence[Column]) -> list[str]:
    return ["job", *keys, "status", *(c.label for c in columns), "time (s)", "error"]


def short_value(text: str) -> str:
    """An override as people read it: Optuna's 0.00010391172048651328 as 0.0001039."""
    value = number(text)
    return fmt(value) if value is not None and len(text) > 8 else text


def raw_number(value: float | None) -> str:
    return "" if value is None else repr(value)


def row(job: Job, keys: Sequence[str], columns: Sequence[Column], raw: bool = False) -> list[str]:
    """One line of the table: rounded for people, or at full precision for report.csv."""
    num = raw_number if raw else fmt
    values = [job.overrides.get(k, "") for k in keys]
    return [
        job.name,
        *(values if raw else map(short_value, values)),
        job.status,
        *(num(job.score(c)) for c in columns),
        fmt(job.seconds, 6),
        job.error if raw else shorten(job.error),
    ]


def group_header(keys: Sequence[str], columns: Sequence[Column], raw: bool = False) -> list[str]:
    if raw:
        scores = [f"{c.label} {s}" for c in columns for s in ("mean", "std", "top seed")]
    else:
        scores = [f"{c.label} {s}" for c in columns for s in ("mean ± std", "top seed")]
    return [*keys, "seeds", "failed", "diverged", *scores, "jobs"]


def mean_std(s: Stat) -> str:
    return fmt(s.mean) + ("" if s.std is None else f" ± {fmt(s.std, 2)}")


def group_row(group: Group, raw: bool = False) -> list[str]:
    values = list(group.setting.values())
    if raw:
        scores = [raw_number(x) for s in group.stats for x in (s.mean, s.std, s.top)]
    else:
        scores = [x for s in group.stats for x in (mean_std(s), fmt(s.top))]
        values = list(map(short_value, values))
    counts = [str(len(group.jobs)), str(group.count("failed")), str(group.count("diverged"))]
    return [*values, *counts, *scores, ", ".join(j.name for j in group.jobs)]


def write_tables(stem: Path, head: list[str], rows: list, raw_head: list[str], raw: list) -> None:
    """`<stem>.md` as printed, `<stem>.csv` at full precision."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [line(head), line(["---"] * len(head)), *(line(r) for r in rows)]
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text("\n".join(lines) + "\n"))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows([raw_head, *raw])

    atomic_write(stem.with_suffix(".csv"), write_csv)


def print_table(console: Console, title: str, head: list[str], rows: list, styles: list) -> None:
    table = Table(title=title)
    for name in head:
        numeric = name.startswith(("final", "best", "time", "seeds", "failed", "diverged"))
        table.add_column(escape(name), justify="right" if numeric else "left", overflow="fold")
    for cells, style in zip(rows, styles):
        table.add_row(*map(escape, cells), style=style)
    console.print(table)


def group_style(group: Group) -> str | None:
    bad = group.count("failed") + group.count("diverged")
    return "red" if group.count("failed") == len(group.jobs) else "yellow" if bad else None


def report(
    folders: Sequence[Path],
    metric: str = "val/fid",
    out: Path | None = None,
    per_job: bool = False,
    scores: Sequence[str] | None = None,
) -> list[Job]:
    """Print the tables; write report.csv, .md, .png (and report_jobs.csv, .md) into `out`.
    `scores`: the columns after `metric`'s final and best value (every logged score)."""
    jobs = collect(folders, metric)
    keys = swept_keys(jobs)
    columns = job_columns(metric, score_names(jobs, metric, scores), coverage=not scores)
    grouped = len({job.overrides.get(SEED) for job in jobs}) > 1 and not per_job
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if not console.is_terminal:  # piped or captured: no folding at 80 columns
        console.width = max(console.width, 300)
    out = out or folders[0]
    out.mkdir(parents=True, exist_ok=True)

    head, stem = header(keys, columns), out / ("report_jobs" if grouped else "report")
    rows = [row(job, keys, columns) for job in jobs]
    styles = [STYLES.get(job.status) for job in jobs]
    print_table(console, f"{len(jobs)} jobs, ranked by best {metric}", head, rows, styles)
    write_tables(stem, head, rows, head, [row(job, keys, columns, True) for job in jobs])
    wrote = [f"{stem.name}.csv", f"{stem.name}.md"]

    def label(values: dict[str, str]) -> str:
        return ", ".join(f"{k}={values.get(k, '')}" for k in rest)

    if grouped:
        setting = [k for k in keys if k != SEED]
        x_key, rest = (setting or [SEED])[0], setting[1:]
        columns = [columns[1], columns[0], *columns[2:]]  # the best score first: the ranking
        groups = group_jobs(jobs, setting, columns)
        rows = [group_row(g) for g in groups]
        title = f"{len(groups)} settings, mean over {SEED}s, ranked by mean best {metric}"
        head, raw_head = group_header(setting, columns), group_header(setting, columns, True)
        print_table(console, title, head, rows, [group_style(g) for g in groups])
        write_tables(out / "report", head, rows, raw_head, [group_row(g, True) for g in groups])
        wrote = ["report.csv", "report.md", *wrote]
        points = [
            (g.setting.get(x_key, "all"), label(g.setting), g.stats[0].mean, g.stats[0].std)
            for g in groups
            if g.stats[0].mean is not None
        ]
        if not all(g.setting.get(x_key) for g in groups):  # no key set in every setting
            x_key, rest = "setting", []  # (several sweeps): one category per setting
            points = [
                (named(g.setting), "", g.stats[0].mean, g.stats[0].std)
                for g in groups
                if g.stats[0].mean is not None
            ]
        y_label = f"best {metric} (mean ± std over {SEED}s)"
    else:
        x_key, rest = (keys or ["job"])[0], keys[1:]
        points = [
            (j.overrides.get(x_key, "") if keys else j.name, label(j.overrides), j.best, None)
            for j in jobs
            if j.best is not None
        ]
        y_label = f"best {metric}"
        for name in ("report_jobs.csv", "report_jobs.md"):  # not an old grouped report's
            (out / name).unlink(missing_ok=True)

    if plot(out / "report.png", points, x_key, y_label, ", ".join(rest)):
        wrote.append("report.png")
    else:
        (out / "report.png").unlink(missing_ok=True)  # not an old sweep's plot
        console.print(f"no {metric} in any job: report.png is not drawn")
    console.print(f"wrote {', '.join(wrote)} to {out}")
    return jobs


@dataclass
class ReportOptions:
    """`python -m gan.report`'s key=value options (the folders are given bare)."""

    metric: str = "val/fid"  # the score to rank by
    out: str | None = None  # where the reports go (the first folder)
    per_job: bool = False  # one row per job even when seeds are swept
    columns: list[str] | None = None  # the scores after the metric's (every logged score)


def parse(argv: Sequence[str]) -> tuple[list[Path], DictConfig]:
    """Bare arguments are folders; the rest are key=value options (GanError on a mistake)."""
    folders = [Path(a) for a in argv if "=" not in a and not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    if flags:
        raise GanError(
            f"{flags[0]} is not an option: gan.report takes key=value options, e.g. "
            f"metric=val/kid per_job=true columns=[val/kid,val/precision] out=reports/."
        )
    cfg, _ = parse_options(
        [a for a in argv if "=" in a], ReportOptions, "python -m gan.report multirun/<date>/<time>"
    )
    if not folders:
        raise GanError("no sweep folder given: python -m gan.report multirun/<date>/<time>.")
    return folders, cfg


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: folders and key=value options; GanError -> `error: ...`, exit 1."""

    def run(args: list[str]) -> None:
        folders, cfg = parse(args)
        out = Path(cfg.out) if cfg.out else None
        report(folders, cfg.metric, out, cfg.per_job, list(cfg.columns) if cfg.columns else None)

    command(argv, __doc__, run)


try:  # the Hydra callback: gan.tools.report also works where Hydra is absent
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class SweepReport(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback: at the end of a sweep (`-m`), print `gan.report`'s table of its jobs
    and write its files into the sweep folder (conf/train.yaml enables it)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        if not folder.is_dir():
            return
        metric = str(config.get("optimized_metric") or "val/fid")
        print()
        try:
            report([folder], metric)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - the sweep itself is done
            print(f"no report for {folder} ({type(err).__name__}: {err})")
            return
        print(f"again, or across sweeps: python -m gan.report {folder}")
