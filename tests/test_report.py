"""`gan.report` on sweep folders built by hand: the table, report.csv/.md/.png, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gan.report import main

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
    main([str(tmp_path), "--metric", "val/kid", "--out", str(tmp_path / "out")])
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
    main([str(sweep), "--metric", "val/mnist_score"])
    assert "no val/mnist_score in any job: report.png is not drawn" in capsys.readouterr().out
    assert (sweep / "report.csv").exists() and not (sweep / "report.png").exists()


def test_several_sweeps_in_one_table(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_job(other, "0", ["optimizer.lr=5e-4"], ok(12.0, 1.0), fid=[12.0])
    main([str(sweep), str(other), "--out", str(tmp_path / "both")])
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
