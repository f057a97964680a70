"""The benchmark harness runs end to end on tiny data and writes the tables it promises."""

from __future__ import annotations

import ast
import importlib
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

import bench.common as common
from gan.perf import bench
from gan.perf.floor import PlainLoop
from tests.helpers import SHARED_MNIST, tiny

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in ("__init__", "common")
)


@pytest.mark.slow
def test_harness_writes_json_and_markdown(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    overrides = tiny("data.batch_size=8", drop=["logger"])
    bench.main(
        [
            "--models",
            "mlp",
            "--batch-sizes",
            "8",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--data-root",
            str(tiny_root),
            "--out",
            str(out),
            "--epoch-overhead",
            "--profile",
            "2",
            *overrides,
        ]
    )
    result = json.loads((out / "results.json").read_text())
    (row,) = result["rows"]
    assert (row["model"], row["batch_size"]) == ("mlp", 8)
    assert row["ours_img_s"] > 0 and row["plain_img_s"] > 0
    assert row["ratio"] > 0 and row["ratios"] == [row["ratio"]]  # one repeat
    assert row["mflop_per_image"] > 0 and row["ours_peak_rss_mb"] > 0
    oh = result["epoch_overhead"]
    assert oh["bare_epoch_s"] > 0 and oh["defaults_epoch_s"] > 0
    md = (out / "results.md").read_text()
    assert "| mlp | 8 |" in md and "per epoch" in md
    assert result["meta"]["timing"] == "interleaved"  # auto, on a CPU
    assert row["profile"]["profiled_iters"] == 2 and row["profile"]["wall_ms_per_iter"] > 0
    prof = (out / "profile_mlp_8.md").read_text()
    assert "Self CPU" in prof and "aten::addmm" in prof  # the MLP's matmuls are in the top ops
    assert json.loads((out / "trace_mlp_8.json").read_text())["traceEvents"]


@pytest.mark.parametrize("timing", ["span", "blocks"])
def test_block_timings_and_the_runs_dtype_peak(tiny_root: Path, tmp_path: Path, timing) -> None:
    # span: the GPU's way (no sync inside the timed block), here on the CPU
    out = tmp_path / "bench"
    overrides = tiny("data.batch_size=8", drop=["logger"])
    bench.main(
        [
            "--models",
            "mlp",
            "--batch-sizes",
            "8",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--data-root",
            str(tiny_root),
            "--out",
            str(out),
            "--timing",
            timing,
            *overrides,
            "trainer.precision=bf16-mixed",
        ]
    )
    result = json.loads((out / "results.json").read_text())
    assert result["meta"]["timing"] == timing
    assert len(result["rows"][0]["ratios"]) == 2  # one ratio per repeat
    assert result["meta"]["matmul_peak_dtype"] == "bfloat16"
    (row,) = result["rows"]
    assert row["ours_img_s"] > 0 and row["plain_img_s"] > 0
    assert "bfloat16 matmul peak" in (out / "results.md").read_text()


def test_the_floor_clips_as_the_module_does(make_cfg) -> None:
    # plain SGD with lr 1, one update per net: each weight moves by its clipped gradient,
    # at most 1e-3
    cfg = make_cfg(
        "model=mlp",
        "step_ratio=d1g1",
        "optimizer=sgd",
        "optimizer.lr=1.0",
        "optimizer.clip_value=1e-3",
        "optimizer.g.momentum=0",
        "optimizer.d.momentum=0",
    )
    loop = PlainLoop(cfg, torch.rand(8, 1, 28, 28) * 2 - 1, torch.device("cpu"))
    before = [p.clone() for p in (*loop.g.parameters(), *loop.d.parameters())]
    loop.step()
    after = [*loop.g.parameters(), *loop.d.parameters()]
    moved = max((a - b).abs().max().item() for a, b in zip(before, after))
    assert 0 < moved <= 1e-3 + 1e-7


@pytest.mark.slow
def test_side_by_side_with_the_examples_on_the_real_test_split(tmp_path: Path) -> None:
    if not (SHARED_MNIST / "MNIST" / "raw").exists():
        pytest.skip("needs the MNIST test split in ../shared/mnist")
    examples = importlib.import_module("bench.examples")  # Hydra finds its networks by name
    out = tmp_path / "examples"
    examples.main(
        [
            "--iters",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--data-root",
            str(SHARED_MNIST),
            "--out",
            str(out),
        ]
    )
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["pair"] for r in rows] == ["dcgan", "lightning"]
    for r in rows:
        assert r["theirs_img_s"] > 0 and r["ours_img_s"] > 0
        assert r["ours_over_theirs"] == pytest.approx(r["ours_img_s"] / r["theirs_img_s"])
    md = (out / "results.md").read_text()
    assert "PyTorch's DCGAN example" in md and "Lightning's GAN example" in md


def test_plain_dcgan_reference_loop_reuses_fakes_and_scores(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bench.plain_dcgan: one epoch on the tiny split (48 training images, 6 iterations)
    plain = importlib.import_module("bench.plain_dcgan")
    d_inputs: list[torch.Tensor] = []
    g_train_calls = []

    def count_g(module, args, output) -> None:
        if module.training:
            g_train_calls.append(1)

    def record_d(module, args, output) -> None:
        d_inputs.append(args[0])

    class G(plain.Generator):
        def __init__(self) -> None:
            super().__init__()
            self.register_forward_hook(count_g)

    class D(plain.Discriminator):
        def __init__(self) -> None:
            super().__init__()
            self.register_forward_hook(record_d)

    monkeypatch.setattr(plain, "Generator", G)
    monkeypatch.setattr(plain, "Discriminator", D)
    rows = plain.train_plain(
        0,
        1,
        tiny_root,
        batch_size=8,
        val_size=16,
        num_samples=64,
        classifier_epochs=1,
        device="cpu",
    )
    (row,) = rows
    assert row["epoch"] == 1 and row["iterations"] == 6 and row["seconds"] > 0
    assert math.isfinite(row["fid"]) and math.isfinite(row["fid_floor"])
    assert {"kid", "mnist_score", "coverage"} <= row.keys()
    # one G forward per iteration (the fakes are reused), three D forwards: real, the
    # detached fakes, and the same fakes again for G's loss
    assert len(g_train_calls) == row["iterations"]
    assert len(d_inputs) == 3 * row["iterations"]
    for it in range(row["iterations"]):
        _, fake_for_d, fake_for_g = d_inputs[3 * it : 3 * it + 3]
        assert fake_for_g.data_ptr() == fake_for_d.data_ptr()
        assert fake_for_g.requires_grad and not fake_for_d.requires_grad
    # --max-seconds: stops within the epoch, after one iteration here, and validates then
    (cut,) = plain.train_plain(
        0,
        3,
        tiny_root,
        max_seconds=0.0,
        batch_size=8,
        val_size=16,
        num_samples=64,
        classifier_epochs=1,
        device="cpu",
    )
    assert cut["partial"] and (cut["epoch"], cut["iterations"]) == (1, 1)
    assert math.isfinite(cut["fid"])


def test_results_go_under_outputs_by_default() -> None:
    from gan.perf.bench import parse_args

    out = Path(parse_args(["--quick"]).out)
    assert out.parts[:2] == ("outputs", "bench") and out.name[:4].isdigit()  # a new folder


# ---- bench/: a package of scripts run as `python -m bench.<name>`, sharing bench.common


def test_train_command_and_how_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = common.train_command(
        ["experiment=fast_mnist", "hydra.run.dir=/tmp/r"], data_root="/data", split="test"
    )
    assert cmd[:3] == [sys.executable, "-m", "gan.train"] and "-m" not in cmd[3:]
    assert cmd[3:] == [
        "data.root=/data",
        "data.split=test",
        "data.download=false",
        "trainer.enable_progress_bar=false",
        "logger=csv",  # what read_metrics reads
        "experiment=fast_mnist",  # the caller's overrides last: they win
        "hydra.run.dir=/tmp/r",
    ]
    sweep = common.train_command(["seed=0,1"], data_root="d", split="train", sweep=True)
    assert sweep[3] == "-m" and sweep[-1] == "seed=0,1" and "data.split=train" in sweep
    calls = []
    monkeypatch.setattr(common.subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    common.train(["seed=1"], data_root="d", split="test", check=False, capture=True)
    ((ran, kw),) = calls
    assert ran == common.train_command(["seed=1"], data_root="d", split="test")
    assert kw["cwd"] == ROOT and not kw["check"] and kw["capture_output"] and kw["text"]
    # this repository's gan first, whatever else was on the path
    assert kw["env"]["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]


def test_val_curve_counts_epochs_done(tmp_path: Path) -> None:
    # As CSVLogger writes metrics.csv: the union of keys as columns, a row per logging call,
    # blank cells for keys not logged in it; Lightning's `epoch` is 0-based. Two epochs of a
    # run, then a resume that kept the file (and logs no floor again) and trained a third.
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "epoch,step,train/d_loss,train/g_loss,val/elapsed_s,val/fid,val/fid_floor,val/coverage\n"
        "0,49,1.2,0.8,,,,\n"
        "0,99,1.1,0.9,,,,\n"
        "0,99,,,25.5,300.0,20.0,9.0\n"
        "1,149,1.0,1.0,,,,\n"
        "1,199,,,50.0,150.0,,10.0\n"
        "2,249,0.9,1.1,,,,\n"
        "2,299,,,80.0,90.0,,10.0\n"
    )
    rows = common.read_metrics(tmp_path)
    assert len(rows) == 7 and rows[0]["val/fid"] == "" and rows[2]["val/fid"] == "300.0"
    curve = common.val_curve(tmp_path)
    assert [r["epoch"] for r in curve] == [1, 2, 3]  # epochs done: Lightning's epoch + 1
    assert [r["seconds"] for r in curve] == [25.5, 50.0, 80.0]  # val/elapsed_s
    assert curve[0] == {
        "epoch": 1,
        "seconds": 25.5,
        "fid": 300.0,
        "fid_floor": 20.0,
        "coverage": 9.0,
    }
    assert "fid_floor" not in curve[1] and "fid_floor" not in curve[2]  # once per run
    last = common.last_values(curve)
    assert (last["fid"], last["fid_floor"], last["epoch"]) == (90.0, 20.0, 3)


def test_status_and_mean_std(tmp_path: Path) -> None:
    assert common.status(tmp_path) is None  # no finished run
    (tmp_path / "result.json").write_text(json.dumps({"status": "diverged"}))
    assert common.status(tmp_path) == "diverged"
    assert common.mean_std([]) == "—"
    assert common.mean_std([1.23456]) == "1.235"
    assert common.mean_std([1.0, 2.0, 3.0], ".1f") == "2.0 ± 1.0"
    assert common.format_mean_std(48.2, None, ".0f") == "48"
    assert common.format_mean_std(None, 1.0, ".0f") == "—"
    assert (common.cell(3.14159, ".2f"), common.cell(None, ".2f")) == ("3.14", "—")
    line = common.machine()
    assert f"{os.cpu_count()} CPUs" in line and f"torch {torch.__version__}" in line


def test_bench_holds_scripts_and_results_only() -> None:
    folders = {p.name for p in (ROOT / "bench").iterdir() if p.is_dir()} - {"__pycache__"}
    assert folders == {"results"}, "results go to bench/results/<name>/"
    assert len(SCRIPTS) == 9


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_runs_as_a_module_and_writes_under_results(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = (ROOT / "bench" / f"{name}.py").read_text()
    assert "sys.path" not in source  # imported as bench.<name>: no path edits
    doc = ast.get_docstring(ast.parse(source))
    assert f"python -m bench.{name}" in doc and "python bench/" not in doc
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    assert f"bench/results/{name}" in capsys.readouterr().out  # --out's default
