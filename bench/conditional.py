"""The class-conditional recipes at their own budgets, and the default run with each
conditioning over seeds, and what they reach (Stacked MNIST: bench/stacked.py).

    python -m bench.conditional --conditions         # the recipes: ../shared/mnist, test split, ~45 min
    python -m bench.conditional --recipes -- noise.dim=64 trainer.max_epochs=10   # the study: ~1 h
    python -m bench.conditional --recipes cgan_mnist --conditions tacgan --seeds 0

Each recipe trains through `python -m gan.train experiment=<name>` (bench.recipes'
runner) into `<out>/runs/<name>/`; a run that finished before is read again, not retrained
(`--fresh` retrains). The table gives label accuracy and intra-FID (conditional
recipes), the FID-like score against its floor, and seconds, and for the conditional recipes the Classification Accuracy Score beside the
real-trained classifier's accuracy (`python -m gan.cas`, into the run's cas.json). For
`cgan_mnist` it also draws `label=7 n=64` from the last checkpoint with
`python -m gan.sample`, scores the sevens with the project's classifier, and writes a
grid with one row per class to `docs/cgan_mnist_classes.png`. Writes `<out>/results.json`
and `<out>/results.md` (`--out`: default bench/results/conditional); the README's table is
copied from the latter.

The conditioning study trains the default run, `python -m gan.train condition=<c> seed=<s>`
at its own budget, for each of `--conditions` (concat, projection, acgan, tacgan) and
`--seeds` (0 1 2), with the overrides after `--`, into `<out>/runs/<c>-seed<s>/`, takes
its CAS, and writes
`<out>/conditions.json` and `<out>/conditions.md`: per conditioning the mean ± std over
seeds of the last validation's label accuracy (1,000 fakes), CAS, intra-FID and val/fid,
and the run's wall time (startup, floor and validations included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench import common
from bench.recipes import overrides, run  # the recipes' runner, not a copy of it

RECIPES = ("cgan_mnist", "acgan_mnist")  # class-conditional: each gets a CAS
CONDITIONS = ("concat", "projection", "acgan", "tacgan")  # the default run with each


def cas(folder: Path, args: argparse.Namespace) -> dict[str, float | int | str]:
    """`python -m gan.cas` on the run's last checkpoint (the run's cas.json, rewritten):
    its `cas`, `cas_real` and `cas_n` (fakes drawn), or `cas_error` when it failed (its
    message is on the console): one run's failure does not end the study."""
    ckpt = folder / "checkpoints" / "last.ckpt"
    opts = [f"ckpt={ckpt}", f"data_root={args.data_root}", "overwrite=true"]
    proc = common.run(common.command("gan.cas", opts), check=False)
    if proc.returncode != 0:
        return {"cas_error": f"python -m gan.cas exited with {proc.returncode}"}
    scores = json.loads((folder / "cas.json").read_text())
    keep = {"cas": "cas", "cas_real": "cas_real", "cas_n": "n", "cas_ema": "ema"}
    return {key: scores[theirs] for key, theirs in keep.items()}


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
    p.add_argument(
        "--recipes", nargs="*", default=list(RECIPES), choices=RECIPES, help="none: skip them"
    )
    p.add_argument(
        "--conditions",
        nargs="*",
        default=list(CONDITIONS),
        choices=CONDITIONS,
        help="the default run with each (none: skip the study)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    common.add_data_args(p)
    common.add_out_arg(p, "conditional")
    p.add_argument(
        "--fresh", dest="reuse", action="store_false", help="retrain runs that finished before"
    )
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every recipe")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.conditions:
        conditions(args, out)
    if args.recipes:
        recipes(args, out)


def conditions(args: argparse.Namespace, out: Path) -> None:
    """The default run with each of `args.conditions`, per seed; the table of their means."""
    plan = {
        f"{c}-seed{seed}": (c, seed, [f"condition={c}", f"seed={seed}"])
        for c in args.conditions
        for seed in args.seeds
    }
    for name, (_, _, select) in plan.items():  # one run not reusable stops it before any trains
        folder = out / "runs" / name
        if args.reuse and common.status(folder) == "ok":
            settings = overrides(name, None, args, select)
            common.check_reusable(folder, settings, data_root=args.data_root, split=args.split)
    rows = []
    for name, (c, seed, select) in plan.items():
        row = run(name, None, args, out / "runs", select=select)
        row |= {"condition": c, "seed": seed}
        if row.get("status") == "ok":
            row |= cas(out / "runs" / name, args)
        rows.append(row)
    (out / "conditions.json").write_text(
        json.dumps({"machine": common.machine(), "split": args.split, "rows": rows}, indent=2)
        + "\n"
    )
    extra = "".join(" " + o for o in args.overrides)
    drawn = " or ".join(f"{n:,}" for n in sorted({r["cas_n"] for r in rows if "cas_n" in r}))
    weights = " or ".join(
        sorted({"EMA G" if r["cas_ema"] else "G" for r in rows if "cas_ema" in r})
    )
    scored = f"{drawn} fakes of the {weights}" if drawn else "no CAS"
    lines = [
        f"The default run with `condition=<c>{extra}`, MNIST {args.split} split, "
        f"seeds {' '.join(map(str, args.seeds))}; mean ± std over the seeds of the last "
        f"validation and of `python -m gan.cas` ({scored}); {common.machine()}; "
        f"`python -m bench.conditional --recipes --conditions {' '.join(args.conditions)} "
        f"--seeds {' '.join(map(str, args.seeds))}{' --' + extra if extra else ''}`.",
        "",
        "| condition | runs ok | label accuracy | CAS | CAS of real digits | intra-FID | val/fid | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in args.conditions:
        ok = [r for r in rows if r["condition"] == c and r.get("status") == "ok"]

        def ms(key: str, spec: str, ok: list[dict] = ok) -> str:
            return common.mean_std([r[key] for r in ok if r.get(key) is not None], spec)

        lines.append(
            f"| `{c}` | {len(ok)} of {len(args.seeds)} | {ms('label_accuracy', '.3f')} | "
            f"{ms('cas', '.3f')} | {ms('cas_real', '.3f')} | {ms('intra_fid', '.1f')} | "
            f"{ms('fid', '.1f')} | {ms('seconds', '.0f')} |"
        )
    failed = [f"{r['recipe']} ({r['cas_error']})" for r in rows if "cas_error" in r]
    if failed:
        lines += ["", f"CAS failed for {', '.join(failed)}: left out of its mean."]
    (out / "conditions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def recipes(args: argparse.Namespace, out: Path) -> None:
    """The recipes at their own budgets; results.json and results.md."""
    rows = []
    for recipe in args.recipes:
        row = run(recipe, None, args, out / "runs")
        if row.get("status") == "ok":
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
        f"(1,000 fakes), `python -m bench.conditional`.",
        "",
        "| recipe | epochs | label accuracy | CAS (real) | intra-FID | val/fid (floor) | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['recipe']}` | {f(r, 'epochs', 'd')} | {f(r, 'label_accuracy', '.3f')} | "
            f"{f(r, 'cas', '.3f')} ({f(r, 'cas_real', '.3f')}) | {f(r, 'intra_fid', '.1f')} | {f(r, 'fid', '.1f')} ({f(r, 'fid_floor', '.1f')}) | "
            f"{f(r, 'seconds', '.0f')} |"
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
