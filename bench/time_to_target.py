"""Seconds until the fast recipe reaches val/fid <= 3x its real-vs-real floor with all 10
classes covered, on a 2-core CPU; and what the default and the plain loop reach by then.

    python -m bench.time_to_target                              # ../shared/mnist test split
    python -m bench.time_to_target --recipe fast_mnist --seeds 0 1 2 --budget 300

1. `python -m gan.train experiment=<recipe> seed=<s>` for each seed, into
   `<out>/runs/<recipe>_<s>/`: its curve of `val/elapsed_s` (training wall time,
   validation included) and scores, and the first validation meeting the target.
2. The default (`python -m gan.train seed=<first seed>`, run past the budget) and the plain
   loop (bench.plain_dcgan, stopped at the budget): the last validation each finished
   within the fast recipe's time to target, and within the budget.
3. The grids the default and the recipe drew at their last epoch within the budget are
   copied to docs/ for the README.

Runs one training at a time, so the seconds compare; a finished run is read again unless
`--fresh`. Writes `<out>/results.json` and `<out>/results.md` (`--out`: default
bench/results/time_to_target). Epochs are counted as epochs done (bench.common).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from bench import common, plain_dcgan


def train(folder: Path, overrides: list[str], args: argparse.Namespace) -> list[dict[str, float]]:
    """The run's validations (bench.common.val_curve), trained first unless it finished
    before (and not `--fresh`); an unfinished run is redone in its folder."""
    if args.fresh or common.status(folder) != "ok":
        common.train(
            [f"hydra.run.dir={folder}", "overwrite=true", *overrides],
            data_root=args.data_root,
            split=args.split,
        )
    return common.val_curve(folder)


def reached(rows: list[dict[str, float]], target: float) -> dict[str, float] | None:
    return next((r for r in rows if r["fid"] <= target and r.get("coverage") == 10), None)


def within(rows: list[dict[str, float]], seconds: float) -> dict[str, float] | None:
    """The last validation finished within `seconds`."""
    done = [r for r in rows if r["seconds"] <= seconds]
    return done[-1] if done else None


def grid(folder: Path, epoch: int, name: str) -> str:
    """Copy the run's fixed-noise grid after `epoch` epochs done to docs/<name> (the image
    files are named by Lightning's 0-based epoch, hence `epoch - 1`)."""
    found = sorted((folder / "images").glob(f"grid_epoch{epoch - 1:03d}_*.png"))
    if not found:
        return ""
    shutil.copyfile(found[-1], common.ROOT / "docs" / name)
    return f"docs/{name}"


def main(argv: list[str] | None = None) -> None:
    p = common.parser("time_to_target", __doc__)
    p.add_argument("--recipe", default="fast_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=float, default=300.0, help="seconds")
    common.add_data_args(p)
    common.add_out_arg(p, "time_to_target")
    p.add_argument("--fresh", action="store_true", help="retrain runs that finished before")
    args = p.parse_args(argv)
    out = Path(args.out)
    runs = out / "runs"

    fast = {}
    for seed in args.seeds:
        rows = train(
            runs / f"{args.recipe}_{seed}", [f"experiment={args.recipe}", f"seed={seed}"], args
        )
        floor = rows[0]["fid_floor"]
        hit = reached(rows, 3 * floor)
        fast[seed] = {"curve": rows, "floor": floor, "target": 3 * floor, "reached": hit}
    times = [f["reached"]["seconds"] for f in fast.values() if f["reached"]]
    when = statistics.mean(times) if times else args.budget

    seed = args.seeds[0]
    epochs_past_budget = 100  # stopped by max_time just after the budget
    limit = f"00:00:{int(args.budget // 60) + 1:02d}:{int(args.budget % 60):02d}"
    default = train(
        runs / f"default_{seed}",
        [f"seed={seed}", f"trainer.max_epochs={epochs_past_budget}", f"trainer.max_time={limit}"],
        args,
    )
    plain = plain_dcgan.train_plain(
        seed, epochs_past_budget, args.data_root, max_seconds=args.budget, split=args.split
    )
    first = fast[seed]
    grids = {
        "fast": grid(
            runs / f"{args.recipe}_{seed}",
            within(first["curve"], args.budget)["epoch"],
            f"{args.recipe}_grid.png",
        ),
        "default": grid(
            runs / f"default_{seed}", within(default, args.budget)["epoch"], "default_grid.png"
        ),
    }
    results = {
        "split": args.split,
        "recipe": args.recipe,
        "budget": args.budget,
        "fast": {str(k): v for k, v in fast.items()},
        "seconds_to_target_mean": when if times else None,
        "default": default,
        "plain": plain,
        "grids": grids,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    def cells(row: dict[str, float] | None) -> str:
        if row is None:
            return "— | — | — | — | —"
        keys = ("fid", "coverage", "precision", "recall")
        return (
            " | ".join(f"{row.get(k, float('nan')):.3g}" for k in keys) + f" | {row['seconds']:.0f}"
        )

    lines = [
        f"MNIST {args.split} split, 2-core CPU, `python -m bench.time_to_target`. Target: "
        f"val/fid <= 3x the run's val/fid floor, all 10 classes covered; 1,000 fakes.",
        "",
        "| `experiment="
        + args.recipe
        + "` seed | floor | target | seconds to target | val/fid there |",
        "|---|---|---|---|---|",
    ]
    for s, f in fast.items():
        hit = f["reached"]
        lines.append(
            f"| {s} | {f['floor']:.1f} | {f['target']:.1f} | "
            f"{'not reached' if hit is None else format(hit['seconds'], '.0f')} | "
            f"{'—' if hit is None else format(hit['fid'], '.1f')} |"
        )
    lines += [
        "",
        f"Seed {seed}: the last validation each run finished within the time.",
        "",
        f"| run | within {when:.0f} s (the recipe's mean time to target): val/fid | classes | "
        f"precision | recall | seconds | within the {args.budget:.0f} s budget: val/fid | classes | "
        "precision | recall | seconds |",
        "|---|" + "---|" * 10,
    ]
    for name, rows in (
        (f"`experiment={args.recipe}`", first["curve"]),
        ("default", default),
        ("plain loop", plain),
    ):
        lines.append(
            f"| {name} | {cells(within(rows, when))} | {cells(within(rows, args.budget))} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
