"""Low data, budget-matched: the default run on N training images (data.limit) with no
augmentation, DiffAugment or ADA, 3 seeds each, the same G updates for every cell; which
differences beat the seed-to-seed spread?

    python -m bench.low_data                    # 4 limits x 3 methods x 3 seeds: hours on 2 cores
    python -m bench.low_data --limits 100 --methods none ada --seeds 0 --steps 300   # a check

Each cell is `python -m gan.train seed=<s> data.limit=<N> trainer.max_steps=<steps>
trainer.max_epochs=-1 <the method's overrides>` on the MNIST test split (../shared/mnist),
into `<out>/runs/<N>_<method>/<seed>/` (a finished run is read again unless `--fresh`).
`trainer.max_steps` fixes the budget in optimizer steps, so every cell makes the same D and
G updates whatever its N (epochs would give N=100 a hundredth of the updates of all); the
only validation is at the budget's end (`trainer.val_check_interval`), against all of the
1,000 held-out images whatever N. The subset follows the seed (data.limit_seed), so the
methods of one seed share one subset and the spread over seeds includes the subset's.

Reports val/fid (the FID-like score of the project's classifier), mean ± std over seeds per
cell, and for each N: diffaug and ada against none, and ada against diffaug; a difference
of means counts as *real* when it exceeds twice its standard error, sqrt(s1^2/n1 + s2^2/n2),
as bench.study counts. Writes `<out>/results.json` and `<out>/results.md` (`--out`: default
bench/results/low_data).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from bench import common
from gan.training.config import StepRatioConfig

LIMITS = ["100", "500", "1000", "all"]  # data.limit; "all": no limit (8,999 images)
# method -> overrides on top of the default run
METHODS: dict[str, list[str]] = {
    "none": [],
    "diffaug": ["stabilize.diffaug=[translation,cutout]"],
    "ada": ["stabilize.ada=true"],  # ADA's default ops: translation and cutout too
}
COMPARISONS = (("diffaug", "none"), ("ada", "none"), ("ada", "diffaug"))
# Optimizer steps per iteration of the default run: D's then G's updates (d1g2: 3)
PER_ITERATION = StepRatioConfig().d_steps + StepRatioConfig().g_steps


def run_cell(limit: str, method: str, seed: int, args: argparse.Namespace) -> float | None:
    """The cell's final val/fid (None if the run failed), trained first unless it finished
    before (and not `--fresh`)."""
    folder = Path(args.out) / "runs" / f"{limit}_{method}" / str(seed)
    iterations = args.steps // PER_ITERATION
    common.train_or_reuse(
        folder,
        [
            f"seed={seed}",
            *([] if limit == "all" else [f"data.limit={limit}"]),
            f"trainer.max_steps={iterations * PER_ITERATION}",
            "trainer.max_epochs=-1",  # the budget is max_steps alone
            # one validation, at the budget's end: a 100-image epoch is 3 iterations
            "trainer.check_val_every_n_epoch=null",
            f"trainer.val_check_interval={iterations}",
            "callbacks=none",  # no per-epoch grids or checkpoints: tiny epochs stay cheap
            *METHODS[method],
        ],
        data_root=args.data_root,
        split=args.split,
        fresh=args.fresh,
        check=False,  # a failed cell is reported as such; the others go on
    )
    last = common.final_scores(folder)
    return None if last is None else last.get("fid")


def compare(a: list[float], b: list[float]) -> str:
    """`+d (real)` or `+d (within the spread)`: mean(a) - mean(b) against twice its SE."""
    if len(a) < 2 or len(b) < 2:
        return "—"  # no spread to compare with
    diff = statistics.mean(a) - statistics.mean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return f"{diff:+.1f} ({'real' if abs(diff) > 2 * se else 'within the spread'})"


def main(argv: list[str] | None = None) -> None:
    p = common.parser("low_data", __doc__)
    p.add_argument("--limits", nargs="+", default=LIMITS, help="data.limit values, or all")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--steps",
        type=int,
        default=3000,
        help="the budget: trainer.max_steps, optimizer steps (3000: 1000 D and 2000 G updates)",
    )
    common.add_data_args(p)
    common.add_out_arg(p, "low_data")
    p.add_argument("--fresh", action="store_true", help="retrain runs that finished before")
    args = p.parse_args(argv)
    for limit in args.limits:
        if limit != "all" and not limit.isdigit():
            p.error(f"--limits takes whole numbers or all, not {limit!r}")
    out = Path(args.out)
    fids = {
        (limit, method): [
            fid
            for seed in args.seeds
            if (fid := run_cell(limit, method, seed, args)) is not None and math.isfinite(fid)
        ]
        for limit in args.limits
        for method in args.methods
    }
    iterations = args.steps // PER_ITERATION
    cells = [
        {
            "limit": limit,
            "method": method,
            "overrides": METHODS[method],
            "val_fid": values,
            "mean": statistics.mean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "failed": len(args.seeds) - len(values),
        }
        for (limit, method), values in fids.items()
    ]
    pairs = [(a, b) for a, b in COMPARISONS if a in args.methods and b in args.methods]
    verdicts = {
        limit: {f"{a} vs {b}": compare(fids[limit, a], fids[limit, b]) for a, b in pairs}
        for limit in args.limits
    }
    meta = {
        "machine": common.machine(),
        "split": args.split,
        "seeds": args.seeds,
        "max_steps": iterations * PER_ITERATION,
        "iterations": iterations,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"meta": meta, "cells": cells, "comparisons": verdicts}, indent=2) + "\n"
    )
    lines = [
        f"`python -m bench.low_data --steps {args.steps}`: the default run on data.limit images "
        f"of the MNIST {args.split} split, {iterations} iterations each "
        f"(trainer.max_steps={iterations * PER_ITERATION}), seeds {args.seeds}; final val/fid "
        f"(1,000 fakes against the 1,000 held-out images), mean ± std over seeds. *real*: "
        f"the difference exceeds twice its standard error. {meta['machine']}.",
        "",
        "| data.limit | "
        + " | ".join(args.methods)
        + " | "
        + " | ".join(verdicts[args.limits[0]])
        + " |",
        "|---|" + "---|" * (len(args.methods) + len(pairs)),
    ]
    for limit in args.limits:
        scores = [common.mean_std(fids[limit, m], ".1f") for m in args.methods]
        lines.append(f"| {limit} | " + " | ".join([*scores, *verdicts[limit].values()]) + " |")
    failed = sum(c["failed"] for c in cells)
    if failed:
        lines += ["", f"{failed} run(s) failed or diverged: left out of the means."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
