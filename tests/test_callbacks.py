"""The callbacks: what a short run leaves in its folder, latent walks, eval mode, resume."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from gan.core.sampling import generate, lerp, slerp
from gan.training.callbacks import Interpolation, LossPlot
from gan.training.module import GAN
from gan.training.run import train
from gan.utils.errors import GanError

MakeCfg = Callable[..., DictConfig]
TILE = 28 + 2  # a 28px image and make_grid's padding of 2


def grid_px(rows: int, cols: int) -> tuple[int, int]:
    """(width, height) of a make_grid of rows x cols 28px images, default padding."""
    return cols * TILE + 2, rows * TILE + 2


def callback_state(ckpt: Path, name: str) -> dict:
    return torch.load(ckpt, weights_only=True)["callbacks"][name]


def test_a_short_run_leaves_every_image_in_the_run_folder(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("model=mlp", "trainer.max_epochs=2", "trainer.log_every_n_steps=2")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    images = run / "images"
    assert (images / "progress.gif").exists()

    # 8x8 real beside 8x8 fake, a 4px white bar between: real from the 16 held-out images
    # topped up from training batches (tiny data has too few held out)
    w, h = grid_px(8, 8)
    for epoch in (0, 1):
        with Image.open(images / f"real_vs_fake_epoch{epoch:03d}.png") as sheet:
            assert sheet.size == (2 * w + 4, h)
            px = torch.tensor(list(sheet.convert("L").getdata()), dtype=torch.float).view(h, -1)
    real, bar, fake = px[:, :w], px[:, w : w + 4], px[:, w + 4 :]
    assert (bar == 255).all()
    assert real[2:-2, 2:-2].std() > 10 and fake[2:-2, 2:-2].std() > 10  # no blank tiles' grid
    assert not torch.equal(real, fake)

    with Image.open(images / "interpolation_epoch001.png") as strip:
        assert strip.size == grid_px(4, 10)  # 4 walks of 10 steps
    with Image.open(run / "loss.png") as plot:
        assert plot.format == "PNG" and min(plot.size) > 100

    # losses read every 2nd batch of 6 per epoch, against the true iteration
    history = callback_state(run / "checkpoints" / "last.ckpt", "LossPlot")["history"]
    assert history["iteration"] == [2, 4, 6, 8, 10, 12]
    assert all(math.isfinite(v) for k in ("train/d_loss", "train/g_loss") for v in history[k])


def test_resume_keeps_the_loss_history_and_the_walk(make_cfg: MakeCfg, tmp_path: Path) -> None:
    first = make_cfg("model=mlp", "trainer.max_epochs=1", "trainer.log_every_n_steps=3")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    before = callback_state(last, "LossPlot")["history"]
    walk_before = callback_state(last, "Interpolation")
    assert before["iteration"] == [3, 6]

    second = make_cfg(
        "model=mlp", "trainer.max_epochs=2", "trainer.log_every_n_steps=3", f"ckpt_path={last}"
    )
    second.paths.output_dir = str(tmp_path / "resumed")
    train(second)  # continues in the first run's folder
    resumed = last
    after = callback_state(resumed, "LossPlot")["history"]
    assert after["iteration"] == [3, 6, 9, 12]
    assert after["train/d_loss"][:2] == before["train/d_loss"]
    assert (Path(first.paths.output_dir) / "loss.png").exists()
    walk_after = callback_state(resumed, "Interpolation")
    assert torch.equal(walk_before["z"], walk_after["z"])  # both ends of every walk


def test_callback_states_round_trip() -> None:
    plot = LossPlot()
    plot.history = {"iteration": [1.0, 2.0], "train/d_loss": [0.7, 0.6], "train/g_loss": [0.9, 0.8]}
    copy = LossPlot()
    copy.load_state_dict(plot.state_dict())
    assert copy.history == plot.history
    assert copy.render().shape[0] == 3  # draws without a trainer

    walk = Interpolation(rows=2)
    walk.z = torch.randn(4, 5)  # 2 starts, then 2 ends
    other = Interpolation(rows=2)
    other.load_state_dict(walk.state_dict())
    assert torch.equal(other.path(), walk.path())
    assert walk.path().shape == (2 * 10, 5)


def test_slerp_endpoints_norms_and_parallel_vectors() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 100, generator=g), torch.randn(4, 100, generator=g)  # (4, D)
    t = torch.linspace(0, 1, 9)  # (9,)
    for fn in (lerp, slerp):
        walk = fn(a, b, t)  # (4, 9, D)
        assert walk.shape == (4, 9, 100)
        torch.testing.assert_close(walk[:, 0], a)
        torch.testing.assert_close(walk[:, -1], b)

    # equal norms stay equal along the sphere; Gaussian latents keep their usual norm
    unit_a, unit_b = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(slerp(unit_a, unit_b, t).norm(dim=-1), torch.ones(4, 9))
    ends = torch.stack([a.norm(dim=-1), b.norm(dim=-1)])  # (2, 4)
    mid_slerp, mid_lerp = slerp(a, b, t)[:, 4].norm(dim=-1), lerp(a, b, t)[:, 4].norm(dim=-1)
    assert (mid_slerp > 0.9 * ends.min(0).values).all()
    assert (mid_slerp < 1.1 * ends.max(0).values).all()
    assert (mid_lerp < 0.85 * mid_slerp).all()  # the straight line cuts through the middle

    # (near-)parallel vectors: the formula would divide by ~0; slerp falls back to lerp
    for other in (a, 2 * a, a + 1e-7):
        walk = slerp(a, other, t)
        assert torch.isfinite(walk).all()
        torch.testing.assert_close(walk, lerp(a, other, t))


def test_generate_runs_eval_mode_and_restores_the_mode(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("model=dcgan", "ema.enabled=false")  # G itself, not its average
    module = GAN.from_config(cfg)
    modes: list[bool] = []
    module.generator.register_forward_pre_hook(lambda m, _: modes.append(m.training))
    z = module.sample_z(3)
    for training in (True, False):
        module.train(training)
        images = generate(module, z, batch_size=2)  # two chunks
        assert images.shape == (3, 1, 28, 28)
        assert all(m.training == training for m in module.generator.modules())
    assert modes == [False] * 4  # G ran in eval mode every time
    with pytest.raises(GanError, match="no EMA weights"):
        generate(module, z, ema=True)
