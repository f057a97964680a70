"""The benchmark harness runs end to end on tiny data and writes the tables it promises."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from gan import bench
from gan.perf.floor import PlainLoop
from tests.helpers import SHARED_MNIST, tiny

ROOT = Path(__file__).resolve().parents[1]


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
    spec = importlib.util.spec_from_file_location("examples", ROOT / "bench" / "examples.py")
    examples = importlib.util.module_from_spec(spec)
    sys.modules["examples"] = examples  # Hydra finds the example's networks by this name
    spec.loader.exec_module(examples)
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


def test_plain_dcgan_reference_loop_reuses_fakes_and_scores(tiny_root: Path) -> None:
    # bench/plain_dcgan.py: one epoch on the tiny split (48 training images, 6 iterations)
    spec = importlib.util.spec_from_file_location("plain_dcgan", ROOT / "bench" / "plain_dcgan.py")
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
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

    plain.Generator, plain.Discriminator = G, D
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
