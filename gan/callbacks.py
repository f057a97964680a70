"""Callbacks that make a run visible: image grids, real-vs-fake sheets, latent walks, loss curves.

They work with every logger: each image is saved as a PNG in the run folder (rank 0 only),
then sent to W&B as `wandb.Image` and to TensorBoard with `add_image`; the CSV logger has
the files. Enable them through the `callbacks` config group (`callbacks=default`).

- `ImageGrid`: G's images from one fixed batch of noise, and their animation.
- `RealVsFake`: held-out real digits beside generated ones, rows for rows.
- `Interpolation`: strips walking in a straight line (or along the sphere) between two
  fixed latent points; `lerp` and `slerp` are public for `gan.sample`.
- `LossPlot`: `<run>/loss.png`, D's and G's losses over iterations.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.model_helpers import is_overridden
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid, save_image


def log_image(trainer: L.Trainer, key: str, image: Tensor) -> None:
    """Send one image (3, H, W) in [0, 1] to every active logger that shows images."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=trainer.global_step)


def run_dir(trainer: L.Trainer) -> Path:
    """The run folder (Hydra's output dir, passed to the Trainer as default_root_dir)."""
    return Path(trainer.default_root_dir)


def value_range(module: L.LightningModule) -> tuple[float, float]:
    """G's output range, for make_grid's normalisation."""
    return (0.0, 1.0) if module.model_cfg.output == "sigmoid" else (-1.0, 1.0)


def save_png(image: Tensor, path: Path) -> Path:
    """Write an image (C, H, W) in [0, 1] to `path` through a temp file and a rename.

    A viewer (or a crash) never sees half a PNG, which matters for files rewritten every
    epoch such as `loss.png`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_image(image, tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@torch.no_grad()
def generate(
    module: L.LightningModule, z: Tensor, ema: bool | None = None, batch_size: int = 1024
) -> Tensor:
    """G(z) in eval mode, restoring G's train/eval mode (BatchNorm, Dropout) afterwards.

    z (N, noise.dim) -> images float32 (N, C, H, W) in G's output range, computed
    `batch_size` at a time. `ema`: None takes the EMA copy of G when the module keeps one,
    True demands it (GanError without one), False takes G itself.
    """
    generator = (
        module.sampling_generator(ema)
        if hasattr(module, "sampling_generator")
        else module.generator
    )
    was_training = generator.training
    generator.eval()
    try:
        z = z.to(module.device)
        return torch.cat([generator(chunk).float() for chunk in z.split(batch_size)])
    finally:
        generator.train(was_training)


# ---- latent interpolation ------------------------------------------------------------


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points on the straight line from a to b: a, b (..., D), t (T,) in [0, 1] -> (..., T, D).

    `(1 - t) * a + t * b`: exactly a at t=0 and exactly b at t=1. Between two Gaussian
    latents the midpoint is short (norm ~ 0.7 of theirs), a region G rarely saw.
    """
    t = t.to(a).unsqueeze(-1)  # (T, 1)
    return (1 - t) * a.unsqueeze(-2) + t * b.unsqueeze(-2)  # (..., T, D)


def slerp(a: Tensor, b: Tensor, t: Tensor, eps: float = 1e-6) -> Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents): (..., T, D).

    a, b (..., D), t (T,) in [0, 1]. Walks along the great circle between the two
    directions, so points keep the norm of the endpoints when they share one (and stay near
    it for Gaussian latents), unlike `lerp`. Exactly a at t=0 and b at t=1. Near-parallel
    (or opposite) vectors, where sin(angle) ~ 0 makes the formula unstable, fall back to
    `lerp`. Computed in float64, returned in a's dtype.
    """
    a64, b64 = a.double(), b.double()
    t = t.to(a64).unsqueeze(-1)  # (T, 1)
    cos = F.cosine_similarity(a64, b64, dim=-1, eps=1e-12).clamp(-1.0, 1.0)  # (...,)
    omega = torch.acos(cos)[..., None, None]  # (..., 1, 1): the angle between a and b
    sin = torch.sin(omega)
    near = sin.abs() < eps  # parallel or opposite: no unique great circle
    safe = torch.where(near, torch.ones_like(sin), sin)
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / safe)  # (..., T, 1)
    wb = torch.where(near, t, torch.sin(t * omega) / safe)  # (..., T, 1)
    return (wa * a64.unsqueeze(-2) + wb * b64.unsqueeze(-2)).to(a.dtype)  # (..., T, D)


# ---- callbacks -------------------------------------------------------------------------


def _due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """Whether an every-N-epochs callback draws at the end of this epoch."""
    return every_n_epochs > 0 and (trainer.current_epoch + 1) % every_n_epochs == 0


class ImageGrid(L.Callback):
    """A grid of G's images from one fixed batch of noise, every N epochs (or steps).

    The noise is drawn once per run from its own seeded generator (the global RNG is left
    alone) and stored in checkpoints, so a resumed run shows the same digits. Grids go to
    `<run>/images/grid_<epoch>_<step>.png`; at the end of fit they are joined into
    `<run>/images/progress.gif`.
    """

    def __init__(
        self,
        num_samples: int = 64,
        every_n_epochs: int = 1,
        every_n_steps: int = 0,  # 0: by epoch only
        seed: int = 0,
        gif: bool = True,
        gif_ms_per_frame: int = 300,
    ) -> None:
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.seed = seed
        self.gif = gif
        self.gif_ms_per_frame = gif_ms_per_frame
        self.z: Tensor | None = None  # (num_samples, noise.dim), on the CPU
        self.frames: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.z is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.z = pl_module.sample_z(self.num_samples, generator=gen).cpu()

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        if not trainer.is_global_zero or self.z is None:
            return None
        images = generate(pl_module, self.z)
        nrow = max(1, int(len(images) ** 0.5))
        grid = make_grid(images, nrow=nrow, normalize=True, value_range=value_range(pl_module))
        path = run_dir(trainer) / "images"
        path = path / f"grid_epoch{trainer.current_epoch:03d}_step{trainer.global_step:07d}.png"
        save_png(grid, path)
        self.frames.append(str(path))
        log_image(trainer, "samples/fixed_noise", grid)
        return path

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self.every_n_steps > 0 and pl_module.iteration % self.every_n_steps == 0:
            self.draw(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _due(trainer, self.every_n_epochs):
            self.draw(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frames = [f for f in self.frames if Path(f).exists()]
        if not (self.gif and trainer.is_global_zero and frames):
            return
        images = [Image.open(f).convert("P") for f in frames]
        images[0].save(
            run_dir(trainer) / "images" / "progress.gif",
            save_all=True,
            append_images=images[1:],
            duration=self.gif_ms_per_frame,
            loop=0,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z, "frames": self.frames}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.z = state_dict["z"]
        self.frames = list(state_dict.get("frames", []))


def _images_of(batch: Any) -> Tensor | None:
    """The image tensor of a batch: `images` or the first item of `(images, labels, ...)`."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    return None


class RealVsFake(L.Callback):
    """Real digits beside generated ones: a `rows x cols` grid of each, every N epochs.

    The sheet is `[real | white bar | fake]`, so a glance tells how far G is from the data.
    Real images are the first `rows * cols` of the datamodule's validation set (held out,
    fixed order), brought to the model's range by the datamodule's own batch-transfer
    hooks; when there is none, or it holds too few, the first training batches top them
    up (the training loader itself is never iterated: its resume state stays untouched).
    Fakes come from one fixed batch of noise (seeded, kept in checkpoints). Saved as
    `<run>/images/real_vs_fake_epoch<E>.png`, logged as `samples/real_vs_fake`.
    """

    gap: int = 4  # px of white between the two grids

    def __init__(
        self, every_n_epochs: int = 1, rows: int = 8, cols: int = 8, seed: int = 2
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.rows = rows
        self.cols = cols
        self.seed = seed
        self.z: Tensor | None = None  # (rows * cols, noise.dim), on the CPU
        self.real: list[Tensor] = []  # chunks (k, C, H, W) in the model's range, on the CPU

    @property
    def num_images(self) -> int:
        return self.rows * self.cols

    def _num_real(self) -> int:
        return sum(len(x) for x in self.real)

    def _add_real(self, images: Tensor | None) -> None:
        need = self.num_images - self._num_real()
        if images is not None and images.dim() == 4 and images.is_floating_point() and need > 0:
            self.real.append(images[:need].detach().float().cpu())

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.z is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.z = pl_module.sample_z(self.num_images, generator=gen).cpu()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.real:
            return
        dm = trainer.datamodule
        if dm is None or not is_overridden("val_dataloader", dm):
            return
        loader = dm.val_dataloader()
        if isinstance(loader, (list, tuple)):  # [] when there is no held-out set
            loader = loader[0] if loader else None
        if loader is None:
            return
        for batch in loader:
            # The hooks Lightning runs on every batch: uint8 -> float in the model's range.
            batch = dm.on_before_batch_transfer(batch, 0)
            batch = move_data_to_device(batch, pl_module.device)
            self._add_real(_images_of(dm.on_after_batch_transfer(batch, 0)))
            if self._num_real() >= self.num_images:
                break

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # Only until the sheet is full: the batch is already on the device, converted.
        if trainer.is_global_zero and self._num_real() < self.num_images:
            self._add_real(_images_of(batch))

    def sheet(self, pl_module: L.LightningModule) -> Tensor:
        """The image (3, H, 2W + gap) in [0, 1]: real grid, a white bar, fake grid."""
        assert self.z is not None
        fake = generate(pl_module, self.z)  # (rows * cols, C, H, W)
        lo, hi = value_range(pl_module)
        real = torch.cat(self.real) if self.real else fake[:0].cpu()  # (k <= rows * cols, C, h, w)
        if real.shape[-2:] != fake.shape[-2:]:
            real = F.interpolate(real, size=fake.shape[-2:], mode="bilinear", align_corners=False)
        if real.size(1) != fake.size(1):
            real = real.mean(1, keepdim=True).expand(-1, fake.size(1), -1, -1)
        blank = torch.full((self.num_images - len(real), *fake.shape[1:]), lo)  # background
        real = torch.cat([real.to(fake.device), blank.to(fake.device)])  # (rows * cols, C, H, W)
        grids = [
            make_grid(x, nrow=self.cols, normalize=True, value_range=(lo, hi)) for x in (real, fake)
        ]  # (3, rows * (H + 2) + 2, cols * (W + 2) + 2) each
        bar = torch.ones(3, grids[0].size(1), self.gap, device=fake.device)
        return torch.cat([grids[0], bar, grids[1]], dim=2).cpu()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (trainer.is_global_zero and _due(trainer, self.every_n_epochs)) or self.z is None:
            return
        image = self.sheet(pl_module)
        save_png(
            image,
            run_dir(trainer) / "images" / f"real_vs_fake_epoch{trainer.current_epoch:03d}.png",
        )
        log_image(trainer, "samples/real_vs_fake", image)

    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.z = state_dict["z"]


class Interpolation(L.Callback):
    """Latent walks: `rows` strips of `steps` images from one latent point to another.

    Endpoints are drawn once from a generator seeded with `seed` and kept in checkpoints,
    so every epoch (and a resumed run) shows the same walk and only G changes. `spherical`
    walks along the sphere (`slerp`) instead of the straight line (`lerp`). Saved as
    `<run>/images/interpolation_epoch<E>.png`, logged as `samples/interpolation`.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        steps: int = 10,
        rows: int = 4,
        spherical: bool = False,
        seed: int = 1,
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.steps = steps
        self.rows = rows
        self.spherical = spherical
        self.seed = seed
        self.z0: Tensor | None = None  # (rows, noise.dim), on the CPU
        self.z1: Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.z0 is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.z0 = pl_module.sample_z(self.rows, generator=gen).cpu()
            self.z1 = pl_module.sample_z(self.rows, generator=gen).cpu()

    def path(self) -> Tensor:
        """The walk's latents (rows * steps, noise.dim), row by row."""
        assert self.z0 is not None and self.z1 is not None
        t = torch.linspace(0, 1, self.steps)  # (steps,)
        walk = (slerp if self.spherical else lerp)(self.z0, self.z1, t)  # (rows, steps, D)
        return walk.flatten(0, 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (trainer.is_global_zero and _due(trainer, self.every_n_epochs)) or self.z0 is None:
            return
        images = generate(pl_module, self.path())  # (rows * steps, C, H, W)
        grid = make_grid(
            images, nrow=self.steps, normalize=True, value_range=value_range(pl_module)
        )
        save_png(
            grid,
            run_dir(trainer) / "images" / f"interpolation_epoch{trainer.current_epoch:03d}.png",
        )
        log_image(trainer, "samples/interpolation", grid)

    def state_dict(self) -> dict[str, Any]:
        return {"z0": self.z0, "z1": self.z1}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.z0, self.z1 = state_dict["z0"], state_dict["z1"]


class LossPlot(L.Callback):
    """`<run>/loss.png`: the logged losses over iterations, redrawn every epoch and at the end.

    For runs with the CSV logger, which draws nothing (W&B and TensorBoard plot their own
    curves; they get this image too, as `plots/loss`). Values are read from
    `trainer.callback_metrics` every `trainer.log_every_n_steps` batches and at each
    epoch's end (a host sync only then, never every step), against the module's true
    `iteration`. The history is kept in checkpoints, so a resumed run draws the whole curve.
    """

    def __init__(
        self,
        keys: Sequence[str] = ("train/d_loss", "train/g_loss"),
        filename: str = "loss.png",
    ) -> None:
        self.keys = list(keys)
        self.filename = filename
        self.history: dict[str, list[float]] = {"iteration": [], **{k: [] for k in self.keys}}

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Append the current values of `keys` (NaN where one is not logged yet)."""
        it = float(getattr(pl_module, "iteration", trainer.global_step))
        if self.history["iteration"] and self.history["iteration"][-1] == it:
            return  # the epoch's last batch was just read
        values = [trainer.callback_metrics.get(k) for k in self.keys]
        if all(v is None for v in values):
            return
        self.history["iteration"].append(it)
        for k, v in zip(self.keys, values):
            self.history.setdefault(k, []).append(math.nan if v is None else float(v))

    def render(self) -> Tensor:
        """The plot as an image (3, H, W) in [0, 1], drawn with matplotlib's Agg backend."""
        # Imported here: only runs with this callback pay matplotlib's import time. The
        # object API with an Agg canvas leaves pyplot's global backend alone.
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 4), dpi=100)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        its = self.history["iteration"]
        marker = "." if len(its) < 50 else None  # a short run: show its few points
        for k in self.keys:
            ax.plot(its, self.history.get(k, []), label=k, marker=marker, linewidth=1)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4) uint8
        return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float() / 255  # (3, H, W)

    def draw(self, trainer: L.Trainer) -> Path | None:
        if not trainer.is_global_zero or not self.history["iteration"]:
            return None
        image = self.render()
        path = save_png(image, run_dir(trainer) / self.filename)
        log_image(trainer, "plots/loss", image)
        return path

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if (batch_idx + 1) % max(1, trainer.log_every_n_steps) == 0:
            self.record(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record(trainer, pl_module)
        self.draw(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("history", {})
        self.history = {k: list(v) for k, v in saved.items()}
        for k in ("iteration", *self.keys):
            self.history.setdefault(k, [math.nan] * len(self.history.get("iteration", [])))
