"""Projection onto G: how near do the plain DCGAN loop's G and the default run's G come to 100
held-out real digits?

    python -m bench.projection                      # 2 epochs each, seed 0, 100 digits
    python -m bench.projection --epochs 2 --digits 50 --steps 200
    python -m bench.projection --no-plain --out bench/results/projection/dim100 noise.dim=100

Both generators train for the same epochs on the MNIST test split (`--data-root`, default
../shared/mnist) with the same seed, which also fixes the framework's held-out split
(`data.val_size` 1,000 images drawn by `gan.data.batches.held_out_split`): the digits
projected are the last `--digits` of those held-out indices (sorted), which neither G saw.
They are MNIST digits already, so they go to the search as they are (no re-centring).

Each digit is searched with `gan.tools.projector.search` (the command line's loss and
defaults: pixel MSE + 0.1 x the project classifier's relative feature distance + 1 x the
latent-norm penalty; `--restarts` random starts, `--steps` Adam steps, starting latents
seeded with `--seed`), the default run's G through its EMA weights, as it draws. Reported:
the mean pixel MSE (images in [0, 1]) of the match, and the label agreement: how often the
project classifier (cached for the test split; trained on its first 8,000 images) gives the
match the label it gives the digit.

Writes `<out>/results.json` and `<out>/results.md` (default bench/results/projection); the
default run trains into `<out>/runs/default/` (git ignores it) and is reused when finished.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from bench import common
from bench.plain_dcgan import LATENT, train_plain
from gan.core.sampling import sample_z
from gan.data.batches import held_out_split
from gan.data.mnist import load_split
from gan.metrics.classifier import load_or_train
from gan.tools.projector import classify, search
from gan.training.checkpoints import load_gan

VAL_SIZE = 1000  # the framework's data.val_size: the held-out part of the split


class PlainModel:
    """The plain loop's G, as `gan.tools.projector.search` takes a model: N(0, 1) latents of
    100, tanh images, unconditional, on the CPU."""

    def __init__(self, g: nn.Module) -> None:
        self.g = g.cpu().eval()
        self.device = torch.device("cpu")
        self.num_classes = 0
        self.cfg = OmegaConf.create(
            {"model": {"output": "tanh"}, "noise": {"dist": "normal", "dim": LATENT}}
        )

    def sampling_generator(self, ema: bool | None = None) -> nn.Module:
        return self.g

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return sample_z("normal", LATENT, n, generator=generator)


def held_out_digits(root: str, split: str, seed: int, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """The last n of the split's held-out indices (sorted) under `seed`: indices (n,), images
    (n, 1, 28, 28) in [0, 1] and true labels (n,)."""
    images, labels = load_split(root, split)  # (N, 28, 28) uint8, (N,)
    held = held_out_split(len(images), VAL_SIZE, seed)[0][-n:]  # (n,)
    return held, images[held].float().div(255).unsqueeze(1), labels[held]


def project_all(model: Any, digits: Tensor, clf: Any, args: Any, chunk: int = 25) -> dict:
    """Search every digit (`chunk` at a time); the per-digit MSE, labels and the seconds."""
    start = time.perf_counter()
    mse, matched, drawn = [], [], []
    for i in range(0, len(digits), chunk):
        batch = digits[i : i + chunk]  # (c, 1, 28, 28)
        found = search(
            model,
            batch,
            steps=args.steps,
            restarts=args.restarts,
            seed=args.seed + i,  # each chunk its own starting latents, fixed by --seed
            classifier=clf,
        )
        mse += found.mse.tolist()
        matched += classify(clf, found.images)
        drawn += classify(clf, batch)
        print(f"  digits {i}..{i + len(batch) - 1}: mean MSE {found.mse.mean():.4f}", flush=True)
    agree = [a == b for a, b in zip(drawn, matched)]
    return {
        "mse_mean": statistics.mean(mse),
        "mse_std": statistics.stdev(mse) if len(mse) > 1 else 0.0,
        "agreement": sum(agree) / len(agree),
        "seconds": time.perf_counter() - start,
        "mse": [round(v, 5) for v in mse],
        "drawn": drawn,
        "matched": matched,
    }


def train_ours(args: Any, out: Path) -> Path:
    """The default run (`python -m gan.train`) for `--epochs`; its last.ckpt (reused)."""
    run = out / "runs" / "default"
    # metrics.enabled=false: a finished run's status is "no-metric" (no val/fid to rank by)
    common.train_or_reuse(
        run,
        [
            f"seed={args.seed}",
            f"trainer.max_epochs={args.epochs}",
            "metrics.enabled=false",  # no scores are needed here: a busy CPU saves minutes
            *args.overrides,
        ],
        data_root=args.data_root,
        split=args.split,
        fresh=args.fresh,
        finished=("ok", "no-metric"),
    )
    return run / "checkpoints" / "last.ckpt"


def write_markdown(path: Path, result: dict) -> None:
    a = result["args"]
    lines = [
        f"`python -m bench.projection`: {a['digits']} held-out digits of the {a['split']} split "
        f"(indices {result['indices'][0]}..{result['indices'][-1]}, the last of the seed-"
        f"{a['seed']} held-out 1,000), {a['epochs']} epochs each, seed {a['seed']}, "
        f"{a['steps']} steps, {a['restarts']} restarts. {result['machine']}.",
        "",
        "| G | pixel MSE (mean ± std) | label agreement | projection s | training s |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["generators"].items():
        lines.append(
            f"| {name} | {r['mse_mean']:.4f} ± {r['mse_std']:.4f} | {r['agreement']:.2f} | "
            f"{r['seconds']:.0f} | {r['train_seconds']:.0f} |"
        )
    lines.append("")
    lines.append(
        f"Classifier agrees with the true labels on {result['clf_accuracy']:.2f} of the digits."
    )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("projection", __doc__)
    common.add_data_args(p)
    common.add_out_arg(p, "projection")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each G (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="training and search seed (default: 0)")
    p.add_argument("--digits", type=int, default=100, help="held-out digits (default: 100)")
    p.add_argument("--steps", type=int, default=300, help="Adam steps (default: 300)")
    p.add_argument("--restarts", type=int, default=8, help="random starts (default: 8)")
    p.add_argument("--fresh", action="store_true", help="retrain the default run")
    p.add_argument("--no-plain", action="store_true", help="skip the plain loop")
    p.add_argument(
        "overrides", nargs="*", help="gan.train overrides of our run, e.g. noise.dim=100"
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    clf = load_or_train(args.data_root, args.split, False, progress_bar=False)
    indices, digits, truth = held_out_digits(args.data_root, args.split, args.seed, args.digits)
    result: dict = {"args": vars(args), "machine": common.machine(), "indices": indices.tolist()}
    result["clf_accuracy"] = float((torch.tensor(classify(clf, digits)) == truth).float().mean())

    generators: dict[str, dict] = {}
    if not args.no_plain:
        start = time.perf_counter()
        kept: list[nn.Module] = []
        train_plain(
            args.seed, args.epochs, args.data_root, split=args.split, device="cpu", keep=kept
        )
        plain_seconds = time.perf_counter() - start
        print("plain loop's G:", flush=True)
        generators["the plain 100-line DCGAN loop"] = {
            **project_all(PlainModel(kept[0]), digits, clf, args),
            "train_seconds": plain_seconds,
        }

    start = time.perf_counter()
    ckpt = train_ours(args, out)
    ours_seconds = time.perf_counter() - start
    print("the default run's G (EMA):", flush=True)
    extra = f" {' '.join(args.overrides)}" if args.overrides else ""
    generators[f"ours: `python -m gan.train{extra}` (EMA G)"] = {
        **project_all(load_gan(ckpt), digits, clf, args),
        "train_seconds": ours_seconds,
    }
    result["generators"] = generators
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(out / "results.md", result)
    print((out / "results.md").read_text())
    return result


if __name__ == "__main__":
    main()
