"""A budget-matched study: every loss and every stabiliser, 3 seeds each, the same
iterations, on the MNIST test split; which differences beat the seed-to-seed spread?

    python -m bench.study                                  # ../shared/mnist, ~30 min on 2 cores
    python -m bench.study --epochs 4 --seeds 0 1 2 --variants base hinge diffaug

Each variant is one sweep, `python -m gan.train -m seed=0,1,2 experiment=<base>
trainer.max_epochs=<epochs> <its overrides>`, into `<out>/runs/<variant>/` (a finished
sweep is read again unless `--fresh`). All share the base recipe, the batch size and so
the number of iterations. `gan.report` then groups the jobs by setting (mean ± std over
seeds, written to `<out>/report.{csv,md,png}`), and this script compares each variant with
the base: a difference of means counts as real when it exceeds twice its standard error,
sqrt(s1^2/n1 + s2^2/n2), the seed-to-seed spread of both. Writes `<out>/results.md`
(`--out`: default bench/results/study).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bench import common
from gan.tools.report import Column, collect, group_jobs, report

# variant -> overrides on top of the base recipe; "base" is the recipe as it is
VARIANTS: dict[str, list[str]] = {
    "base": [],
    "minimax": ["loss=minimax"],
    "lsgan": ["loss=lsgan"],
    "hinge": ["loss=hinge"],
    "wgan_gp": ["loss=wgan_gp"],
    "rpgan": ["loss=rpgan"],
    "spectral_norm": ["stabilize.spectral_norm=true"],
    "r1": ["stabilize.r1=0.1", "stabilize.reg_every=4"],
    "rpgan_r1_r2": ["loss=rpgan", "stabilize.r1=0.1", "stabilize.r2=0.1", "stabilize.reg_every=4"],
    "diffaug": ["stabilize.diffaug=[translation,cutout]"],
    "no_ema": ["ema.enabled=false"],
}
# The base as the study ran it: fast_mnist at lr 2e-3 with beta2 0.99, one G update per D
# update and 100 latents, the first tuning of the recipe (it now runs lr 1e-3, which stalls
# less late but learns slower early, d1g2 and 8 latents).
BASE_OVERRIDES = [
    "step_ratio=d1g1",
    "noise.dim=100",
    "optimizer.lr=2e-3",
    "optimizer.g.betas=[0.5,0.99]",
    "optimizer.d.betas=[0.5,0.99]",
]
SCORES = ("val/fid", "val/precision", "val/recall", "val/coverage", "val/elapsed_s")


def sweep(variant: str, args: argparse.Namespace, folder: Path) -> None:
    jobs = [folder / str(i) for i in range(len(args.seeds))]
    if not args.fresh and all(common.status(j) in ("ok", "diverged") for j in jobs):
        print(f"reusing the finished sweep {folder}", flush=True)
        return
    common.train(
        [
            f"seed={','.join(map(str, args.seeds))}",
            f"experiment={args.base}",
            *(BASE_OVERRIDES if args.base == "fast_mnist" else []),
            f"trainer.max_epochs={args.epochs}",
            f"hydra.sweep.dir={folder}",
            "overwrite=true",  # an unfinished (or --fresh) sweep is redone in its folder
            *VARIANTS[variant],
        ],
        data_root=args.data_root,
        split=args.split,
        sweep=True,
    )


def main(argv: list[str] | None = None) -> None:
    p = common.parser("study", __doc__)
    p.add_argument("--base", default="fast_mnist", help="the recipe every variant starts from")
    p.add_argument("--epochs", type=int, default=4, help="the budget: epochs of the split")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    common.add_data_args(p)
    common.add_out_arg(p, "study")
    p.add_argument("--fresh", action="store_true", help="retrain sweeps that finished before")
    args = p.parse_args(argv)
    out = Path(args.out)
    folders = [out / "runs" / v for v in args.variants]
    for variant, folder in zip(args.variants, folders):
        sweep(variant, args, folder)
    report(folders, "val/fid", out)  # the grouped table and plot, as a user gets them

    columns = [Column(s) for s in SCORES]  # final values: what the budget bought
    by_variant = {}
    for variant, folder in zip(args.variants, folders):
        (group,) = group_jobs(collect([folder], "val/fid"), [], columns)
        by_variant[variant] = group
    base = by_variant.get("base")
    lines = [
        f"`python -m bench.study --epochs {args.epochs}`: `experiment={args.base}` (lr 2e-3, beta2 0.99, d1g1, 100 latents) with each "
        f"variant's overrides, {args.epochs} epochs of the MNIST {args.split} split (the same "
        f"iterations for all), seeds {args.seeds}; final scores, mean ± std over seeds "
        f"(1,000 fakes each). *real*: the difference from `base` in val/fid exceeds twice its "
        f"standard error.",
        "",
        "| variant | overrides | "
        + " | ".join(s.removeprefix("val/") for s in SCORES)
        + " | seeds (failed, diverged) | vs base |",
        "|---|---|" + "---|" * len(SCORES) + "---|---|",
    ]
    for variant, group in sorted(by_variant.items(), key=lambda kv: kv[1].stats[0].mean or 1e9):
        cells = [
            common.format_mean_std(
                st.mean, st.std, ".0f" if s in ("val/fid", "val/elapsed_s") else ".3f"
            )
            for s, st in zip(SCORES, group.stats)
        ]
        verdict = ""
        if base is not None and variant != "base":
            a, b = group.stats[0], base.stats[0]
            if a.mean is None or b.mean is None or a.n < 2 or b.n < 2:
                verdict = "—"
            else:
                diff = a.mean - b.mean
                se = math.sqrt(a.std**2 / a.n + b.std**2 / b.n)
                real = abs(diff) > 2 * se
                verdict = f"{diff:+.0f} ({'real' if real else 'within the spread'})"
        counts = f"{len(group.jobs)} ({group.count('failed')}, {group.count('diverged')})"
        overrides = " ".join(VARIANTS[variant]) or "—"
        lines.append(
            f"| {variant} | `{overrides}` | " + " | ".join(cells) + f" | {counts} | {verdict} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
