"""The class-conditional and Stacked MNIST recipes at their own budgets, and what they reach.

    python -m bench.conditional                      # ../shared/mnist, test split, ~30 min on 2 cores
    python -m bench.conditional --recipes cgan_mnist

Each recipe trains through `python -m gan.train experiment=<name>` (bench.recipes'
runner) into `<out>/runs/<name>/`; a run that finished before is read again, not retrained
(`--fresh` retrains). The table gives label accuracy and intra-FID (conditional
recipes), the FID-like score against its floor, modes covered and KL (Stacked MNIST), and
seconds, and for the conditional recipes the Classification Accuracy Score beside the
real-trained classifier's accuracy (`python -m gan.cas`, into the run's cas.json). For
`cgan_mnist` it also draws `label=7 n=64` from the last checkpoint with
`python -m gan.sample`, scores the sevens with the project's classifier, and writes a
grid with one row per class to `docs/cgan_mnist_classes.png`. Writes `<out>/results.json`
and `<out>/results.md` (`--out`: default bench/results/conditional); the README's table is
copied from the latter.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench import common
from bench.recipes import run  # the recipes' runner, not a copy of it

RECIPES = ("cgan_mnist", "acgan_mnist", "stacked_mnist")
CONDITIONAL = ("cgan_mnist", "acgan_mnist")  # class-conditional: they get a CAS


def cas(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """`python -m gan.cas` on the run's last checkpoint (the run's cas.json, rewritten):
    its `cas` and `cas_real`."""
    ckpt = folder / "checkpoints" / "last.ckpt"
    opts = [f"ckpt={ckpt}", f"data_root={args.data_root}", "overwrite=true"]
    common.run(common.command("gan.cas", opts))
    scores = json.loads((folder / "cas.json").read_text())
    return {"cas": scores["cas"], "cas_real": scores["cas_real"]}


def sevens(folder: Path, args: argparse.Namespace) -> float:
    """Share of `label=7 n=64` samples that the project's classifier calls a seven."""
    from gan.metrics.classifier import load_or_train

    ckpt, out = folder / "checkpoints" / "last.ckpt", folder / "sevens.pt"
    common.run(
        common.command("gan.sample", [f"ckpt={ckpt}", "label=7", "n=64", "format=pt", f"out={out}"])
    )
    clf = load_or_train(args.data_root, args.split, progress_bar=False)
    with torch.no_grad():
        return float((clf(torch.load(out)).argmax(1) == 7).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = common.parser("conditional", __doc__)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    common.add_data_args(p)
    common.add_out_arg(p, "conditional")
    p.add_argument(
        "--fresh", dest="reuse", action="store_false", help="retrain runs that finished before"
    )
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every recipe")
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = []
    for recipe in args.recipes:
        row = run(recipe, None, args, out / "runs")
        if recipe in CONDITIONAL and row.get("status") == "ok":
            row |= cas(out / "runs" / recipe, args)
        if recipe == "cgan_mnist" and row.get("status") == "ok":
            row["sevens_recognised"] = sevens(out / "runs" / recipe, args)
            grid = common.ROOT / "docs" / "cgan_mnist_classes.png"
            ckpt = out / "runs" / recipe / "checkpoints" / "last.ckpt"
            common.run(
                common.command("gan.sample", [f"ckpt={ckpt}", "per_class=10", f"out={grid}"])
            )
        rows.append(row)
    (out / "results.json").write_text(
        json.dumps({"split": args.split, "rows": rows}, indent=2) + "\n"
    )

    def f(row: dict, key: str, spec: str) -> str:
        return common.cell(row.get(key), spec)

    lines = [
        f"MNIST {args.split} split, seed 42, 2-core CPU; scores at the last validation "
        f"(1,000 fakes, 10,000 for Stacked MNIST), `python -m bench.conditional`.",
        "",
        "| recipe | epochs | label accuracy | CAS (real) | intra-FID | val/fid (floor) | modes / 1,000 | KL | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['recipe']}` | {f(r, 'epochs', 'd')} | {f(r, 'label_accuracy', '.3f')} | "
            f"{f(r, 'cas', '.3f')} ({f(r, 'cas_real', '.3f')}) | {f(r, 'intra_fid', '.1f')} | {f(r, 'fid', '.1f')} ({f(r, 'fid_floor', '.1f')}) | "
            f"{f(r, 'modes', '.0f')} | {f(r, 'kl', '.2f')} | {f(r, 'seconds', '.0f')} |"
        )
    if any("sevens_recognised" in r for r in rows):
        share = next(r["sevens_recognised"] for r in rows if "sevens_recognised" in r)
        lines += [
            "",
            f"`cgan_mnist`, `label=7 n=64`: the classifier calls {100 * share:.0f}% of them sevens.",
        ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
