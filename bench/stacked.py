"""Stacked MNIST at the papers' level: the `stacked_mnist` recipe, 3 seeds, against the
targets of at least 995 of the 1,000 modes and a KL of at most 0.1 (mean of the seeds),
within 30 minutes a seed.

    python -m bench.stacked                      # seeds 0, 1, 2: the recipe's own budget
    python -m bench.stacked --seeds 0 -- trainer.max_epochs=2    # a check; extra overrides last

Each seed is `python -m gan.train experiment=stacked_mnist seed=<s> <overrides>` on the MNIST
test split (../shared/mnist), into `<out>/runs/<s>/` (a finished run is read again, when it
was trained with the same settings, unless `--fresh`). Its scores are those of its last
validation: `val/modes` (modes holding at least one of the recipe's `metrics.num_samples`
fakes, of 1,000) and `val/kl` (KL of their mode histogram to uniform, in nats), each channel
read by the project's MNIST classifier (gan.metrics.stacked); `seconds` is the run's training
wall time with its validations. Writes `<out>/results.json` and `<out>/results.md`
(`--out`: default bench/results/stacked).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from bench import common

RECIPE = "experiment=stacked_mnist"
SCORES = ("modes", "kl", "fid", "seconds", "epoch")  # what each seed reports
MODES, KL, SECONDS = 995, 0.1, 30 * 60  # the targets: modes >= 995, KL <= 0.1, <= 30 min
# the table's columns after the seed: (score, its format, its mean's format or None)
COLUMNS = (
    ("modes", ".0f", ".1f"),
    ("kl", ".3f", ".3f"),
    ("fid", ".1f", ".1f"),
    ("epoch", ".0f", None),
    ("seconds", ".0f", ".0f"),
)


def run_seed(seed: int, overrides: list[str], args: argparse.Namespace) -> dict[str, float] | None:
    """The seed's last scores (modes, kl, fid, seconds, epoch), trained first unless it
    finished before; None when the run failed."""
    folder = Path(args.out) / "runs" / str(seed)
    common.train_or_reuse(
        folder,
        [RECIPE, f"seed={seed}", *overrides],
        data_root=args.data_root,
        split=args.split,
        fresh=args.fresh,
        check=False,  # a failed seed is reported as such; the others go on
    )
    last = common.final_scores(folder)
    return None if last is None else {k: v for k, v in last.items() if k in SCORES}


def verdict(
    values: list[float | None], target: float, higher: bool, summary: Callable[[list[float]], float]
) -> str:
    """Whether `summary` of every seed's value (the mean, or the worst) meets `target`; a seed
    that failed or logged no such score leaves it unmet, whatever the others reached."""
    missing = sum(v is None for v in values)
    if missing or not values:
        return f"not met: {missing} of {len(values)} seed(s) without it"
    value = summary([v for v in values if v is not None])
    return "met" if (value >= target if higher else value <= target) else "not met"


def main(argv: list[str] | None = None) -> None:
    p = common.parser("stacked", __doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("overrides", nargs="*", help="more gan.train overrides, after a --")
    common.add_data_args(p)
    common.add_out_arg(p, "stacked")
    p.add_argument("--fresh", action="store_true", help="retrain runs that finished before")
    args = p.parse_args(argv)
    runs = {seed: run_seed(seed, args.overrides, args) for seed in args.seeds}

    def each(key: str) -> list[float | None]:
        return [None if r is None else r.get(key) for r in runs.values()]

    targets = {
        "modes": verdict(each("modes"), MODES, True, statistics.mean),
        "kl": verdict(each("kl"), KL, False, statistics.mean),
        "seconds": verdict(each("seconds"), SECONDS, False, max),
    }
    command = " ".join(
        ["python -m bench.stacked", *(["--", *args.overrides] if args.overrides else [])]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": common.machine(), "split": args.split, "seeds": args.seeds}
    (out / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "command": command,
                "overrides": [RECIPE, *args.overrides],
                "runs": {str(s): r for s, r in runs.items()},
                "targets": targets,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        f"`{command}`: `{' '.join([RECIPE, *args.overrides])}` on the MNIST {args.split} "
        f"split, seeds {args.seeds}; the last validation's modes covered (of 1,000) and KL to "
        f"uniform, on the recipe's metrics.num_samples fakes. {meta['machine']}.",
        "",
        "| seed | modes | KL | val/fid | epochs | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for seed, r in runs.items():
        if r is None:
            lines.append(f"| {seed} | failed | | | | |")
            continue
        cells = [common.cell(r.get(k), spec) for k, spec, _ in COLUMNS]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    summary = [
        common.mean_std([v for v in each(k) if v is not None], spec) if spec else ""
        for k, _, spec in COLUMNS
    ]
    lines += [
        "| mean ± std | " + " | ".join(summary) + " |",
        "",
        f"Targets: modes >= {MODES} ({targets['modes']}), KL <= {KL} ({targets['kl']}), "
        f"every seed within {SECONDS // 60} minutes ({targets['seconds']}).",
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
