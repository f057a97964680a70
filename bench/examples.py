"""Side by side: our training against the two examples users hold us to, same data and machine.

    python -m bench.examples                          # ../shared/mnist test split
    python -m bench.examples --iters 10 --repeats 2 --only dcgan

Each pair runs in this process, interleaved (theirs, then ours, `--repeats` times):

- **PyTorch's DCGAN example** (pytorch/examples, `dcgan/main.py`, `--dataset mnist`): 64x64
  images (torchvision's Resize, ToTensor and Normalize on each PIL image, 2 DataLoader
  workers), batch 64, ngf = ndf = 64, Adam 2e-4 (0.5, 0.999). Each iteration: D on reals
  and on fakes (two backward passes), then G on the same fakes, with D's weights still
  taking gradients; `.item()` of D's outputs every iteration. Written here after it, with
  the same networks as ours (its Sigmoid + BCELoss is our BCE-with-logits).
  Ours: `model=dcgan64` at base_channels=64, batch 64, `perf.reuse_fake=true` (G's update
  reuses the fakes, as the example does), everything else at its defaults.
- **Lightning's GAN example** (`examples/pytorch/domain_templates/generative_adversarial_net.py`
  with `lightning.pytorch.demos.MNISTDataModule`): an MLP G (128-256-512-1024, BatchNorm)
  and D (512-256), batch 32, ToTensor on each PIL image with 16 DataLoader workers (the
  DataModule's defaults), G's update then D's on the same noise, through `trainer.fit`
  with the Trainer's defaults (TQDM bar, TensorBoard logger). Written here after it.
  Ours: the same two networks (`model.generator._target_=...`), batch 32, our defaults.

Images/s count real images consumed (the batch size per iteration), timed between
iterations after warm-ups (median), so the data pipeline counts. Results go to
`<out>/results.{json,md}` (`--out`: default bench/results/examples).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchvision.transforms as T
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST

from bench import common
from gan.data.mnist import load_mnist_split
from gan.nets.dcgan64 import Discriminator as DCGAN64D
from gan.nets.dcgan64 import Generator as DCGAN64G
from gan.perf import timing
from gan.perf.bench import compose_cfg


class PILMNIST(MNIST):
    """torchvision's MNIST dataset (a PIL image per item, then the transform) on the test split.

    torchvision checks for all four raw files even for train=False; the shared folder holds
    the test split only, so the images are read with our loader. Items go through
    torchvision's own `__getitem__`, as in the examples.
    """

    def __init__(self, root: str, transform: Any) -> None:
        self._root = root
        super().__init__(root, train=False, transform=transform)

    def _check_exists(self) -> bool:
        return True

    def _load_data(self) -> tuple[Tensor, Tensor]:
        return load_mnist_split(self._root, "test")


# ---- Lightning's example: its networks (D's logits flattened to (B,), as ours are)
class MLPGenerator(nn.Module):
    """z (B, 100) -> 128 -> 256 -> 512 -> 1024 -> 784, tanh; BatchNorm1d(eps=0.8) as there."""

    img_size: int = 28
    output: str = "tanh"

    def __init__(self, latent_dim: int = 100) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, bn: bool = True) -> list[nn.Module]:
            return [
                nn.Linear(c_in, c_out),
                *([nn.BatchNorm1d(c_out, 0.8)] if bn else []),
                nn.LeakyReLU(0.2, inplace=True),
            ]

        self.net = nn.Sequential(
            *block(latent_dim, 128, bn=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, 784),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, 1, 28, 28)  # (B, 1, 28, 28)


class MLPDiscriminator(nn.Module):
    """(B, 1, 28, 28) -> 512 -> 256 -> logit (B,)."""

    img_size: int = 28

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(-1)  # (B,)


class LightningExampleGAN(L.LightningModule):
    """Lightning's example module: manual optimization, G's update first, then D's."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = MLPGenerator(), MLPDiscriminator()

    def training_step(self, batch: tuple[Tensor, Tensor]) -> None:
        imgs, _ = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(imgs.shape[0], 100).type_as(imgs)
        ones = torch.ones(imgs.size(0)).type_as(imgs)
        self.toggle_optimizer(opt_g)
        g_loss = bce(self.discriminator(self.generator(z)), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.toggle_optimizer(opt_d)
        real_loss = bce(self.discriminator(imgs), ones)
        fake_loss = bce(self.discriminator(self.generator(z).detach()), torch.zeros_like(ones))
        d_loss = (real_loss + fake_loss) / 2
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss})

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        adam = {"lr": 2e-4, "betas": (0.5, 0.999)}
        return (
            torch.optim.Adam(self.generator.parameters(), **adam),
            torch.optim.Adam(self.discriminator.parameters(), **adam),
        )


def theirs_lightning(root: str, iters: int, warmup: int, log_dir: str) -> float:
    """Seconds per iteration of Lightning's example on its DataModule's data pipeline."""
    torch.manual_seed(0)
    data = PILMNIST(root, transform=T.ToTensor())
    loader = DataLoader(
        data, batch_size=32, shuffle=True, num_workers=16, drop_last=True, pin_memory=True
    )
    timer = timing.Timer(warmup, iters)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2 * (warmup + iters + 1),
        callbacks=[timer],
        default_root_dir=log_dir,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(LightningExampleGAN(), loader)
    return timer.s_per_iter()


def theirs_dcgan(root: str, iters: int, warmup: int) -> float:
    """Seconds per iteration of PyTorch's DCGAN example loop and data pipeline."""
    torch.manual_seed(0)
    tf = T.Compose([T.Resize(64), T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    loader = DataLoader(PILMNIST(root, transform=tf), batch_size=64, shuffle=True, num_workers=2)
    g, d = DCGAN64G(100, 64), DCGAN64D(64)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    marks = []
    for i, (real, _) in enumerate(loader):
        if i == warmup + iters + 1:
            break
        d.zero_grad()
        out = d(real)
        label = torch.full((real.size(0),), 1.0)
        bce(out, label).backward()
        d_x = torch.sigmoid(out).mean().item()
        fake = g(torch.randn(real.size(0), 100, 1, 1))
        out = d(fake.detach())
        bce(out, label.fill_(0.0)).backward()
        d_g_z1 = torch.sigmoid(out).mean().item()
        opt_d.step()
        g.zero_grad()
        out = d(fake)
        bce(out, label.fill_(1.0)).backward()
        d_g_z2 = torch.sigmoid(out).mean().item()
        opt_g.step()
        del d_x, d_g_z1, d_g_z2  # the example prints these every iteration
        marks.append(time.perf_counter())
    m = marks[warmup:]
    return statistics.median(b - a for a, b in zip(m, m[1:]))


# The examples' step: one D and one G update per batch, no average of G's weights, and
# their 100 latents
SAME_STEP = ["step_ratio=d1g1", "ema.enabled=false", "noise.dim=100"]
# The Lightning example's networks, by this module's name as imported (not __main__, which
# `python -m bench.examples` runs it as): the same name in every results file
HERE = "bench.examples"
PAIRS: dict[str, dict[str, Any]] = {
    "dcgan": {
        "theirs": "PyTorch's DCGAN example (64x64, ngf = ndf = 64)",
        "batch": 64,
        "model": "dcgan64",
        "overrides": [
            "model.generator.base_channels=64",
            "model.discriminator.base_channels=64",
            *SAME_STEP,
            "perf.reuse_fake=true",
        ],
    },
    "lightning": {
        "theirs": "Lightning's GAN example (MLP 128-256-512-1024)",
        "batch": 32,
        "model": "mlp",
        "overrides": [
            f"model.generator._target_={HERE}.MLPGenerator",
            "~model.generator.hidden",
            f"model.discriminator._target_={HERE}.MLPDiscriminator",
            "~model.discriminator.hidden",
            "trust_code=true",  # networks of this file's own, outside gan.nets' registry
            *SAME_STEP,
            "perf.reuse_fake=false",  # its D update draws fresh fakes
        ],
    },
}


def main(argv: list[str] | None = None) -> None:
    p = common.parser("examples", __doc__)
    p.add_argument("--only", choices=list(PAIRS), nargs="+", default=list(PAIRS))
    p.add_argument("--iters", type=int, default=0, help="timed iterations (default: per pair)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    common.add_data_args(p, split=False)
    common.add_out_arg(p, "examples")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            pair = PAIRS[name]
            iters = args.iters or (8 if name == "dcgan" else 100)  # dcgan64: ~1 s an iteration
            cfg = compose_cfg(
                pair["model"],
                pair["batch"],
                args.data_root,
                os.path.join(tmp, name),
                pair["overrides"],
            )
            runs = []
            for r in range(args.repeats):
                if name == "dcgan":
                    t = theirs_dcgan(args.data_root, iters, args.warmup)
                else:
                    t = theirs_lightning(
                        args.data_root, iters, args.warmup, os.path.join(tmp, f"pl{r}")
                    )
                o = timing.run_lightning(cfg, iters, args.warmup, "cpu")["s_per_iter"]
                runs.append((t, o))
                print(
                    f"{name} repeat {r}: theirs {pair['batch'] / t:.0f} img/s, "
                    f"ours {pair['batch'] / o:.0f} img/s",
                    flush=True,
                )
            theirs = statistics.median(t for t, _ in runs)
            ours = statistics.median(o for _, o in runs)
            rows.append(
                {
                    "pair": name,
                    "theirs": pair["theirs"],
                    "batch_size": pair["batch"],
                    "ours_overrides": [f"model={pair['model']}", *pair["overrides"]],
                    "theirs_img_s": pair["batch"] / theirs,
                    "ours_img_s": pair["batch"] / ours,
                    "ours_over_theirs": statistics.median(t / o for t, o in runs),
                }
            )
    write(rows, Path(args.out), args)


def write(rows: list[dict[str, Any]], out: Path, args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    machine = common.machine()
    meta = {
        "machine": machine,
        "torch": torch.__version__,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "data": f"{args.data_root} (test split)",
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"Machine: {machine}; the MNIST test split; `python -m bench.examples`; "
        f"{args.repeats} interleaved repeats, medians.",
        "",
        "| example | batch | theirs img/s | ours img/s | ours / theirs |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['theirs']} | {r['batch_size']} | {r['theirs_img_s']:.0f} | "
        f"{r['ours_img_s']:.0f} | {r['ours_over_theirs']:.2f} |"
        for r in rows
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
