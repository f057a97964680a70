"""The truncation trick: precision and recall of the default run's samples against ψ.

    python -m bench.truncation                      # 2 epochs, seed 0, 2,000 fakes, 13 ψ
    python -m bench.truncation --epochs 1 --fakes 1000
    python -m bench.truncation --ckpt <run>/checkpoints/last.ckpt --seed <its seed>

The default run (`python -m gan.train`, no overrides but the data's) trains for `--epochs` on
the MNIST test split (`--data-root`, default ../shared/mnist) with `--seed`, into
`<out>/runs/default/` (git ignores it; a finished run is reused unless `--fresh`), or
`--ckpt` names one already trained. Its G draws through its EMA weights, as gan.sample does,
`--fakes` images from one set of latents (seeded with `--sample-seed`, the validation's
metrics.seed), truncated with gan.core.sampling.truncate at each ψ of `--psi`: the same z
at every ψ. Each set is scored by the validation's own code (gan.metrics.scores.GanMetrics:
PRDC with k = 5 on the project classifier's features, cached for the test split) against
the run's 1,000 held-out reals (data.val_size, drawn by
gan.data.batches.held_out_split with `--seed`), which G never saw. Also reported: FID,
density, PRDC coverage and the classes covered, and the real-vs-real floor.

Writes `<out>/results.json` and `<out>/results.md` (default bench/results/truncation), the
plot of precision and recall against ψ (`--plot`, default docs/truncation.png) and a strip
of the same 10 latents at a few ψ (`--strip`, default docs/truncation_samples.png).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import common
from gan.core.ranges import to_unit_range
from gan.core.sampling import generate, truncate
from gan.data.batches import held_out_split
from gan.data.mnist import load_split
from gan.metrics.classifier import load_or_train
from gan.metrics.scores import GanMetrics
from gan.training.checkpoints import load_gan

VAL_SIZE = 1000  # the default run's data.val_size: the held-out part of the split
PSI = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5]
STRIP_PSI = [0.0, 0.3, 0.5, 0.7, 1.0, 1.5]  # rows of the samples strip
SCORES = ("precision", "recall", "density", "prdc_coverage", "fid", "coverage")


def train_default(args: Any, out: Path) -> Path:
    """The default run for `--epochs` with `--seed`; its last.ckpt (a finished run is reused)."""
    run = out / "runs" / "default"
    common.train_or_reuse(
        run,
        [
            f"seed={args.seed}",
            f"trainer.max_epochs={args.epochs}",
            "metrics.enabled=false",  # scored below, at every ψ: a busy CPU saves minutes
        ],
        data_root=args.data_root,
        split=args.split,
        fresh=args.fresh,
        finished=("ok", "no-metric"),
    )
    return run / "checkpoints" / "last.ckpt"


def held_out_reals(root: str, split: str, seed: int) -> torch.Tensor:
    """The run's held-out reals under `seed`: (VAL_SIZE, 1, 28, 28) in [0, 1]."""
    images, _ = load_split(root, split)  # (N, 28, 28) uint8
    held = held_out_split(len(images), VAL_SIZE, seed)[0]  # (VAL_SIZE,)
    return images[held].float().div(255).unsqueeze(1)


def score_all(module: Any, metrics: GanMetrics, args: Any) -> list[dict[str, float]]:
    """One row of scores per ψ of `--psi`, every ψ on the same `--fakes` latents."""
    dist, output = str(module.cfg.noise.dist), str(module.cfg.model.output)
    z = module.sample_z(args.fakes, generator=torch.Generator().manual_seed(args.sample_seed))
    rows = []
    for psi in args.psi:
        start = time.perf_counter()
        fakes = to_unit_range(generate(module, truncate(z, psi, dist)), output)  # (M, 1, 28, 28)
        scores = metrics.compute(fakes)
        row = {"psi": psi, **{k: float(scores[k]) for k in SCORES}}
        row["seconds"] = time.perf_counter() - start
        print(
            f"  ψ={psi:g}: precision {row['precision']:.3f}, recall {row['recall']:.3f}, "
            f"fid {row['fid']:.1f}",
            flush=True,
        )
        rows.append(row)
    return rows


def plot(result: dict, path: Path) -> None:
    """Precision and recall against ψ, with the real-vs-real floor of each as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, floor = result["rows"], result["floor"]
    psi = [r["psi"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, color in (("precision", "C0"), ("recall", "C1")):
        ax.plot(psi, [r[key] for r in rows], "o-", ms=4, color=color, label=key)
        ax.axhline(floor[f"{key}_floor"], ls="--", lw=1, color=color, alpha=0.6)
    ax.axvline(1.0, color="grey", lw=0.8, alpha=0.5)
    ax.set_xlabel("truncation ψ (1: off)")
    ax.set_ylabel("score (dashed: real vs real)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower center")
    a = result["args"]
    ax.set_title(
        f"default run, {a['epochs']} epochs, seed {a['seed']}: {a['fakes']:,} fakes vs "
        f"{result['reals']:,} reals",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def strip(module: Any, args: Any, path: Path) -> None:
    """The same 10 latents (the first of the scored ones) at each ψ of STRIP_PSI, a row each."""
    from torchvision.utils import save_image

    dist, output = str(module.cfg.noise.dist), str(module.cfg.model.output)
    z = module.sample_z(10, generator=torch.Generator().manual_seed(args.sample_seed))  # (10, D)
    z = torch.cat([truncate(z, psi, dist) for psi in STRIP_PSI])  # (rows * 10, D)
    save_image(to_unit_range(generate(module, z), output), path, nrow=10, padding=2)


def write_markdown(path: Path, result: dict) -> None:
    a, floor = result["args"], result["floor"]
    lines = [
        f"`{result['command']}`: the default run, {a['epochs']} epochs on the MNIST "
        f"{a['split']} split, seed {a['seed']} (G through its EMA weights); {a['fakes']:,} fakes "
        f"from one set of latents (seed {a['sample_seed']}) truncated at each ψ, against the "
        f"run's {result['reals']:,} held-out reals; PRDC k = 5 on the project classifier's "
        f"features. {result['machine']}.",
        "",
        "| ψ | precision | recall | density | PRDC coverage | FID-like | classes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['psi']:g} | {r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.2f} "
            f"| {r['prdc_coverage']:.3f} | {r['fid']:.1f} | {r['coverage']:.0f} |"
        )
    lines.append(
        f"| real vs real (floor, 500 vs 500) | {floor['precision_floor']:.3f} | "
        f"{floor['recall_floor']:.3f} | {floor['density_floor']:.2f} | "
        f"{floor['prdc_coverage_floor']:.3f} | {floor['fid_floor']:.1f} | — |"
    )
    lines.append("")
    lines.append(
        f"Training: {result['train_seconds']:.0f} s; scoring: {result['score_seconds']:.0f} s."
    )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("truncation", __doc__)
    common.add_data_args(p)
    common.add_out_arg(p, "truncation")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the default run (default: 2)")
    p.add_argument(
        "--seed", type=int, default=0, help="training seed; fixes the held-out reals (default: 0)"
    )
    p.add_argument("--ckpt", help="score this checkpoint instead of training (pass its --seed)")
    p.add_argument("--fakes", type=int, default=2000, help="fakes per ψ (default: 2000)")
    p.add_argument("--sample-seed", type=int, default=1234, help="the fakes' latents (1234)")
    p.add_argument("--psi", type=float, nargs="+", default=PSI, help="the ψ to score")
    p.add_argument("--fresh", action="store_true", help="retrain the default run")
    p.add_argument("--plot", default=str(common.ROOT / "docs" / "truncation.png"))
    p.add_argument("--strip", default=str(common.ROOT / "docs" / "truncation_samples.png"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    ckpt = Path(args.ckpt) if args.ckpt else train_default(args, out)
    train_seconds = time.perf_counter() - start
    module = load_gan(ckpt)
    torch.manual_seed(args.seed)

    start = time.perf_counter()
    metrics = GanMetrics(load_or_train(args.data_root, args.split, False, progress_bar=False))
    reals = held_out_reals(args.data_root, args.split, args.seed)
    floor = metrics.set_real(reals)
    rows = score_all(module, metrics, args)
    given = " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "command": f"python -m bench.truncation {given}".strip(),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "plot", "strip")},
        "machine": common.machine(),
        "ckpt": str(ckpt) if args.ckpt else "runs/default (trained here)",
        "reals": len(reals),
        "floor": floor,
        "rows": rows,
        "train_seconds": train_seconds if not args.ckpt else 0.0,
        "score_seconds": time.perf_counter() - start,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(out / "results.md", result)
    plot(result, Path(args.plot))
    strip(module, args, Path(args.strip))
    print((out / "results.md").read_text())
    return result


if __name__ == "__main__":
    main()
