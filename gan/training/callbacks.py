"""Callbacks that make a run visible: image grids, real-vs-fake sheets, latent walks, loss curves.

They work with every logger: each image is saved as a PNG in the run folder (rank 0 only),
then sent to W&B as `wandb.Image` and to TensorBoard with `add_image`; the CSV logger has
the files. Enable them through the `callbacks` config group (`callbacks=default`).

- `ImageGrid`: G's images from one fixed batch of noise, and their animation.
- `RealVsFake`: held-out real digits beside generated ones, rows for rows.
- `Interpolation`: strips walking in a straight line (or along the sphere) between two
  fixed latent points.
- `LossPlot`: `<run>/loss.png`, D's and G's losses over iterations.

The three image callbacks share `ImageCallback`; drawing from G is `gan.core.sampling`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.model_helpers import is_overridden
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid, save_image

from gan.core.ranges import value_range
from gan.core.sampling import generate, lerp, walk
from gan.utils.files import atomic_write

if TYPE_CHECKING:
    from gan.training.module import GAN


def log_image(trainer: L.Trainer, key: str, image: Tensor) -> None:
    """Send one image (3, H, W) in [0, 1] to every active logger that shows images."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=trainer.global_step)


def save_png(image: Tensor, path: Path) -> Path:
    """Write an image (C, H, W) in [0, 1] to `path` atomically (see gan.utils.files.atomic_write)."""
    return atomic_write(path, lambda tmp: save_image(image, tmp, format="PNG"))


def grid(images: Tensor, nrow: int, output: str) -> Tensor:
    """make_grid of G's images (N, C, H, W) in the range of `output`: (3, H', W') in [0, 1]."""
    return make_grid(images, nrow=nrow, normalize=True, value_range=value_range(output))


class ImageCallback(L.Callback):
    """The shared skeleton of the image callbacks.

    Noise is drawn once per run from its own seeded generator (the global RNG is left
    alone) and kept in checkpoints, so every epoch, and a resumed run, shows the same
    latents and only G changes. Every `every_n_epochs` epochs, on rank 0, `render()`
    makes an image (3, H, W) in [0, 1]; it is saved as `<run>/images/<name>_epoch<E>.png`
    and sent to the loggers as `samples/<name>`.
    """

    name = "image"

    def __init__(self, every_n_epochs: int = 1, seed: int = 0, num_z: int = 64) -> None:
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.num_z = num_z
        self.z: Tensor | None = None  # (num_z, noise.dim), on the CPU

    def setup(self, trainer: L.Trainer, pl_module: GAN, stage: str) -> None:
        if self.z is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.z = pl_module.sample_z(self.num_z, generator=gen).cpu()

    def render(self, trainer: L.Trainer, pl_module: GAN) -> Tensor:
        raise NotImplementedError

    def publish(self, trainer: L.Trainer, image: Tensor, filename: str) -> Path:
        path = save_png(image, Path(trainer.default_root_dir) / "images" / filename)
        log_image(trainer, f"samples/{self.name}", image)
        return path

    def draw(self, trainer: L.Trainer, pl_module: GAN) -> Path | None:
        if not trainer.is_global_zero or self.z is None:
            return None
        image = self.render(trainer, pl_module)
        return self.publish(trainer, image, f"{self.name}_epoch{trainer.current_epoch:03d}.png")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: GAN) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.z = state_dict.get("z", self.z)  # a checkpoint of an older version: keep ours


class ImageGrid(ImageCallback):
    """A grid of G's images from one fixed batch of noise, every N epochs (or steps); for a
    conditional G, one row per class.

    Grids go to `<run>/images/grid_epoch<E>_step<S>.png` (logged as `samples/fixed_noise`);
    at the end of fit they are joined into `<run>/images/progress.gif`.
    """

    name = "fixed_noise"

    def __init__(
        self,
        num_samples: int = 64,
        every_n_epochs: int = 1,
        every_n_steps: int = 0,  # 0: by epoch only
        seed: int = 0,
        gif: bool = True,
        gif_ms_per_frame: int = 300,
    ) -> None:
        super().__init__(every_n_epochs, seed, num_samples)
        self.every_n_steps = every_n_steps
        self.gif = gif
        self.gif_ms_per_frame = gif_ms_per_frame
        self.frames: list[str] = []

    def render(self, trainer: L.Trainer, pl_module: GAN) -> Tensor:
        k = pl_module.num_classes
        if not k:
            images = generate(pl_module, self.z)
            return grid(images, max(1, int(len(images) ** 0.5)), pl_module.cfg.model.output)
        # Conditional: one row per class (26 at most), the same latents in every row.
        rows, cols = min(k, 26), min(len(self.z), 8)
        z = self.z[:cols].repeat(rows, 1)  # (rows * cols, D)
        labels = torch.arange(rows).repeat_interleave(cols)  # (rows * cols,)
        return grid(generate(pl_module, z, labels), cols, pl_module.cfg.model.output)

    def draw(self, trainer: L.Trainer, pl_module: GAN) -> Path | None:
        if not trainer.is_global_zero or self.z is None:
            return None
        name = f"grid_epoch{trainer.current_epoch:03d}_step{trainer.global_step:07d}.png"
        path = self.publish(trainer, self.render(trainer, pl_module), name)
        self.frames.append(str(path))
        return path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GAN, *args: Any) -> None:
        if self.every_n_steps > 0 and pl_module.iteration % self.every_n_steps == 0:
            self.draw(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: GAN) -> None:
        frames = [f for f in self.frames if Path(f).exists()]
        if not (self.gif and trainer.is_global_zero and frames):
            return
        images = [Image.open(f).convert("P") for f in frames]
        atomic_write(
            Path(trainer.default_root_dir) / "images" / "progress.gif",
            lambda tmp: images[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=images[1:],
                duration=self.gif_ms_per_frame,
                loop=0,
            ),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z, "frames": self.frames}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.frames = list(state_dict.get("frames", []))


def _images_of(batch: Any) -> Tensor | None:
    """The image tensor of a batch: `images` or the first item of `(images, labels, ...)`."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    return None


class RealVsFake(ImageCallback):
    """Real digits beside generated ones: a `rows x cols` grid of each, every N epochs.

    The sheet is `[real | white bar | fake]`, so a glance tells how far G is from the data.
    Real images are the first `rows * cols` of the datamodule's validation set (held out,
    fixed order), brought to the model's range by the datamodule's own batch-transfer
    hooks; when there is none, or it holds too few, the first training batches top them
    up (the training loader itself is never iterated: its resume state stays untouched).
    Saved as `<run>/images/real_vs_fake_epoch<E>.png`, logged as `samples/real_vs_fake`.
    """

    name = "real_vs_fake"
    gap: int = 4  # px of white between the two grids

    def __init__(
        self, every_n_epochs: int = 1, rows: int = 8, cols: int = 8, seed: int = 2
    ) -> None:
        super().__init__(every_n_epochs, seed, rows * cols)
        self.rows, self.cols = rows, cols
        self.real: list[Tensor] = []  # chunks (k, C, H, W) in the model's range, on the CPU

    def _num_real(self) -> int:
        return sum(len(x) for x in self.real)

    def _add_real(self, images: Tensor | None) -> None:
        need = self.num_z - self._num_real()
        if images is not None and images.dim() == 4 and images.is_floating_point() and need > 0:
            self.real.append(images[:need].detach().float().cpu())

    def on_train_start(self, trainer: L.Trainer, pl_module: GAN) -> None:
        dm = trainer.datamodule
        if (
            not trainer.is_global_zero
            or self.real
            or dm is None
            or not is_overridden("val_dataloader", dm)
        ):
            return
        loader = dm.val_dataloader()
        if isinstance(loader, (list, tuple)):  # [] when there is no held-out set
            loader = loader[0] if loader else None
        for batch in loader or []:
            # The hooks Lightning runs on every batch: uint8 -> float in the model's range.
            batch = move_data_to_device(dm.on_before_batch_transfer(batch, 0), pl_module.device)
            self._add_real(_images_of(dm.on_after_batch_transfer(batch, 0)))
            if self._num_real() >= self.num_z:
                break

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: GAN, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Only until the sheet is full: the batch is already on the device, converted.
        if trainer.is_global_zero and self._num_real() < self.num_z:
            self._add_real(_images_of(batch))

    def render(self, trainer: L.Trainer | None, pl_module: GAN) -> Tensor:
        """The image (3, H, 2W + gap) in [0, 1]: real grid, a white bar, fake grid."""
        k = pl_module.num_classes  # conditional: the classes in turn
        labels = torch.arange(len(self.z)) % k if k else None
        fake = generate(pl_module, self.z, labels)  # (rows * cols, C, H, W)
        output = pl_module.cfg.model.output
        real = torch.cat(self.real) if self.real else fake[:0].cpu()  # (k <= rows * cols, C, h, w)
        if real.shape[-2:] != fake.shape[-2:]:
            real = F.interpolate(real, size=fake.shape[-2:], mode="bilinear", align_corners=False)
        if real.size(1) != fake.size(1):
            real = real.mean(1, keepdim=True).expand(-1, fake.size(1), -1, -1)
        blank = torch.full((self.num_z - len(real), *fake.shape[1:]), value_range(output)[0])
        real = torch.cat([real.to(fake.device), blank.to(fake.device)])  # (rows * cols, C, H, W)
        real_grid, fake_grid = grid(real, self.cols, output), grid(fake, self.cols, output)
        bar = torch.ones(3, real_grid.size(1), self.gap, device=fake.device)
        return torch.cat([real_grid, bar, fake_grid], dim=2).cpu()


class Interpolation(ImageCallback):
    """Latent walks: `rows` strips of `steps` images from one latent point to another.

    `spherical` walks along the sphere (`slerp`) instead of the straight line (`lerp`).
    For a conditional G, half the rows walk in z at a fixed class and half walk from one
    class to the next at a fixed z.
    Saved as `<run>/images/interpolation_epoch<E>.png`, logged as `samples/interpolation`.
    """

    name = "interpolation"

    def __init__(
        self,
        every_n_epochs: int = 1,
        steps: int = 10,
        rows: int = 4,
        spherical: bool = False,
        seed: int = 1,
    ) -> None:
        super().__init__(every_n_epochs, seed, 2 * rows)  # each walk's start and end
        self.steps, self.rows, self.spherical = steps, rows, spherical

    def path(self) -> Tensor:
        """The walk's latents (rows * steps, noise.dim), row by row."""
        assert self.z is not None
        return walk(self.z[: self.rows], self.z[self.rows :], self.steps, self.spherical)

    def render(self, trainer: L.Trainer, pl_module: GAN) -> Tensor:
        k = pl_module.num_classes
        if not k:
            images = generate(pl_module, self.path())  # (rows * steps, C, H, W)
            return grid(images, self.steps, pl_module.cfg.model.output)
        # Conditional: the first half of the rows walk in z at a fixed class, the others
        # from one class to the next at a fixed z (through mixtures of the two labels).
        half, t = max(1, self.rows // 2), torch.linspace(0, 1, self.steps)
        z = torch.cat(
            [
                self.path()[: half * self.steps],
                self.z[half : self.rows].repeat_interleave(self.steps, 0),
            ]
        )
        eye = torch.eye(k)
        fixed = [eye[r % k].expand(self.steps, k) for r in range(half)]
        moving = [lerp(eye[r % k], eye[(r + 1) % k], t) for r in range(half, self.rows)]
        labels = torch.cat(fixed + moving)  # (rows * steps, k) class mixtures
        return grid(generate(pl_module, z, labels), self.steps, pl_module.cfg.model.output)


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
        it = float(pl_module.iteration)
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
        path = save_png(image, Path(trainer.default_root_dir) / self.filename)
        log_image(trainer, "plots/loss", image)
        return path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GAN, *args: Any) -> None:
        if pl_module.iteration % max(1, trainer.log_every_n_steps) == 0:
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
