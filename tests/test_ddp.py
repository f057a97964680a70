"""DDP on the CPU: one run, two processes (gloo), gradients really averaged across ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from tests.helpers import run_cli, tiny
from tests.mnist_files import write_tiny_mnist


class DumpRankWeights(L.Callback):
    """Each rank saves its own G and D parameters at the end of fit."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        params = {
            k: v.detach().cpu()
            for k, v in pl_module.named_parameters()
            if k.startswith(("generator.", "discriminator."))
        }
        torch.save(params, Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ["condition=none"],
        ["condition=acgan"],
        # the stabilisers: D's power iteration, double backward for R1/R2, augmentation
        [
            "loss=rpgan",
            "stabilize.spectral_norm=true",
            "stabilize.r1=1",
            "stabilize.r2=1",
            "stabilize.reg_every=2",
            "stabilize.diffaug=[translation,cutout]",
        ],
    ],
    ids=["unconditional", "acgan", "stabilisers"],
)
def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path: Path, extra: list[str]) -> None:
    root = tmp_path / "mnist"
    write_tiny_mnist(root, split="train", n=128)
    run = tmp_path / "run"
    res = run_cli(
        "gan.train",
        *tiny(
            "trainer=ddp",
            "trainer.devices=2",
            "model=dcgan",
            *extra,
            "model.generator.base_channels=8",
            "model.discriminator.base_channels=8",
            f"data.root={root}",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
            f"hydra.run.dir={run}",
            "+callbacks.dump._target_=tests.test_ddp.DumpRankWeights",
        ),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = torch.load(run / "rank0.pt"), torch.load(run / "rank1.pt")
    assert r0.keys() == r1.keys() and len(r0) > 0
    # Different data shards on each rank, yet the same weights: the gradients were averaged.
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    metrics = (run / "csv" / "metrics.csv").read_text()
    assert "val/fid" in metrics.splitlines()[0]
    assert len(list((run / "images").glob("grid_*.png"))) == 2  # rank 0 alone writes images
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # 112 train images / 2 ranks / batch 8 = 7 iterations per epoch on each rank
    assert ckpt["gan_iteration"] == 14
    assert all(torch.equal(ckpt["state_dict"][k], r0[k]) for k in r0)


def test_each_rank_gets_a_disjoint_share() -> None:
    from gan.data.batches import EpochBatchSampler

    shares = [
        torch.cat(list(EpochBatchSampler(100, 8, seed=0, rank=r, world_size=2))) for r in (0, 1)
    ]
    assert len(shares[0]) == len(shares[1]) == 48  # 50 each, 6 full batches of 8
    assert not set(shares[0].tolist()) & set(shares[1].tolist())
