"""The default `python -m gan.train` against the plain 100-line DCGAN-28 loop, 3 seeds each.

    python -m bench.default_vs_plain                      # ../shared/mnist test split, 10 epochs
    python -m bench.default_vs_plain --seeds 0 1 2 --epochs 10 --fresh
    python -m bench.default_vs_plain --fresh --keep-plain   # after a change to the default

Ours: `python -m gan.train -m seed=0,1,2 trainer.max_epochs=10` with no other overrides
than the data's, into `<out>/runs/default/` (a finished sweep is read again unless
`--fresh`). The plain loop: bench.plain_dcgan's `train_plain`, same seeds and epochs.
Both are scored by the same code (gan.metrics.scores.GanMetrics) on the same sample sizes (1,000
fakes from z seeded with 1234, against the 1,000 held-out reals of the same split), G in
eval mode; seconds are wall time of training with validation. The default samples from its
EMA copy of G; each job's G itself is scored too, at the end, from its last checkpoint (a
third row: what `ema.enabled=false` would score). Runs one job at a time, so
the seconds compare. Writes `<out>/results.json` (every epoch of every seed) and
`<out>/results.md` (mean ± std over seeds at the last epoch, and the default's scores at the
plain loop's final val/fid, read along each seed's curve); the README quotes the latter.
`<out>/precision_vs_fid.png` draws every validation's precision and recall against val/fid
for both. Scores already in `<out>/results.json` for the same seeds, epochs, overrides and
scoring classifier (its cache file's hash) are read again instead of retrained, unless
`--fresh` (with `--keep-plain`: ours only). `--out`: default bench/results/default_vs_plain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
from pathlib import Path

import torch

from bench import common, plain_dcgan
from bench.common import mean_std

SCORES = ("fid", "kid", "precision", "recall", "density", "prdc_coverage", "coverage", "seconds")


def ours(args: argparse.Namespace, out: Path) -> tuple[dict, dict]:
    """Per seed: the sweep's curve (its EMA G, as validated), and G itself at the end."""
    sweep = out / "runs" / "default"
    jobs = sorted((p for p in sweep.glob("*") if common.status(p)), key=lambda p: p.name)
    done = [common.status(j) == "ok" for j in jobs]
    if args.fresh or len(jobs) != len(args.seeds) or not all(done):
        shutil.rmtree(sweep, ignore_errors=True)  # no job of an older default left behind
        common.train(
            [
                f"seed={','.join(map(str, args.seeds))}",
                f"trainer.max_epochs={args.epochs}",
                f"hydra.sweep.dir={sweep}",
                *args.overrides,
            ],
            data_root=args.data_root,
            split=args.split,
            sweep=True,
        )
        jobs = sorted(p for p in sweep.glob("*") if (p / "result.json").exists())
    seeds, g_rows = {}, {}
    for job in jobs:
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        seed = next(o for o in overrides.splitlines() if "seed=" in o).split("=")[1].strip()
        seeds[seed] = common.val_curve(job)
        g_rows[seed] = [{**own_g(job), "seconds": seeds[seed][-1]["seconds"]}]
    return seeds, g_rows


def own_g(job: Path) -> dict[str, float]:
    """The job's last scores for G itself instead of its EMA copy: what the same run with
    `ema.enabled=false` scores (the average never feeds back into training). Scored as the
    module's validation scores the EMA: the same reals, fakes' noise and metrics code."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from gan.core.ranges import to_unit_range
    from gan.core.sampling import generate
    from gan.metrics.classifier import load_or_train
    from gan.metrics.scores import GanMetrics
    from gan.tools.sample import load_gan

    cfg = OmegaConf.load(job / "config.yaml")
    module = load_gan(job / "checkpoints" / "last.ckpt")
    dm = instantiate(cfg.data)
    dm.setup("fit")  # the run's split: the same held-out reals
    c, output = cfg.metrics, cfg.model.output
    clf = load_or_train(
        c.root, c.split, c.download, max_epochs=c.classifier_epochs, dataset=c.dataset
    )
    metrics = GanMetrics(clf)
    metrics.set_real(to_unit_range(dm.to_model_range(dm.val_set.images), output))
    z = module.sample_z(c.num_samples, generator=torch.Generator().manual_seed(c.seed))
    scores = metrics.compute(to_unit_range(generate(module, z, ema=False), output))
    return {k: float(v) for k, v in scores.items() if v.dim() == 0}


def at_fid(curve: list[dict[str, float]], fid: float, key: str) -> float | None:
    """`key` where the curve's val/fid first falls to `fid`, interpolated linearly between the
    two validations around it; None if the curve never crosses that level."""
    for a, b in zip(curve, curve[1:]):
        if a["fid"] >= fid >= b["fid"] and key in a and key in b:
            t = (a["fid"] - fid) / (a["fid"] - b["fid"]) if a["fid"] != b["fid"] else 0.0
            return a[key] + t * (b[key] - a[key])
    return None


def plot(results: dict, path: Path) -> None:
    """Precision and recall against val/fid at every validation, a line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for name, label, color in (("ours", "default (EMA G)", "C0"), ("plain", "plain loop", "C1")):
        for i, c in enumerate(results[name].values()):
            fids = [r["fid"] for r in c]
            for ax, key in zip(axes, ("precision", "recall")):
                ax.plot(
                    fids,
                    [r[key] for r in c],
                    "o-",
                    ms=3,
                    color=color,
                    label=label if i == 0 else None,
                )
    for ax, key in zip(axes, ("precision", "recall")):
        ax.set_xscale("log")
        ax.invert_xaxis()  # training moves right: val/fid falls
        ax.set_xlabel("val/fid (log scale)")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    seeds = ", ".join(results["ours"])
    fig.suptitle(f"Every validation of {results['epochs']} epochs, seeds {seeds}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def classifier_id(args: argparse.Namespace) -> str:
    """A fingerprint of the scoring classifier's cache file: scores by another classifier
    (trained again, or by another torch) do not compare with this one's."""
    from gan.metrics.classifier import load_or_train

    clf = load_or_train(args.data_root, args.split, False, progress_bar=False)
    return hashlib.sha256(clf.info.path.read_bytes()).hexdigest()[:16]


def seeds_(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def main(argv: list[str] | None = None) -> None:
    p = common.parser("default_vs_plain", __doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    common.add_data_args(p)
    common.add_out_arg(p, "default_vs_plain")
    p.add_argument("--fresh", action="store_true", help="retrain what was scored before")
    p.add_argument(
        "--keep-plain", action="store_true", help="with --fresh: read the plain loop's scores again"
    )
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for ours")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "split": args.split,
        "epochs": args.epochs,
        "overrides": args.overrides,
        "classifier": classifier_id(args),
    }
    before = out / "results.json"
    old = (
        json.loads(before.read_text())
        if before.exists() and (args.keep_plain or not args.fresh)
        else {}
    )
    seeds = sorted(str(s) for s in args.seeds)
    keys = ("split", "epochs", "overrides", "classifier")
    same = all(old.get(k) == results[k] for k in keys)
    if same and not args.fresh and sorted(old.get("ours", {})) == seeds:  # redraw only
        results["ours"], results["ours_g"] = old["ours"], old["ours_g"]
    else:
        results["ours"], results["ours_g"] = ours(args, out)
    if same and sorted(old.get("plain", {})) == seeds:
        results["plain"], results["machine"] = old["plain"], old["machine"]
    else:
        results["plain"] = {
            str(s): plain_dcgan.train_plain(s, args.epochs, args.data_root, split=args.split)
            for s in args.seeds
        }
        results["machine"] = common.machine()
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    floors = [c[0]["fid_floor"] for c in results["ours"].values() if c and "fid_floor" in c[0]]
    lines = [
        f"MNIST {args.split} split, {args.epochs} epochs, seeds {args.seeds}; "
        f"{results['machine']}; `python -m bench.default_vs_plain`. Scores at the last "
        f"validation: 1,000 fakes (z seed 1234, G in eval mode) against the 1,000 held-out "
        f"reals, by gan.metrics.scores for both; mean ± std over seeds. Real-vs-real val/fid floor: "
        f"{mean_std(floors, '.1f')}.",
        "",
        "| | " + " | ".join(SCORES) + " |",
        "|---|" + "---|" * len(SCORES),
    ]
    for name, label in (
        ("ours", "`python -m gan.train` (default)"),
        ("ours_g", "the same runs' G itself (`ema.enabled=false`)"),
        ("plain", "plain loop"),
    ):
        finals = [c[-1] for c in results[name].values() if c]
        cells = [
            mean_std([r[k] for r in finals if k in r], ".0f" if k in ("fid", "seconds") else ".3f")
            for k in SCORES
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    level = statistics.mean(c[-1]["fid"] for c in results["plain"].values())
    curves = [c for c in results["ours"].values() if c]
    early = [c[0] for c in curves if c[0]["fid"] <= level]  # below it at once: no crossing
    along = {
        k: [v for c in curves if c[0]["fid"] > level and (v := at_fid(c, level, k)) is not None]
        for k in ("precision", "recall", "epoch", "seconds")
    }
    lines += ["", f"At equal val/fid (the plain loop's final {level:.0f}): "]
    if along["precision"]:
        lines[-1] += (
            f"the default first reaches it for {seeds_(len(along['precision']))} "
            f"(interpolated between validations) after {mean_std(along['epoch'], '.1f')} "
            f"epochs and {mean_std(along['seconds'], '.0f')} s, with precision "
            f"{mean_std(along['precision'], '.3f')} and recall {mean_std(along['recall'], '.3f')}. "
        )
    if early:
        lines[-1] += (
            f"At the first validation (after {mean_std([r['seconds'] for r in early], '.0f')} "
            f"s) {seeds_(len(early))} already lie below it, with precision "
            f"{mean_std([r['precision'] for r in early], '.3f')} and recall "
            f"{mean_std([r['recall'] for r in early], '.3f')}."
        )
    plot(results, out / "precision_vs_fid.png")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
