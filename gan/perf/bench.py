"""Benchmark: our full Lightning training step against a plain PyTorch loop, in one process.

    python -m gan.bench --quick                      # dcgan at batch 128, a few minutes on 2 cores
    python -m gan.bench                              # every architecture at batch 64, 128, 256
    python -m gan.bench --models dcgan mlp --batch-sizes 128 --accelerator gpu

For each architecture and batch size, one after the other:
  (a) `trainer.fit` of our module with our DataModule and the default callbacks (the
      progress bar included; `trainer.enable_progress_bar=false` leaves it out);
  (b) the floor: a plain loop with the same networks, losses, optimizers and D:G ratio,
      fed from a float tensor already in memory.
It prints images/s (real images consumed per second, `batch_size * d_steps` per
iteration) for each, the ratio (a)/(b), peak RSS (and peak GPU memory), the FLOPs of one
iteration (torch.utils.flop_counter) and their share of this machine's matmul peak,
measured in the same run. Warm-ups first, then several timed repeats of (b) then (a):
images/s are medians. How (a) and (b) are interleaved (`--timing`):
  interleaved (the default on a CPU): one (b) iteration right after each (a) iteration, in
      the same fit; the ratio is the median over all pairs. A shared machine's drifts hit
      both sides of a pair alike: pairs seconds apart are far steadier than whole runs.
  blocks: whole runs of (a) and of (b), each iteration synced and timed, the order
      alternating per repeat; the ratio is the median of the repeats' ratios.
  span (the default on a GPU): as blocks, but synced only at the ends of the timed
      iterations, so the GPU runs ahead of Python as it does in training.
Results go to `outputs/bench/<date>_<time>/results.json` and `results.md` (or `--out`). `--profile N` adds
torch.profiler's view of N iterations of (a): `profile_<model>_<batch>.md` (the top ops;
on a GPU, how busy the GPU was) and a Chrome trace.

Data: the real MNIST test split from `--data-root` (default `../shared/mnist`), else
random uint8 images of the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from gan.perf.floor import compute_dtype
from gan.perf.timing import (
    Profile,
    matmul_peak,
    measure,
    run_lightning,
)
from gan.training.config import register

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose_cfg(
    model: str, batch_size: int, root: str | None, out: str, extra: list[str]
) -> DictConfig:
    register()
    data = [f"data.root={root}", "data.split=test", "data.download=false"] if root else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"model={model}",
                f"data.batch_size={batch_size}",
                "logger=csv",
                *data,
                *extra,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = out
    return cfg


def profile(
    cfg: DictConfig, args: argparse.Namespace, device: torch.device, out: Path, name: str
) -> dict[str, float]:
    """torch.profiler over `--profile` iterations of (a): `profile_<name>.md` and a trace."""
    prof = Profile(args.warmup, args.profile, device)
    run_lightning(cfg, args.profile, args.warmup, args.accelerator, extra=(prof,))
    return prof.report(out, name, args.overrides)


def load_images(cfg: DictConfig) -> torch.Tensor:
    """The training images as the model sees them: float, scaled and sized, (N, 1, S, S)."""
    dm = instantiate(cfg.data)
    dm.setup("fit")
    return dm.to_model_range(dm.train_set.images)


def epoch_overhead(
    root: str | None, out: str, extra: list[str], epochs: int = 4
) -> dict[str, float]:
    """What the default metrics, images and checkpoints add to a dcgan epoch, against none.

    Both runs go through the real entry (`gan.training.run.train`) for `epochs` epochs. The
    per-epoch cost is the median epoch after the first (which pays the warm-up); the
    one-off cost (classifier load, the real images' features, the GIF at the end) is
    what is left of the whole run's difference.
    """
    from gan.training.run import train  # the real entry, everything included

    res: dict[str, float] = {}
    for name, over in (
        ("bare", ["metrics.enabled=false", "callbacks=none", "logger=none"]),
        ("defaults", []),
    ):
        run = os.path.join(out, name)
        cfg = compose_cfg(
            "dcgan",
            128,
            root,
            run,
            [f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false", *over, *extra],
        )
        marks = os.path.join(out, f"{name}_marks.json")
        with open_dict(cfg):
            cfg.callbacks["epoch_timer"] = {"_target_": "gan.perf.timing.EpochTimer", "path": marks}
        t0 = time.perf_counter()
        train(cfg)
        res[f"{name}_run_s"] = time.perf_counter() - t0
        m = json.loads(Path(marks).read_text())
        res[f"{name}_epoch_s"] = statistics.median(b - a for a, b in zip(m[1:], m[2:]))
    res["epochs"] = epochs
    res["overhead"] = res["defaults_epoch_s"] / res["bare_epoch_s"] - 1
    res["one_off_s"] = (
        res["defaults_run_s"]
        - res["bare_run_s"]
        - epochs * (res["defaults_epoch_s"] - res["bare_epoch_s"])
    )
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m gan.bench", description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["mlp", "dcgan", "paddle", "upsample", "dcgan64"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128, 256])
    p.add_argument("--iters", type=int, default=30, help="timed iterations per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument(
        "--repeats", type=int, default=3, help="runs of (a) and (b); medians are reported"
    )
    p.add_argument("--quick", action="store_true", help="dcgan at batch 128 only")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument(
        "--timing",
        default="auto",
        choices=["auto", "interleaved", "blocks", "span"],
        help="interleaved (auto on a CPU): one (b) iteration after each (a) iteration, each "
        "pair timed side by side; blocks: whole runs of (a) and of (b), each iteration timed; "
        "span (auto on a GPU): whole runs, synced only at their ends, so a GPU runs ahead as in "
        "training",
    )
    p.add_argument(
        "--epoch-overhead",
        action="store_true",
        help="also time dcgan epochs with the default metrics/callbacks against none",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also run torch.profiler over N iterations of (a): profile_*.md, trace_*.json",
    )
    p.add_argument("--data-root", default=str(CONF.parents[1] / "shared" / "mnist"))
    p.add_argument(
        "--out",
        default=f"outputs/bench/{time.strftime('%Y-%m-%d_%H-%M-%S')}",
        help="the results' folder (a new one under outputs/bench/)",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both (a) and (b)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.models, args.batch_sizes, args.iters, args.repeats = ["dcgan"], [128], 20, 5
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    if args.timing == "auto":  # what the tables then say was done
        args.timing = "span" if device.type == "cuda" else "interleaved"
    root = args.data_root if Path(args.data_root, "MNIST", "raw").exists() else None
    peak, dtype = 0.0, torch.float32  # measured once, in the first configuration's dtype
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for bs in args.batch_sizes:
                cfg = compose_cfg(
                    model, bs, root, os.path.join(tmp, f"{model}_{bs}"), args.overrides
                )
                images = load_images(cfg)
                if not peak:
                    dtype = compute_dtype(cfg)
                    peak = matmul_peak(device, dtype)
                per = bs * cfg.step_ratio.d_steps
                m = measure(cfg, images, args, device)
                a, b = m["ours"], m["plain"]
                row = {
                    "model": model,
                    "batch_size": bs,
                    "ours_img_s": per / m["ours_s"],
                    "plain_img_s": per / m["plain_s"],
                    "ratio": m["ratio"],
                    "ratios": m["ratios"],
                    "gflop_per_iter": m["flops"] / 1e9,
                    "mflop_per_image": m["flops"] / per / 1e6,
                    "plain_share_of_peak": m["flops"] / m["plain_s"] / peak,
                    "ours_peak_rss_mb": a["peak_rss_mb"],
                    "plain_peak_rss_mb": b["peak_rss_mb"],
                    **{
                        f"{k}_peak_gpu_mb": v["peak_gpu_mb"]
                        for k, v in (("ours", a), ("plain", b))
                        if "peak_gpu_mb" in v
                    },
                }
                if args.profile:
                    name = f"{model}_{bs}"
                    row["profile"] = profile(cfg, args, device, Path(args.out), name)
                rows.append(row)
                print(
                    f"{model:9s} B={bs:<4d} ours {row['ours_img_s']:8.0f} img/s | plain "
                    f"{row['plain_img_s']:8.0f} img/s | ratio {row['ratio']:.3f} | "
                    f"{row['mflop_per_image']:.1f} MFLOP/img, {100 * row['plain_share_of_peak']:.0f}% "
                    f"of matmul peak",
                    flush=True,
                )
        overhead = (
            epoch_overhead(root, os.path.join(tmp, "epoch"), args.overrides)
            if args.epoch_overhead
            else None
        )
    write(rows, peak, dtype, device, Path(args.out), args, overhead)


def write(
    rows: list[dict[str, Any]],
    peak: float,
    dtype: torch.dtype,
    device: torch.device,
    out: Path,
    args: argparse.Namespace,
    overhead: dict[str, float] | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    machine = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads"
    )
    meta = {
        "machine": machine,
        "torch": torch.__version__,
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_dtype": str(dtype).removeprefix("torch."),
        "iters": args.iters,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "timing": args.timing,
        "overrides": args.overrides,
    }
    (out / "results.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "epoch_overhead": overhead}, indent=2) + "\n"
    )
    lines = [
        f"Machine: {machine}; torch {torch.__version__}; "
        f"{str(dtype).removeprefix('torch.')} matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s (measured in this run). Timing: {args.timing}, "
        f"{args.repeats} repeats of {args.iters} iterations. Overrides: "
        f"{' '.join(args.overrides) or 'none'}.",
        "",
        "| model | batch | ours img/s | plain img/s | ours / plain | each pair's ratio | MFLOP/image | plain % of peak | peak RSS ours / plain (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['ours_img_s']:.0f} | {r['plain_img_s']:.0f} | "
            f"{r['ratio']:.3f} | {' '.join(f'{x:.2f}' for x in r['ratios'])} | {r['mflop_per_image']:.1f} | {100 * r['plain_share_of_peak']:.0f}% | "
            f"{r['ours_peak_rss_mb']:.0f} / {r['plain_peak_rss_mb']:.0f} |"
        )
    if overhead:
        lines += [
            "",
            f"A dcgan epoch (batch 128, median of epochs 2 to {overhead['epochs']:.0f}) with "
            f"the default metrics, image callbacks and checkpoints: "
            f"{overhead['defaults_epoch_s']:.2f} s; bare: {overhead['bare_epoch_s']:.2f} s "
            f"(+{100 * overhead['overhead']:.1f}% per epoch). Once per run, the defaults "
            f"add {overhead['one_off_s']:.1f} s (classifier load, the real images' "
            f"features, the GIF).",
        ]
    for r in rows:
        if "profile" in r:
            lines += [
                "",
                f"Where the time goes in {r['model']} at batch {r['batch_size']}: "
                f"`profile_{r['model']}_{r['batch_size']}.md` (torch.profiler).",
            ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
