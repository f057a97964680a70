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
# The tiny runs' overrides, less those gan.bench sets itself (logger, batch_sizes=, accelerator=)
BENCH_TINY = tiny(drop=["logger", "data.batch_size", "trainer.accelerator", "trainer.devices"])


@pytest.mark.slow
def test_harness_writes_json_and_markdown(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    bench.main(
        [
            "models=[mlp]",
            "batch_sizes=[8]",
            "iters=3",
            "warmup=1",
            "repeats=1",
            f"data_root={tiny_root}",
            f"out={out}",
            "epoch_overhead=true",
            "profile=2",
            *BENCH_TINY,
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
    assert oh["batch_size"] == 8  # the first of batch_sizes
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
    bench.main(
        [
            "models=[mlp]",
            "batch_sizes=[8]",
            "iters=3",
            "warmup=1",
            "repeats=2",
            f"data_root={tiny_root}",
            f"out={out}",
            f"timing={timing}",
            *BENCH_TINY,
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
    opts, _ = bench.parse(["--quick"])
    out = Path(opts.out)
    assert out.parts[:2] == ("outputs", "bench") and out.name[:4].isdigit()  # a new folder


# ---- the command line: key=value options, like gan.sample's; the rest are Hydra overrides


def test_options_parse_into_the_schema() -> None:
    opts, overrides = bench.parse(
        ["models=[mlp,dcgan]", "batch_sizes=[64,128]", "iters=7", "out=/tmp/b", "timing=blocks"]
    )
    assert isinstance(opts, bench.BenchOptions) and overrides == []
    assert (opts.models, opts.batch_sizes, opts.iters, opts.out) == (
        ["mlp", "dcgan"],
        [64, 128],
        7,
        "/tmp/b",
    )
    assert (opts.warmup, opts.repeats, opts.timing, opts.quick) == (5, 3, "blocks", False)
    default, _ = bench.parse([])
    assert default.models == bench.MODELS and default.batch_sizes == [64, 128, 256]
    assert default.timing == "interleaved"  # auto, on a CPU


def test_quick_sets_what_is_not_given() -> None:
    for argv in (["--quick"], ["quick=true"]):
        opts, _ = bench.parse(argv)
        assert (opts.models, opts.batch_sizes, opts.iters, opts.repeats) == (
            ["dcgan"],
            [128],
            20,
            5,
        )
    opts, _ = bench.parse(["--quick", "iters=2", "warmup=1", "repeats=1"])
    assert (opts.models, opts.iters, opts.warmup, opts.repeats) == (["dcgan"], 2, 1, 1)


def test_other_keys_are_hydra_overrides() -> None:
    argv = ["trainer.precision=bf16-mixed", "iters=2", "perf.channels_last=true", "seed=3"]
    opts, overrides = bench.parse([*argv, "+extra.key=1", "~callbacks.rich_progress_bar"])
    assert opts.iters == 2
    assert overrides == [
        "trainer.precision=bf16-mixed",
        "perf.channels_last=true",
        "seed=3",  # a key of conf/train.yaml, not a near miss of an option
        "+extra.key=1",
        "~callbacks.rich_progress_bar",
    ]


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    message = str(info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert "Traceback" not in capsys.readouterr().err
    return message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--models", "mlp", "dcgan"], "write models=[mlp,dcgan]."),
        (["--batch-sizes", "64", "iters=2"], "write batch_sizes=[64]."),
        (["--iters", "5"], "write iters=5."),
        (["--epoch-overhead"], "write epoch_overhead=true."),
        (["--nope"], "gan.bench takes key=value options, e.g. `python -m gan.bench models="),
        (["iter=5"], "unknown option 'iter': did you mean iters=?"),
        (["modles=[mlp]"], "did you mean models=?"),
        (["model=dcgan"], "write models=[dcgan]."),
        (["data.batch_size=32"], "write batch_sizes=[32]."),
        (["++data.batch_size=64"], "write batch_sizes=[64]."),
        (["trainer.accelerator=gpu"], "set for each run by the option accelerator"),
        (["out=/proc/bench"], "/proc does not accept new folders"),
        (["models=[nope]"], "no model nope in conf/model/; the models are dcgan,"),
        (["batch_sizes=[0]"], "give sizes >= 1"),
        (["iters=0"], "iters=0 is invalid: it must be >= 1."),
        (["timing=fast"], "use one of auto, interleaved, blocks, span."),
        (["repeats=many"], "repeats='many' is invalid: it must be of type int."),
        (["stray"], "argument 'stray' is not key=value"),
    ],
)
def test_mistakes_are_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in one_line_error(argv, capsys)


def test_a_bad_override_is_one_line_before_any_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "measure", lambda *a, **k: pytest.fail("measured"))
    message = one_line_error(["models=[mlp]", "trainer.precison=bf16-mixed"], capsys)
    assert "trainer.precison=bf16-mixed" in message and "Key 'precison' not in" in message
    message = one_line_error(["models=[mlp]", "trainer.log_every_n_steps=abc"], capsys)
    assert "could not be converted to Integer" in message
    message = one_line_error(["models=[mlp,dcgan]", "optimizer.lr=0"], capsys)
    assert "optimizer.lr=0.0 is out of range" in message  # the training config's own checks


def test_help_prints_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--help", "-h"):
        bench.main([flag, "iters=0"])  # --help wins over anything else
        doc = capsys.readouterr().out
        for option in bench.OPTIONS:
            assert f"\n    {option} " in doc, option
        assert "python -m gan.bench --quick" in doc and "models=[" in doc


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
    assert len(SCRIPTS) == 12


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


def test_the_conditioning_study_trains_each_condition_per_seed_and_averages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conditional = importlib.import_module("bench.conditional")
    trained: list[tuple[str, list[str]]] = []

    def fake_run(name, epochs, args, runs, select=None):  # what trains, and a finished row
        trained.append((name, list(select)))
        ok = name != "acgan-seed1"  # one failed seed: left out of the means, counted
        accuracy = {"concat-seed0": 0.98, "concat-seed1": 0.96}.get(name, 0.5)
        status = "ok" if ok else "diverged"
        return {"recipe": name, "status": status, "label_accuracy": accuracy, "seconds": 60.0}

    monkeypatch.setattr(conditional, "run", fake_run)

    def fake_cas(folder: Path, args: object) -> dict:
        if folder.name == "acgan-seed0":  # its CAS failed: the study goes on, and says so
            return {"cas_error": "python -m gan.cas exited with 1"}
        return {"cas": 0.9, "cas_real": 0.98, "cas_n": 8000, "cas_ema": True}

    monkeypatch.setattr(conditional, "cas", fake_cas)
    args = ["--recipes", "--conditions", "concat", "acgan", "--seeds", "0", "1"]
    conditional.main([*args, "--out", str(tmp_path), "--", "noise.dim=64"])
    assert trained[0] == ("concat-seed0", ["condition=concat", "seed=0"])
    assert [name for name, _ in trained] == [
        "concat-seed0",
        "concat-seed1",
        "acgan-seed0",
        "acgan-seed1",
    ]
    table = (tmp_path / "conditions.md").read_text()
    assert "| `concat` | 2 of 2 | 0.970 ± 0.014 | 0.900 ± 0.000 |" in table
    assert "| `acgan` | 1 of 2 | 0.500 | — |" in table
    assert "CAS failed for acgan-seed0 (python -m gan.cas exited with 1)" in table
    assert "The default run with `condition=<c> noise.dim=64`" in table
    assert "(8,000 fakes of the EMA G)" in table  # and the command that makes it, in full:
    assert (
        "`python -m bench.conditional --recipes --conditions concat acgan --seeds 0 1 -- noise.dim=64`"
        in table
    )
    assert not (tmp_path / "results.md").exists()  # --recipes with none: no recipe ran
    rows = json.loads((tmp_path / "conditions.json").read_text())["rows"]
    assert [r["seed"] for r in rows] == [0, 1, 0, 1] and "cas" not in rows[3]
    assert rows[2]["cas_error"] == "python -m gan.cas exited with 1"


def test_a_finished_run_is_reused_only_with_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bench that reads a run trained with other settings would print another run's
    figures: a setting missing, added or changed stops it; one whose CAS fails goes on."""
    import argparse
    import subprocess

    recipes = importlib.import_module("bench.recipes")
    conditional = importlib.import_module("bench.conditional")
    folder = tmp_path / "runs" / "concat-seed0"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "result.json").write_text('{"status": "ok"}')
    select = ["condition=concat", "seed=0"]
    # what Hydra kept of the run's command line, as typed (hydra.run.dir is not among them)
    typed = common.train_command(
        [*select, "overwrite=true", "noise.dim=64"], data_root="d", split="test"
    )
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in typed[3:]))

    def no_training(*a: object, **k: object) -> None:
        raise AssertionError("a reusable run was retrained")

    monkeypatch.setattr(common, "train", no_training)
    args = argparse.Namespace(reuse=True, overrides=["noise.dim=64"], split="test", data_root="d")
    assert (
        recipes.run("concat-seed0", None, args, tmp_path / "runs", select=select)["status"] == "ok"
    )
    for overrides, why in (
        (["noise.dim=8"], r"noise.dim=64 \(now 8\)"),  # changed
        ([], r"noise.dim=64 \(now \(unset\)\)"),  # the run had one more
        (["noise.dim=64", "loss=bce"], r"loss=\(unset\) \(now bce\)"),  # one less
        (["noise.dim=64", "noise.dim=8"], r"noise.dim=64 \(now 8\)"),  # the last one wins
    ):
        args.overrides = overrides
        with pytest.raises(SystemExit, match=why + "; retrain it with --fresh"):
            recipes.run("concat-seed0", None, args, tmp_path / "runs", select=select)
    # the study checks every run it would reuse before it trains any
    args = ["--recipes", "--conditions", "concat", "--seeds", "1", "0", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="noise.dim=64 \\(now \\(unset\\)\\)"):
        conditional.main([*args, "--data-root", "d", "--split", "test"])

    def failing(cmd: list[str], check: bool = True, capture: bool = False) -> object:
        if check:
            raise subprocess.CalledProcessError(1, cmd)
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(common, "run", failing)
    scores = conditional.cas(folder, argparse.Namespace(data_root="d"))
    assert scores == {"cas_error": "python -m gan.cas exited with 1"}


def test_the_stacked_bench_reports_each_seed_and_the_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacked = importlib.import_module("bench.stacked")
    trained: list[list[str]] = []
    scores = {0: (1000, 0.05, 900.0), 1: (996, 0.09, 1000.0), 2: None}  # seed 2 fails

    def fake_train(overrides: list[str], **kwargs: object) -> None:
        trained.append(list(overrides))
        folder = Path(overrides[0].partition("=")[2])
        seed = int(folder.name)
        (folder / "csv").mkdir(parents=True)
        (folder / "result.json").write_text(
            json.dumps({"status": "failed" if scores[seed] is None else "ok"})
        )
        modes, kl, seconds = scores[seed] or (0, 0, 0)
        (folder / "csv" / "metrics.csv").write_text(
            "epoch,step,train/d_loss,val/modes,val/kl,val/fid,val/elapsed_s\n"
            "0,10,0.5,,,,\n"
            f"11,20,,{modes},{kl},300.0,{seconds}\n"
        )

    monkeypatch.setattr(common, "train", fake_train)
    stacked.main(["--out", str(tmp_path), "--", "trainer.max_epochs=12"])
    assert trained[0][2:] == ["experiment=stacked_mnist", "seed=0", "trainer.max_epochs=12"]
    table = (tmp_path / "results.md").read_text()
    assert "| 0 | 1000 | 0.050 | 300.0 | 12 | 900 |" in table
    assert "| 2 | failed | | | | |" in table
    assert "| mean ± std | 998.0 ± 2.8 | 0.070 ± 0.028 |" in table
    # a failed seed leaves every target unmet, whatever the others reached
    assert "modes >= 995 (not met: 1 of 3 seed(s) without it)" in table
    assert "every seed within 30 minutes (not met: 1 of 3 seed(s) without it)" in table
    assert "`python -m bench.stacked -- trainer.max_epochs=12`" in table
    # a finished run is read again, not retrained; with other settings the bench stops
    for seed in (0, 1):
        overrides = common.train_command(
            ["experiment=stacked_mnist", f"seed={seed}", "trainer.max_epochs=12"],
            data_root=common.DATA_ROOT,
            split="test",
        )[3:]
        hydra = tmp_path / "runs" / str(seed) / ".hydra"
        hydra.mkdir()
        (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    trained.clear()
    stacked.main(["--out", str(tmp_path), "--seeds", "0", "1", "--", "trainer.max_epochs=12"])
    assert trained == []
    table = (tmp_path / "results.md").read_text()  # the two that finished: both met
    assert "modes >= 995 (met), KL <= 0.1 (met), every seed within 30 minutes (met)" in table
    with pytest.raises(SystemExit, match=r"trainer.max_epochs=12 \(now 20\)"):
        stacked.main(["--out", str(tmp_path), "--seeds", "0", "--", "trainer.max_epochs=20"])
