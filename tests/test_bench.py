"""The benchmark harness runs end to end on tiny data and writes the tables it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gan import bench
from tests.conftest import TINY


@pytest.mark.slow
def test_harness_writes_json_and_markdown(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    overrides = [o for o in TINY if not o.startswith("logger=")] + ["data.batch_size=8"]
    bench.main(["--models", "mlp", "--batch-sizes", "8", "--iters", "3", "--warmup", "1",
                "--repeats", "1", "--data-root", str(tiny_root), "--out", str(out),
                "--epoch-overhead", *overrides])  # fmt: skip
    result = json.loads((out / "results.json").read_text())
    (row,) = result["rows"]
    assert (row["model"], row["batch_size"]) == ("mlp", 8)
    assert row["ours_img_s"] > 0 and row["plain_img_s"] > 0
    assert row["ratio"] == pytest.approx(row["ours_img_s"] / row["plain_img_s"])
    assert row["mflop_per_image"] > 0 and row["ours_peak_rss_mb"] > 0
    oh = result["epoch_overhead"]
    assert oh["bare_epoch_s"] > 0 and oh["defaults_epoch_s"] > 0
    md = (out / "results.md").read_text()
    assert "| mlp | 8 |" in md and "per epoch" in md
