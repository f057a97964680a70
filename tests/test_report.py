"""`gan.report` on sweep folders built by hand: the table, report.csv/.md/.png, errors."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure

from gan.tools.report import higher_is_better, main
from gan.tools.report_plot import log_x
from gan.tools.report_scores import read_wandb
from tests.helpers import cli_error

LONG_ERROR = (
    "GanError: optimizer.lr=-1.0 is out of range: it must be > 0. Fix it with optimizer.lr=... "
    "and this tail is only here to make the reason longer than the table shows\nsecond line"
)


def make_job(
    sweep: Path,
    name: str,
    overrides: list[str],
    result: dict | None = None,
    fid: list[float] | None = None,
    coverage: list[float] | None = None,
) -> Path:
    """A job folder as `gan.train` leaves it; `fid` and `coverage` are logged once per epoch."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if result is not None:
        (job / "result.json").write_text(json.dumps(result))
    if fid is not None:
        (job / "csv").mkdir()
        head = "epoch,step,train/d_loss,train/g_loss,val/coverage,val/fid\n"
        lines = []
        for epoch, value in enumerate(fid):  # sparse rows, as CSVLogger writes them
            lines.append(f"{epoch},{epoch * 10 + 5},0.7,0.8,,\n")
            cov = coverage[epoch] if coverage else ""
            lines.append(f"{epoch},{epoch * 10 + 9},,,{cov},{value}\n")
        (job / "csv" / "metrics.csv").write_text(head + "".join(lines))
    return job


def ok(value: float | None, seconds: float) -> dict:
    return {"status": "ok", "metric": "val/fid", "value": value, "seconds": seconds, "error": None}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Three jobs over optimizer.lr: two finished (job 1 has the best FID), one failed."""
    root = tmp_path / "multirun" / "2024-05-01" / "12-00-00"
    make_job(
        root,
        "0",
        ["optimizer.lr=1e-4", "model=mlp"],
        ok(25.0, 12.5),
        fid=[30.0, 20.0, 25.0],
        coverage=[0.5, 0.6, 0.55],
    )
    make_job(
        root,
        "1",
        ["optimizer.lr=2e-3", "model=mlp"],
        ok(10.0, 13.0),
        fid=[40.0, 15.0, 10.0],
        coverage=[0.4, 0.7, 0.8],
    )
    make_job(
        root,
        "2",
        ["optimizer.lr=-1", "model=mlp"],
        {
            "status": "failed",
            "metric": "val/fid",
            "value": None,
            "seconds": 0.1,
            "error": LONG_ERROR,
        },
    )
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_table_files_ranking_and_reasons(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    main([str(sweep)])
    printed = capsys.readouterr().out
    assert "optimizer.lr" in printed and "model" not in printed  # only what differs
    assert printed.index("│ 1 ") < printed.index("│ 0 ") < printed.index("│ 2 ")
    assert "failed" in printed and "GanError: optimizer.lr=-1.0 is out of range" in printed
    assert "second line" not in printed and "…" in printed  # first line, shortened

    with (sweep / "report.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["1", "0", "2"]  # best FID first, no FID last
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert [r["optimizer.lr"] for r in rows] == ["2e-3", "1e-4", "-1"]
    assert (float(rows[1]["final val/fid"]), float(rows[1]["best val/fid"])) == (25.0, 20.0)
    assert (float(rows[0]["final val/fid"]), float(rows[0]["best val/fid"])) == (10.0, 10.0)
    assert float(rows[0]["final val/coverage"]) == 0.8
    assert rows[0]["time (s)"] == "13" and rows[1]["time (s)"] == "12.5"
    assert rows[2]["best val/fid"] == "" and rows[2]["error"].startswith("GanError: optimizer")
    assert rows[0]["error"] == ""

    md = (sweep / "report.md").read_text().splitlines()
    assert md[0].startswith("| job | optimizer.lr | status | final val/fid | best val/fid |")
    assert md[1].startswith("| --- |")
    assert md[2].startswith("| 1 | 2e-3 | ok | 10 | 10 | 0.8 | 13 |")
    assert md[4].startswith("| 2 | -1 | failed |") and "out of range" in md[4]
    assert (sweep / "report.png").stat().st_size > 1000


def test_other_metric_falls_back_to_result_json(tmp_path: Path) -> None:
    make_job(
        tmp_path,
        "a",
        ["step_ratio=d1g1"],
        {"status": "ok", "metric": "val/kid", "value": 0.02, "seconds": 3, "error": None},
    )
    make_job(tmp_path, "b", ["step_ratio=d2g1"])  # no result.json: still running, or killed
    make_job(
        tmp_path,
        "c",
        ["step_ratio=d1g2"],
        {
            "status": "diverged",
            "metric": "val/kid",
            "value": float("inf"),
            "seconds": 2,
            "error": None,
        },
    )
    main([str(tmp_path), "metric=val/kid", f"out={tmp_path / 'out'}"])
    with (tmp_path / "out" / "report.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [
        ("a", "ok"),
        ("b", "running/killed"),
        ("c", "diverged"),
    ]
    assert float(rows[0]["best val/kid"]) == 0.02
    assert rows[2]["final val/kid"] == "inf" and rows[2]["best val/kid"] == ""
    assert (tmp_path / "out" / "report.png").exists()  # categorical x: step_ratio


def test_no_metric_anywhere_skips_the_plot(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    main([str(sweep), "metric=val/mnist_score"])
    assert "no val/mnist_score in any job: report.png is not drawn" in capsys.readouterr().out
    assert (sweep / "report.csv").exists() and not (sweep / "report.png").exists()


def test_several_sweeps_in_one_table(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_job(other, "0", ["optimizer.lr=5e-4"], ok(12.0, 1.0), fid=[12.0])
    main([str(sweep), str(other), f"out={tmp_path / 'both'}"])
    with (tmp_path / "both" / "report.csv").open(newline="") as f:
        jobs = [r["job"] for r in csv.DictReader(f)]
    assert jobs == ["12-00-00/1", "other/0", "12-00-00/0", "12-00-00/2"]


def test_a_single_run_shows_all_its_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = make_job(tmp_path, "run", ["model=mlp", "trainer.max_epochs=3"], ok(9.0, 2.0), fid=[9.0])
    main([str(run)])
    assert "model" in capsys.readouterr().out
    assert (run / "report.md").read_text().splitlines()[2].startswith("| run | mlp | 3 | ok |")


def test_clear_errors_for_missing_or_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty" / "0").mkdir(parents=True)  # a folder, but no job in it
    with pytest.raises(SystemExit, match=r"^error: .*empty holds no jobs"):
        main([str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match=r"^error: .*nowhere is not a folder"):
        main([str(tmp_path / "nowhere")])


def test_class_scores_get_columns_when_a_job_logs_them(tmp_path: Path) -> None:
    root = tmp_path / "multirun" / "cond"
    make_job(root, "0", ["condition=none"], ok(30.0, 5.0), fid=[40.0, 30.0])
    cond = make_job(root, "1", ["condition=projection"], ok(20.0, 6.0))
    (cond / "csv").mkdir()
    (cond / "csv" / "metrics.csv").write_text(
        "epoch,step,val/fid,val/label_accuracy,val/intra_fid\n0,9,30.0,0.5,120.0\n1,19,20.0,0.93,98.5\n"
    )
    main([str(root)])
    table = (root / "report.md").read_text()
    assert "final val/label_accuracy" in table and "final val/intra_fid" in table
    assert "final val/modes" not in table  # no job logged it: no column
    line = next(r for r in table.splitlines() if r.startswith("| 1 "))
    assert "0.93" in line and "98.5" in line


def seed_sweep(root: Path, key: str = "loss", values: tuple[str, str] = ("bce", "hinge")) -> Path:
    """`-m seed=0,1,2 <key>=a,b`, numbered as Hydra does; seed 2 of a fails, seed 1 of b diverges.

    a: best FID 20, 18 (failed seed: none) -> mean 19, std sqrt(2), top 18, 1 failed
       final FID 22, 19 -> mean 20.5, std sqrt(4.5); coverage 0.7, 0.6 -> top 0.7 (higher)
    b: best FID 16, 14, 12 -> mean 14, std 2, top 12, 1 diverged
       final FID 17, nan, 12 -> mean 14.5 over the 2 finite, std sqrt(12.5); coverage 0.9 alone
    """
    nan = float("nan")
    runs = {
        (0, 0): ([30.0, 20.0, 22.0], [0.5, 0.6, 0.7], ok(22.0, 10.0)),
        (0, 1): ([40.0, 16.0, 17.0], None, ok(17.0, 11.0)),
        (1, 0): ([25.0, 18.0, 19.0], [0.4, 0.5, 0.6], ok(19.0, 12.0)),
        (1, 1): ([20.0, 14.0, nan], None, {"status": "diverged", "value": nan, "seconds": 5}),
        (2, 0): (None, None, {"status": "failed", "seconds": 1, "error": "GanError: boom"}),
        (2, 1): ([30.0, 12.0, 12.0], [0.8, 0.85, 0.9], ok(12.0, 13.0)),
    }
    for n, ((seed, v), (fid, cov, result)) in enumerate(runs.items()):
        overrides = [f"seed={seed}", f"{key}={values[v]}", "model=mlp"]
        make_job(root, str(n), overrides, {"metric": "val/fid", **result}, fid, cov)
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def spy_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures report.png is drawn from, still saved."""
    figures: list[Figure] = []
    savefig = Figure.savefig

    def spy(self: Figure, *args: object, **kwargs: object) -> None:
        figures.append(self)
        savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def test_seeds_are_grouped_per_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = spy_figures(monkeypatch)
    sweep = seed_sweep(tmp_path / "sweep")
    main([str(sweep)])
    printed = capsys.readouterr().out
    assert "6 jobs, ranked by best val/fid" in printed and "2 settings" in printed

    hinge, bce = read_csv(sweep / "report.csv")  # ranked by the mean of the best FID
    assert (hinge["loss"], bce["loss"]) == ("hinge", "bce")
    assert "seed" not in hinge and "model" not in hinge
    expect = {
        "hinge": {
            "best val/fid": (14.0, 2.0, 12.0),
            "final val/fid": (14.5, 12.5**0.5, 12.0),
            "final val/coverage": (0.9, None, 0.9),  # one seed: no std
        },
        "bce": {
            "best val/fid": (19.0, 2**0.5, 18.0),
            "final val/fid": (20.5, 4.5**0.5, 19.0),
            "final val/coverage": (0.65, 0.005**0.5, 0.7),  # the top seed: the highest
        },
    }
    for r in (hinge, bce):
        for label, (mean, std, top) in expect[r["loss"]].items():
            assert float(r[f"{label} mean"]) == pytest.approx(mean), label
            cell = r[f"{label} std"]
            assert cell == "" if std is None else float(cell) == pytest.approx(std), label
            assert float(r[f"{label} top seed"]) == pytest.approx(top), label
    assert [(r["seeds"], r["failed"], r["diverged"]) for r in (hinge, bce)] == [
        ("3", "0", "1"),
        ("3", "1", "0"),
    ]
    assert (hinge["jobs"], bce["jobs"]) == ("1, 3, 5", "0, 2, 4")

    md = (sweep / "report.md").read_text().splitlines()
    assert md[0].startswith("| loss | seeds | failed | diverged | best val/fid mean ± std |")
    assert md[2] == "| hinge | 3 | 0 | 1 | 14 ± 2 | 12 | 14.5 ± 3.5 | 12 | 0.9 | 0.9 | 1, 3, 5 |"
    assert md[3].startswith("| bce | 3 | 1 | 0 | 19 ± 1.4 | 18 | 20.5 ± 2.1 | 19 | 0.65 ± 0.071 |")

    jobs = read_csv(sweep / "report_jobs.csv")  # the per-job table is kept beside it
    assert [r["job"] for r in jobs] == ["5", "3", "1", "2", "0", "4"]
    assert jobs[-1]["status"] == "failed" and jobs[-1]["seed"] == "2"

    assert (sweep / "report.png").stat().st_size > 1000
    (ax,) = figures[0].axes
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bce", "hinge"]
    (bars,) = ax.containers  # one series: loss is the only swept value besides seed
    assert list(bars.lines[0].get_ydata()) == pytest.approx([19.0, 14.0])
    (low, high) = bars.lines[2][0].get_segments()[1][:, 1]
    assert (low, high) == pytest.approx((12.0, 16.0))  # hinge: 14 ± 2


def test_per_job_turns_the_grouping_off(tmp_path: Path) -> None:
    sweep = seed_sweep(tmp_path / "sweep")
    main([str(sweep)])
    assert (sweep / "report_jobs.csv").exists()
    main([str(sweep), "per_job=true"])
    rows = read_csv(sweep / "report.csv")
    assert [r["job"] for r in rows] == ["5", "3", "1", "2", "0", "4"]
    assert not (sweep / "report_jobs.csv").exists()  # no stale grouped report beside it


def test_one_run_with_a_seed_is_not_grouped(tmp_path: Path) -> None:
    run = make_job(tmp_path, "run", ["seed=3", "model=mlp"], ok(9.0, 2.0), fid=[9.0])
    main([str(run)])
    assert [r["job"] for r in read_csv(run / "report.csv")] == ["run"]
    assert not (run / "report_jobs.csv").exists()


@pytest.mark.parametrize(
    ("key", "values", "log"),
    [
        ("optimizer.lr", [1e-4, 2e-4], True),  # a learning rate, whatever its span
        ("optimizer.g.lr", [2e-4, 4e-4], True),
        ("optimizer.lr", [-1.0, 1e-4], False),  # no log axis through 0
        ("trainer.max_epochs", [1, 100], True),  # over a decade
        ("data.batch_size", [8, 80], False),  # exactly one decade
        ("model.hidden", [64, 128], False),
    ],
)
def test_log_x_for_learning_rates_and_wide_spans(key: str, values: list[float], log: bool) -> None:
    assert log_x(key, values) is log


def test_learning_rate_sweep_plots_on_a_log_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = spy_figures(monkeypatch)
    sweep = seed_sweep(tmp_path / "sweep", "optimizer.lr", ("1e-4", "2e-4"))
    main([str(sweep)])
    (ax,) = figures[0].axes
    assert ax.get_xscale() == "log"
    assert list(ax.containers[0].lines[0].get_xdata()) == [1e-4, 2e-4]
    assert (sweep / "report.png").exists()


def test_higher_is_better_scores() -> None:
    for name in ("val/precision", "val/recall", "val/density", "val/prdc_coverage", "val/modes"):
        assert higher_is_better(name), name
    for name in ("val/fid", "val/kid", "val/kl", "val/intra_fid"):
        assert not higher_is_better(name), name


def test_scores_whatever_the_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """csv, TensorBoard, W&B offline, none: each job's scores, from the files its logger wrote."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "sweep"
    many = make_job(root, "0", ["logger=many"], ok(8.0, 1.0), fid=[10.0, 8.0])
    tb = TensorBoardLogger(save_dir=many, name="tensorboard", version="")
    tb.log_metrics({"val/fid": 99.0, "val/density": 1.1}, step=0)  # csv wins; density is new
    tb.finalize("success")

    tb_job = make_job(root, "1", ["logger=tensorboard"], ok(6.0, 1.0))
    tb = TensorBoardLogger(save_dir=tb_job, name="tensorboard", version="")
    for step, (fid, precision) in enumerate([(9.0, 0.5), (5.0, 0.75), (6.0, 0.625)]):
        tb.log_metrics({"val/fid": fid, "val/precision": precision}, step=step)
    tb.finalize("success")

    wandb_job = make_job(root, "2", ["logger=wandb"], ok(7.5, 1.0))
    wb = WandbLogger(save_dir=str(wandb_job), offline=True, project="gan")
    fids = [20.0 - 0.0625 * i for i in range(200)]  # long enough to cross W&B's 32 KiB blocks
    fids[100] = 4.0
    for step, fid in enumerate(fids):
        wb.log_metrics({"val/fid": fid, "val/coverage": 0.25, "val/recall": 0.5}, step=step)
    wb.experiment.finish()

    final = {"val/fid": 3.0, "val/coverage": 0.125, "val/precision": 0.25}  # logger=none
    make_job(root, "3", ["logger=none"], {**ok(3.0, 1.0), "final": final})

    # Under load, W&B's service process may still be writing the file when finish() returns
    # (a CI run once read 151 of the 200 values): wait for it, not for a parse to pass.
    deadline = time.monotonic() + 60
    while len(read_wandb(wandb_job).get("val/fid", [])) < len(fids) and time.monotonic() < deadline:
        time.sleep(0.25)
    (record,) = (wandb_job / "wandb").glob("offline-run-*/run-*.wandb")
    assert record.stat().st_size > 32768
    assert read_wandb(wandb_job)["val/fid"] == fids

    main([str(root)])
    rows = {r["logger"]: r for r in read_csv(root / "report.csv")}
    got = {
        logger: tuple(
            float(r[c]) if r[c] else None
            for c in ("final val/fid", "best val/fid", "final val/coverage")
            + ("final val/precision", "final val/recall", "final val/density")
        )
        for logger, r in rows.items()
    }
    assert got == {
        "many": (8.0, 8.0, None, None, None, pytest.approx(1.1)),
        "tensorboard": (6.0, 5.0, None, 0.625, None, None),
        "wandb": (fids[-1], 4.0, 0.25, None, 0.5, None),
        "none": (3.0, 3.0, 0.125, 0.25, None, None),
    }

    cut = tmp_path / "killed" / "wandb" / "offline-run-20260101_000000-abc"
    cut.mkdir(parents=True)  # a job killed while W&B wrote: the records before the cut
    (cut / "run-abc.wandb").write_bytes(record.read_bytes()[:40000])
    assert 0 < len(read_wandb(tmp_path / "killed")["val/fid"]) < 200


def test_sweeps_over_different_keys_plot_one_category_per_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/study.py's shape: one sweep per variant, each setting a key of its own."""
    figures = spy_figures(monkeypatch)
    losses = seed_sweep(tmp_path / "losses")  # loss=bce / loss=hinge
    r1 = tmp_path / "r1"
    for n, seed in enumerate((0, 1)):
        make_job(r1, str(n), [f"seed={seed}", "stabilize.r1=1"], ok(9.0, 1.0), fid=[9.0 + n])
    main([str(losses), str(r1)])
    rows = read_csv(losses / "report.csv")
    assert [(r["loss"], r["stabilize.r1"]) for r in rows] == [("", "1"), ("hinge", ""), ("bce", "")]
    (ax,) = figures[0].axes
    assert ax.get_xlabel() == "setting"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert sorted(labels) == ["loss=bce model=mlp", "loss=hinge model=mlp", "stabilize.r1=1"]


def test_every_logged_score_has_a_column_and_columns_can_be_picked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """val/kid, val/mnist_score and val/coverage_entropy too; floors and the clock aside."""
    root = tmp_path / "sweep"
    for i, lr in enumerate(("1e-4", "2e-4")):
        final = {"val/fid": 20.0 + i, "val/kid": 1.5, "val/mnist_score": 9.1}
        final |= {"val/coverage_entropy": 2.3, "val/fid_floor": 5.0, "val/elapsed_s": 60.0}
        make_job(root, str(i), [f"optimizer.lr={lr}"], ok(20.0 + i, 60.0) | {"final": final})
    main([str(root)])
    head = (root / "report.csv").read_text().splitlines()[0]
    for score in ("val/kid", "val/mnist_score", "val/coverage_entropy"):
        assert f"final {score}" in head
    assert "floor" not in head and "elapsed" not in head
    main([str(root), "columns=[val/kid]"])
    head = (root / "report.csv").read_text().splitlines()[0].split(",")
    assert [h for h in head if h.startswith(("final", "best"))] == [
        "final val/fid",
        "best val/fid",
        "final val/kid",
    ]
    message = cli_error(main, str(root), "columns=[val/nope]")
    assert "no job logged val/nope" in message and "val/kid" in message
    assert "key=value options" in cli_error(main, str(root), "--metric", "val/kid")
