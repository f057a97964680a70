"""Train every recipe for a short budget on MNIST files on disk and tabulate what it reaches.

    python bench/recipes.py                                  # ../shared/mnist, test split
    python bench/recipes.py --epochs 5 --recipes dcgan tf_vanilla_gan
    python bench/recipes.py --data-root data --split train   # the full training split

Each recipe runs as `python -m gan.train experiment=<name>` in its own process, into
`<out>/<name>/`. The table gives the final and best FID-like score (`val/fid`), the
real-vs-real floor, class coverage, the MNIST score, and seconds per epoch (the run's
wall time, startup and validation included, over its epochs). Writes `<out>/recipes.json`
and `<out>/recipes.md`.
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
RECIPES = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


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


def run(recipe: str, epochs: int | None, args: argparse.Namespace, out: Path) -> dict[str, object]:
    """Train `recipe` (for `epochs`, or its own budget when None) into `<out>/<recipe>/`."""
    folder = out / recipe
    cmd = [
        sys.executable,
        "-m",
        "gan.train",
        f"experiment={recipe}",
        f"data.root={args.data_root}",
        f"data.split={args.split}",
        "data.download=false",
        *([f"trainer.max_epochs={epochs}"] if epochs else []),
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"hydra.run.dir={folder}",
        "overwrite=true",  # a run not reused is redone in its folder
        *args.overrides,
    ]
    done = folder / "result.json"
    if (
        getattr(args, "reuse", False)
        and done.exists()
        and json.loads(done.read_text())["status"] == "ok"
    ):
        print(f"reusing the finished run {folder}", flush=True)
        proc = subprocess.CompletedProcess(cmd, 0, "", "")
    else:
        print("$", " ".join(cmd), flush=True)
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
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
    if proc.returncode != 0:
        row["error"] = (result.get("error") or proc.stderr.strip().splitlines()[-1:] or ["?"])[0]
    metrics = folder / "csv" / "metrics.csv"
    if metrics.exists():
        with metrics.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for key in SCORES:
            values = column(rows, f"val/{key}")
            if values:
                row[key] = values[-1]
        fid = column(rows, "val/fid")
        if fid:
            row["best_fid"] = min(fid)
        epochs = epochs or len(fid)  # the recipe's own budget: one validation per epoch
        row["epochs"] = epochs
    if result.get("seconds"):
        row["seconds"] = result["seconds"]
        row["s_per_epoch"] = result["seconds"] / max(1, epochs or 1)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--epochs-64", type=int, default=1, help="budget of the 64x64 recipe (mxnet_dcgan)"
    )
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "mnist"))
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=str(ROOT / "bench" / "recipes_runs"))
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every recipe")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        run(r, args.epochs_64 if r == "mxnet_dcgan" else args.epochs, args, out)
        for r in args.recipes
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    (out / "recipes.json").write_text(
        json.dumps({"machine": machine, "split": args.split, "rows": rows}, indent=2) + "\n"
    )

    def fmt(v: object, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "—"

    lines = [
        f"Data: MNIST `{args.split}` split; machine: {machine}.",
        "",
        "| recipe | epochs | val/fid (best) | floor | coverage | MNIST score | s / epoch | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['recipe']}` | {r['epochs']} | {fmt(r.get('fid'), '.1f')} "
            f"({fmt(r.get('best_fid'), '.1f')}) | {fmt(r.get('fid_floor'), '.1f')} | "
            f"{fmt(r.get('coverage'), '.0f')} | {fmt(r.get('mnist_score'), '.2f')} | "
            f"{fmt(r.get('s_per_epoch'), '.1f' if r.get('s_per_epoch', 99) < 10 else '.0f')} | "
            f"{r['status']} |"
        )
    (out / "recipes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
