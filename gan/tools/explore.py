"""What `gan.app` shows, without the UI: sample grids, latent walks, and the collapse gauge
(the project classifier's class histogram and the FID-like, coverage and MNIST scores of
fresh samples, against the real floor)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan.utils.errors import GanError, first_line

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from gan.training.module import GAN

SCALE = 3  # nearest-neighbour upscaling of the images: 28 px digits are tiny on screen
PAD = 2  # pixels between images, as make_grid's (and gan.sample's) default
PER_ROW = "one row per class"  # the class picker's first option (conditional models)
GAUGE_REALS = 1000  # reals measured against when the run's held-out set is unknown


# ---- drawing ---------------------------------------------------------------------------


def num_classes(module: GAN) -> int:
    """The classes a conditional generator takes (0: unconditional)."""
    return int(getattr(module, "num_classes", 0) or 0)


def class_labels(module: GAN, choice: str | None, n: int, nrow: int) -> Tensor | None:
    """The labels to draw `n` images with: None for an unconditional model.

    `choice` is the class picker's value: PER_ROW (row r shows class r mod K, so a grid of
    K rows shows each class once) or a class index as text.
    """
    import torch

    k = num_classes(module)
    if k == 0:
        return None
    if choice is None or choice == PER_ROW:
        return (torch.arange(n) // nrow) % k  # (n,)
    return torch.full((n,), int(choice), dtype=torch.long)  # (n,)


def generate_images(
    module: GAN, z: Tensor, labels: Tensor | None = None, ema: bool | None = None
) -> Tensor:
    """G's images for z (N, D) (and labels (N,) for a conditional model), in [0, 1]."""
    from gan.core.ranges import to_unit_range
    from gan.core.sampling import generate

    extra = {} if labels is None else {"labels": labels.to(module.device)}
    images = generate(module, z, ema=ema, **extra)  # (N, C, H, W) in G's range
    return to_unit_range(images, module.cfg.model.output).cpu()


def latents(module: GAN, seed: int, n: int) -> Tensor:
    """n latent vectors (n, D) from `seed`: the same seed, the same vectors, on any device."""
    import torch

    return module.sample_z(n, generator=torch.Generator().manual_seed(int(seed)))


def to_picture(images: Tensor, nrow: int) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] -> a grid picture, uint8 (H', W') or (H', W', 3)."""
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=nrow, padding=PAD)  # (3, H', W'): grey images repeated
    grid = grid.repeat_interleave(SCALE, dim=1).repeat_interleave(SCALE, dim=2)
    pixels = (grid * 255).round().byte().permute(1, 2, 0).numpy()  # (H', W', 3)
    return pixels[..., 0] if images.shape[1] == 1 else pixels


def sample_grid(
    module: GAN,
    seed: int,
    side: int,
    choice: str | None = None,
    ema: bool | None = None,
    psi: float = 1.0,
) -> np.ndarray:
    """A side x side grid of samples from `seed` (a picture, see `to_picture`), its latents
    truncated at `psi` (gan.core.sampling.truncate; 1: as drawn)."""
    from gan.core.sampling import truncate

    side = int(side)
    n = side * side
    labels = class_labels(module, choice, n, side)
    z = truncate(latents(module, seed, n), psi, module.cfg.noise.dist)  # (n, D)
    return to_picture(generate_images(module, z, labels, ema), side)


def interpolation(
    module: GAN,
    seed_a: int,
    seed_b: int,
    steps: int,
    spherical: bool,
    position: float,
    choice: str | None = None,
    ema: bool | None = None,
    psi: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The strip of `steps` images from seed_a's latent to seed_b's, and the image at
    `position` in [0, 1] along the same path (straight, or along the sphere), every latent
    truncated at `psi` (1: as drawn)."""
    import torch

    from gan.core.sampling import lerp, slerp, truncate, walk

    z0, z1 = latents(module, seed_a, 1), latents(module, seed_b, 1)  # (1, D) each
    steps = int(steps)
    z = walk(z0, z1, steps, spherical)  # (steps, D)
    t = torch.tensor([float(position)])
    here = (slerp if spherical else lerp)(z0, z1, t).flatten(0, 1)  # (1, D)
    labels = class_labels(module, choice, steps + 1, steps + 1)  # one class for the whole walk
    z = truncate(torch.cat([z, here]), psi, module.cfg.noise.dist)  # (steps + 1, D)
    images = generate_images(module, z, labels, ema)  # (steps + 1, C, H, W)
    return to_picture(images[:steps], steps), to_picture(images[steps:], 1)


def classifier_file(root: str, split: str, dataset: str = "mnist") -> Path:
    """Where `load_or_train` caches the classifier of this data: known without training one.

    GanError when the data is not on disk (the key is a hash of the training images).
    """
    from gan.data.mnist import spec
    from gan.metrics.classifier import cache_dir, classifier_key, training_data

    if spec(dataset).source == "mnist":  # stacked_mnist uses MNIST's classifier
        dataset = "mnist"
    # load_or_train's own split of the data (and its key): the one way to name its file.
    train, _, _, source = training_data(root, split, False, dataset)
    return cache_dir() / "classifier" / f"{classifier_key(source, *train, dataset=dataset)}.pt"


class Gauge:
    """FID-like scores and the class histogram of fresh samples, against real images.

    The classifier and the real statistics load on the first reading and are kept; a
    missing data set or classifier gives a message (`ready()`), never an exception.
    """

    def __init__(self, module: GAN, held_out: tuple[int, int] | None = None) -> None:
        """`held_out`: the run's (data.val_size, seed), read from its config.yaml: the gauge
        then measures against the run's own held-out reals, as its validation did."""
        self.module = module
        self.lock = threading.Lock()  # gradio serves requests on several threads
        self.metrics: Any = None
        self.real: dict[str, float] = {}  # the floor and the reals' own class scores
        self.real_share: Tensor | None = None
        self.problem: str | None = None
        self.loaded = False
        m = module.cfg.metrics
        self.root, self.split = str(m.root), str(m.split)
        self.dataset = str(getattr(m, "dataset", "mnist") or "mnist")
        self.samples, self.seed = int(m.num_samples), int(m.seed)  # the run's validation's
        self.held_out = held_out
        self.reals_note = ""  # how the reals differ from the run's, when they do

    def how_to(self) -> str:
        return (
            f"`python -m gan.classifier data.root={self.root} data.split={self.split}"
            + ("" if self.dataset == "mnist" else f" data.dataset={self.dataset}")
            + "`"
        )

    def _load(self) -> None:

        from gan.data.batches import held_out_split
        from gan.data.mnist import load_split
        from gan.metrics.classifier import load_or_train
        from gan.metrics.scores import GanMetrics, class_stats

        try:
            path = classifier_file(self.root, self.split, self.dataset)
        except GanError as err:
            self.problem = (
                f"The gauge needs the checkpoint's data ({self.dataset}, split {self.split!r}, "
                f"root {self.root!r}), which is not on disk here: {err}"
            )
            return
        if not path.is_file():
            self.problem = (
                f"No cached classifier for this data ({path} is missing). Make one with "
                f"{self.how_to()}, then restart the app."
            )
            return
        # Only ever loads here: the file exists, so load_or_train does not train.
        clf = load_or_train(self.root, self.split, False, dataset=self.dataset, progress_bar=False)
        if self.held_out is not None:  # the run's own held-out reals
            val_size, seed = self.held_out
            images, _ = load_split(self.root, self.split, self.dataset, seed)  # (N, [C,] 28, 28)
            images = images[held_out_split(len(images), val_size, seed)[0]]
        else:
            images, _ = load_split(self.root, self.split, self.dataset)
            images = images[-GAUGE_REALS:]
            self.reals_note = (
                f"No config.yaml beside the checkpoint: measured against the split's last "
                f"{len(images):,} images, not the run's held-out ones, so the scores differ "
                f"from its result.json."
            )
        real = images.float() / 255
        real = real.unsqueeze(1) if real.dim() == 3 else real  # (N, C, 28, 28) in [0, 1]
        self.metrics = GanMetrics(clf)
        self.real = self.metrics.set_real(real)
        stats = class_stats(clf(real), self.metrics.min_share)
        self.real |= {k: float(v) for k, v in stats.items() if k != "class_share"}
        self.real_share = stats["class_share"]

    def ready(self) -> str | None:
        """None when readings can be taken, else the message the panel shows instead."""
        with self.lock:
            if not self.loaded:
                try:
                    self._load()
                except (GanError, OSError, ValueError, RuntimeError) as err:
                    self.problem = f"The gauge could not load its classifier: {first_line(err)}"
                self.loaded = True
            return self.problem

    def read(self, seed: int, choice: str | None = None, ema: bool | None = None) -> dict[str, Any]:
        """Scores of the run's metrics.num_samples fakes from `seed`: fid, kid, mnist_score,
        coverage, coverage_entropy, class_share (a list), and the reals' values under `real`.
        At the run's metrics.seed, with one row per class, the fakes are its validation's."""
        problem = self.ready()
        if problem is not None:
            raise GanError(problem)
        n = self.samples
        fake = generate_images(
            self.module, latents(self.module, seed, n), class_labels(self.module, choice, n, 1), ema
        )
        with self.lock:  # GanMetrics keeps the fakes' running statistics between calls
            scores = self.metrics.compute(fake)
        out: dict[str, Any] = {k: float(v) for k, v in scores.items() if k != "class_share"}
        out["class_share"] = [round(float(s), 4) for s in scores["class_share"]]
        out["real"] = {k: round(v, 4) for k, v in self.real.items()}
        out["real"]["class_share"] = [round(float(s), 4) for s in self.real_share]
        out["samples"] = n
        out["note"] = self.reals_note
        return out


def gauge_table(scores: dict[str, Any]) -> str:
    """A Markdown table of a gauge reading next to the real data's values."""
    real = scores["real"]
    rows = [
        ("FID-like (lower is better)", scores["fid"], real["fid_floor"]),
        ("KID (lower is better)", scores["kid"], real["kid_floor"]),
        ("MNIST score (1..classes)", scores["mnist_score"], real["mnist_score"]),
        ("coverage (classes at >= 2%)", scores["coverage"], real["coverage"]),
        ("class entropy (nats)", scores["coverage_entropy"], real["coverage_entropy"]),
    ]
    lines = [f"| score | {scores['samples']} samples | real data |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:.4g} | {ref:.4g} |" for name, value, ref in rows]
    note = scores.get("note") or (
        "The fakes and reals are the run's validation's: at its metrics.seed the scores are "
        "those this checkpoint was validated with."
    )
    return (
        "\n".join(lines)
        + "\n\nThe real FID and KID are the floor: one half of the reals against the other "
        + "(KID is unbiased: a floor below 0 reads as 0). "
        + note
    )


def histogram(fake_share: Sequence[float], real_share: Sequence[float]) -> np.ndarray:
    """A bar chart of the predicted-class shares of the samples and of the reals (RGB uint8)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the app draws into memory
    import matplotlib.pyplot as plt
    import numpy as np

    k = len(fake_share)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    try:
        ax.bar(x - 0.2, real_share, width=0.4, label="real", color="#9aa5b1")
        ax.bar(x + 0.2, fake_share, width=0.4, label="samples", color="#e8590c")
        ax.set_xticks(x if k <= 26 else x[:: max(1, k // 20)])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("share")
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3)
    finally:
        plt.close(fig)
