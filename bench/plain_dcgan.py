"""A plain PyTorch DCGAN for 28x28 MNIST: the reference loop our framework's default must beat.

    python -m bench.plain_dcgan --seeds 0 1 2 --epochs 10       # ../shared/mnist test split
    python -m bench.plain_dcgan --seeds 0 --max-seconds 60      # quality within a time budget

This is the loop a user writes from the classic tutorials (PyTorch's DCGAN example, shrunk
to 28x28): two small conv nets with BatchNorm, DCGAN's N(0, 0.02) init, Adam(2e-4, 0.5),
batch 128, BCE-with-logits with the non-saturating G loss, and G's update reusing the
fakes of D's update (D on fake.detach(), then G's loss on D(fake)). No Lightning, no
Hydra: the networks and the loop are written out below, in about 100 lines.

Everything that is *not* being compared is the framework's, so that the scores line up
with its `val/*` logs: the train/held-out split (`gan.data.datamodule.MNISTDataModule`, seeded), the
classifier, `gan.metrics.scores.GanMetrics`, the sample sizes (1,000 fakes from z seeded with
1234, G in eval mode, against the 1,000 held-out reals) and the clock (`seconds` is wall
time of training so far, validation included, as `val/elapsed_s`).

Writes `<out>/results.json` (per seed: one dict per epoch with every 0-dim score and the
seconds) and `<out>/results.md` (`--out`: default bench/results/plain_dcgan);
`train_plain(seed, epochs, data_root)` is importable.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench import common
from gan.core.ranges import to_unit_range
from gan.data.datamodule import MNISTDataModule
from gan.metrics.classifier import load_or_train
from gan.metrics.scores import GanMetrics

LATENT = 100

# ---- the reference: networks and loop in plain PyTorch --------------------------------------


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(  # (B, 100) -> (B, 128*7*7)
            nn.Linear(LATENT, 128 * 7 * 7, bias=False),
            nn.BatchNorm1d(128 * 7 * 7),
            nn.ReLU(True),
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),  # (B, 64, 14, 14)
            nn.BatchNorm2d(64),
            nn.ReLU(True),
            nn.ConvTranspose2d(64, 1, 4, 2, 1),  # (B, 1, 28, 28)
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:  # z (B, 100) -> images (B, 1, 28, 28) in [-1, 1]
        return self.net(self.fc(z).view(-1, 128, 7, 7))


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1),  # (B, 64, 14, 14); no BatchNorm on the input layer
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False),  # (B, 128, 7, 7)
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            nn.Flatten(),  # (B, 128*7*7)
            nn.Linear(128 * 7 * 7, 1),  # (B, 1)
        )

    def forward(self, x: Tensor) -> Tensor:  # x (B, 1, 28, 28) -> logits (B,)
        return self.net(x).squeeze(1)


def weights_init(m: nn.Module) -> None:
    """DCGAN: conv/linear weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02), biases 0."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def train_plain(
    seed: int,
    epochs: int,
    data_root: str | Path,
    max_seconds: float | None = None,  # stop once this much wall time has passed (then validate)
    split: str = "test",
    batch_size: int = 128,
    val_size: int = 1000,
    num_samples: int = 1000,  # fakes per validation: the framework's metrics.num_samples
    classifier_epochs: int = 5,  # only used when no classifier is cached yet
    device: str | None = None,
    report: Callable[[dict], None] | None = None,  # called with each epoch's dict
    keep: list[nn.Module] | None = None,  # the trained G is appended to it (bench.projection)
) -> list[dict]:
    """Train the reference DCGAN; one dict per epoch: epoch, iterations, seconds, scores."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    L.seed_everything(seed, verbose=False)
    dm = MNISTDataModule(
        root=str(data_root),
        download=False,
        split=split,
        val_size=val_size,
        batch_size=batch_size,
        seed=seed,
        value_range="tanh",
    )
    dm.setup("fit")  # the framework's split: val_size held-out images drawn with `seed`
    data = dm.to_model_range(dm.train_set.images).to(device)  # (N, 1, 28, 28) in [-1, 1]
    val_real = to_unit_range(dm.to_model_range(dm.val_set.images), "tanh")  # in [0, 1]
    clf = load_or_train(
        str(data_root), split, False, max_epochs=classifier_epochs, progress_bar=False
    )
    metrics = GanMetrics(clf).to(device)

    G, D = Generator().to(device), Discriminator().to(device)
    G.apply(weights_init)
    D.apply(weights_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits
    ones = torch.ones(batch_size, device=device)
    zeros = torch.zeros(batch_size, device=device)
    shuffle = torch.Generator().manual_seed(seed)
    n_batches = len(data) // batch_size  # drop_last, as the framework's loader

    history, iterations, floor = [], 0, {}
    start = time.perf_counter()  # the framework's clock starts at on_train_start
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(data), generator=shuffle).to(device)  # a new order per epoch
        out_of_time = False
        for i in range(n_batches):
            real = data[perm[i * batch_size : (i + 1) * batch_size]]  # (B, 1, 28, 28)
            fake = G(torch.randn(batch_size, LATENT, device=device))  # (B, 1, 28, 28)
            # D: real -> 1, fake -> 0 (fake detached: no gradient into G)
            d_loss = bce(D(real), ones) + bce(D(fake.detach()), zeros)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            # G: the non-saturating loss, on the same fakes through the updated D
            g_loss = bce(D(fake), ones)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            iterations += 1
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                out_of_time = True
                break
        # ---- validation, on the clock (as in the framework, set_real runs at the first one)
        if not floor:
            floor = metrics.set_real(val_real)
        row = {"epoch": epoch, "iterations": iterations, "d_loss": d_loss.item()}
        row |= {"g_loss": g_loss.item(), **validate(G, metrics, num_samples, device)}
        if len(history) == 0:
            row |= floor  # fid_floor, kid_floor: logged once, as val/fid_floor
        row["seconds"] = time.perf_counter() - start
        if out_of_time:
            row["partial"] = True  # stopped by max_seconds within this epoch
        history.append(row)
        if report is not None:
            report(row)
        if out_of_time:
            break
    if keep is not None:
        keep.append(G.eval())
    return history


# ---- scoring: the framework's metrics, as its on_validation_epoch_end computes them ---------


@torch.no_grad()
def validate(G: nn.Module, metrics: GanMetrics, num_samples: int, device: torch.device) -> dict:
    """Every 0-dim score of `num_samples` fakes from z seeded with 1234, G in eval mode."""
    z = torch.randn(num_samples, LATENT, generator=torch.Generator().manual_seed(1234))
    G.eval()
    try:
        fake = torch.cat([G(c.to(device)).float() for c in z.split(500)])  # (N, 1, 28, 28)
    finally:
        G.train()
    scores = metrics.compute(to_unit_range(fake, "tanh"))
    return {k: float(v) for k, v in scores.items() if v.dim() == 0}


# ---- the command line ------------------------------------------------------------------------

COLUMNS = ("epoch", "seconds", "fid", "precision", "recall", "coverage")


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    if key == "epoch":
        return f"{v}{'*' if row.get('partial') else ''}"
    return f"{v:.1f}" if key in ("seconds", "fid") else f"{v:.3f}"


def write_markdown(path: Path, result: dict) -> None:
    runs = result["seeds"]
    lines = [
        "# Plain PyTorch DCGAN-28 (bench.plain_dcgan)",
        "",
        f"Machine: {result['machine']}. Command: `{result['command']}`.",
        "Scores: the framework's metrics (1,000 fakes, z seed 1234, G in eval mode, against "
        "the 1,000 held-out reals); seconds: wall time of training so far, validation "
        "included (`*`: stopped by --max-seconds within that epoch).",
        "",
    ]
    for seed, rows in runs.items():
        floor = rows[0].get("fid_floor") if rows else None
        lines += [f"## Seed {seed}" + (f" (real-vs-real FID floor {floor:.2f})" if floor else "")]
        lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_cell(r, k) for k in COLUMNS) + " |" for r in rows]
        lines += [""]
    finals = [rows[-1] for rows in runs.values() if rows]
    keys = ("seconds", "fid", "kid", "precision", "recall", "coverage")
    lines += ["## Last validation, over seeds (mean ± std)", "", "| score | value |", "|---|---|"]
    for k in keys:
        vals = [r[k] for r in finals if k in r and math.isfinite(r[k])]
        lines += [f"| {k} | {common.mean_std(vals, '.3f')} |"]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("plain_dcgan", __doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=None)
    common.add_data_args(p)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    common.add_out_arg(p, "plain_dcgan")
    args = p.parse_args(argv)
    command = "python -m bench.plain_dcgan " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"machine": common.machine(), "command": command, "seeds": {}}
    header = "".join(f"{c:>11}" for c in COLUMNS)
    for seed in args.seeds:
        print(f"seed {seed}\n{header}", flush=True)

        def report(row: dict) -> None:
            print("".join(f"{_cell(row, c):>11}" for c in COLUMNS), flush=True)

        result["seeds"][str(seed)] = train_plain(
            seed,
            args.epochs,
            args.data_root,
            args.max_seconds,
            split=args.split,
            device=args.device,
            report=report,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(out / "results.md", result)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return result


if __name__ == "__main__":
    main()
