"""Seconds of training until `model=dcgan` reaches a given FID-like score, on MNIST on disk.

    python -m bench.time_to_quality                          # ../shared/mnist test split, 8 epochs
    python -m bench.time_to_quality --epochs 20 --targets 150 100 50 -- trainer.precision=bf16-mixed

Trains once (`python -m gan.train`, metrics every epoch) into `<out>/runs/dcgan/` (or
`--run`; trained afresh on every call), then reads `val/elapsed_s` (wall time of training so
far, validation included) and `val/fid` from the run's metrics.csv. Prints the curve (by
epochs done) and the first time each target score is reached; writes `<out>/results.json`
and `<out>/results.md` (`--out`: default bench/results/time_to_quality) so later changes can
be held to it.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import common


def main(argv: list[str] | None = None) -> None:
    p = common.parser("time_to_quality", __doc__)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--targets", type=float, nargs="+", default=[300.0, 200.0, 150.0, 100.0])
    common.add_data_args(p)
    p.add_argument("--run", default=None, help="the run's folder (default: <out>/runs/dcgan)")
    common.add_out_arg(p, "time_to_quality")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = p.parse_args(argv)
    out = Path(args.out)
    run = Path(args.run) if args.run else out / "runs" / "dcgan"
    common.train(
        [
            "model=dcgan",
            f"trainer.max_epochs={args.epochs}",
            f"hydra.run.dir={run}",
            "overwrite=true",  # the run's folder is reused: each call trains it afresh
            *args.overrides,
        ],
        data_root=args.data_root,
        split=args.split,
    )
    curve = [
        {k: r[k] for k in ("epoch", "seconds", "fid", "coverage")}
        for r in common.val_curve(run)
        if "fid" in r
    ]
    reached = {
        str(t): next((c["seconds"] for c in curve if c["fid"] <= t), None) for t in args.targets
    }
    machine = common.machine()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
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
        f"{' '.join(args.overrides) or 'none'}; `python -m bench.time_to_quality`.",
        "",
        "| epochs done | seconds | val/fid | coverage |",
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
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
