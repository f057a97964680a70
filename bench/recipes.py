"""Train every recipe for a short budget on MNIST files on disk and tabulate what it reaches.

    python -m bench.recipes                                  # ../shared/mnist, test split
    python -m bench.recipes --epochs 5 --recipes dcgan tf_vanilla_gan
    python -m bench.recipes --data-root data --split train   # the full training split

Each recipe runs as `python -m gan.train experiment=<name>` in its own process, into
`<out>/runs/<name>/` (redone there on every call). The table gives the final and best
FID-like score (`val/fid`), the real-vs-real floor, class coverage, the MNIST score, and
seconds per epoch (the run's wall time, startup and validation included, over its epochs).
Writes `<out>/results.json` and `<out>/results.md` (`--out`: default bench/results/recipes).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bench import common

RECIPES = sorted(p.stem for p in (common.ROOT / "conf" / "experiment").glob("*.yaml"))

SCORES = (
    "fid",
    "coverage",
    "mnist_score",
    "fid_floor",
    "label_accuracy",
    "intra_fid",
    "modes",
    "kl",
)


def overrides(
    recipe: str, epochs: int | None, args: argparse.Namespace, select: Sequence[str] | None = None
) -> list[str]:
    """What `run` trains: `select` (else `experiment=<recipe>`), `epochs`, the user's."""
    return [
        *(select if select is not None else [f"experiment={recipe}"]),
        *([f"trainer.max_epochs={epochs}"] if epochs else []),
        *args.overrides,
    ]


def run(
    recipe: str,
    epochs: int | None,
    args: argparse.Namespace,
    runs: Path,
    select: Sequence[str] | None = None,
) -> dict[str, object]:
    """Train `recipe` (for `epochs`, or its own budget when None) into `<runs>/<recipe>/`;
    with `args.reuse`, a run that finished there before is read again instead. `select`:
    the overrides that say what trains, `experiment=<recipe>` unless given (the default
    run with `condition=concat seed=1`, say, named by `recipe`)."""
    folder = runs / recipe
    proc = common.train_or_reuse(
        folder,
        overrides(recipe, epochs, args, select),
        data_root=args.data_root,
        split=args.split,
        fresh=not getattr(args, "reuse", False),
        check=False,
        capture=True,
    )
    returncode, stderr = (0, "") if proc is None else (proc.returncode, proc.stderr)
    result = (
        json.loads((folder / "result.json").read_text())
        if (folder / "result.json").exists()
        else {}
    )
    row: dict[str, object] = {
        "recipe": recipe,
        "epochs": epochs,
        "status": result.get("status", "crashed"),
    }
    if returncode != 0:
        row["error"] = (result.get("error") or stderr.strip().splitlines()[-1:] or ["?"])[0]
    if (folder / "csv" / "metrics.csv").exists():
        curve = common.val_curve(folder)
        last = common.last_values(curve)
        row |= {key: last[key] for key in SCORES if key in last}
        fid = [r["fid"] for r in curve if "fid" in r]
        if fid:
            row["best_fid"] = min(fid)
        if curve:  # the recipe's own budget: the epochs done at its last validation
            epochs = epochs or curve[-1]["epoch"]
        row["epochs"] = epochs
    if result.get("seconds"):
        row["seconds"] = result["seconds"]
        row["s_per_epoch"] = result["seconds"] / max(1, epochs or 1)
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    p = common.parser("recipes", __doc__)
    p.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--epochs-64", type=int, default=1, help="budget of the 64x64 recipe (mxnet_dcgan)"
    )
    common.add_data_args(p)
    common.add_out_arg(p, "recipes")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every recipe")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        run(r, args.epochs_64 if r == "mxnet_dcgan" else args.epochs, args, out / "runs")
        for r in args.recipes
    ]
    machine = common.machine()
    (out / "results.json").write_text(
        json.dumps({"machine": machine, "split": args.split, "rows": rows}, indent=2) + "\n"
    )
    cell = common.cell
    lines = [
        f"Data: MNIST `{args.split}` split; machine: {machine}; `python -m bench.recipes`.",
        "",
        "| recipe | epochs | val/fid (best) | floor | coverage | MNIST score | s / epoch | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['recipe']}` | {r['epochs']} | {cell(r.get('fid'), '.1f')} "
            f"({cell(r.get('best_fid'), '.1f')}) | {cell(r.get('fid_floor'), '.1f')} | "
            f"{cell(r.get('coverage'), '.0f')} | {cell(r.get('mnist_score'), '.2f')} | "
            f"{cell(r.get('s_per_epoch'), '.1f' if r.get('s_per_epoch', 99) < 10 else '.0f')} | "
            f"{r['status']} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
