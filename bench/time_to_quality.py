"""Seconds of training until `model=dcgan` reaches a given FID-like score, on MNIST on disk.

    python bench/time_to_quality.py                          # ../shared/mnist test split, 8 epochs
    python bench/time_to_quality.py --epochs 20 --targets 150 100 50 -- trainer.precision=bf16-mixed

Trains once (`python -m gan.train`, metrics every epoch), then reads `val/elapsed_s` (wall
time of training so far, validation included) and `val/fid` from the run's metrics.csv.
Prints the curve and the first time each target score is reached; writes
`bench/time_to_quality.json` and `.md` so later changes can be held to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--targets", type=float, nargs="+", default=[300.0, 200.0, 150.0, 100.0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "mnist"))
    p.add_argument("--split", default="test")
    p.add_argument("--run", default="/tmp/gan_time_to_quality")
    p.add_argument("--out", default=str(ROOT / "bench"))
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = p.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "gan.train",
        "model=dcgan",
        f"data.root={args.data_root}",
        f"data.split={args.split}",
        "data.download=false",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"hydra.run.dir={args.run}",
        "overwrite=true",  # --run is reused: each call trains it afresh
        *args.overrides,
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    with (Path(args.run) / "csv" / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/fid")]
    curve = [
        {
            "epoch": int(r["epoch"]),
            "seconds": float(r["val/elapsed_s"]),
            "fid": float(r["val/fid"]),
            "coverage": float(r["val/coverage"]),
        }
        for r in rows
    ]
    reached = {
        str(t): next((c["seconds"] for c in curve if c["fid"] <= t), None) for t in args.targets
    }
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "time_to_quality.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "split": args.split,
                "overrides": args.overrides,
                "curve": curve,
                "seconds_to_fid": reached,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        f"`model=dcgan` on the MNIST `{args.split}` split, {machine}; overrides: "
        f"{' '.join(args.overrides) or 'none'}.",
        "",
        "| epoch | seconds | val/fid | coverage |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c['epoch']} | {c['seconds']:.0f} | {c['fid']:.1f} | {c['coverage']:.0f} |"
        for c in curve
    ]
    lines += ["", "| FID-like target | seconds to reach it |", "|---|---|"]
    lines += [
        f"| ≤ {t} | {'not reached' if s is None else f'{s:.0f}'} |" for t, s in reached.items()
    ]
    (out / "time_to_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
