"""A small MNIST classifier: the feature network of the FID-like scores in `gan.metrics`.

Inception-v3 knows nothing of handwritten digits and needs downloaded weights, so the
project trains its own small CNN on MNIST and caches it on disk. Its penultimate layer
(128 features) plays the role of Inception's pool features, its logits that of
Inception's class scores.

    python -m gan.classifier                              # train on data/ (train split), or report the cache
    python -m gan.classifier data.root=../shared/mnist data.split=test data.download=false
    python -m gan.classifier retrain=true max_epochs=8    # ignore the cached one

    clf = load_or_train("data", split="train")  # frozen, on the CPU; .info says where from
    feats = clf.features(images)  # (B, 128); images (B, 1, 28|64, 28|64) in [0, 1]

Cache: `<cache_dir()>/classifier/<key>.pt`; the key names the training data (see
`classifier_key`), not the training settings: `retrain=true` replaces the file.
split="test" (the offline case, only t10k-* on disk) trains on the first 80% of the test
split and measures on the last 20%. split="train" or "all" trains on the train split and
measures on the test split, or on the train split's last 10,000 images without one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from gan.data import MNISTDataModule
from gan.errors import GanError
from gan.files import atomic_write
from gan.mnist import SPLITS, ensure_mnist, has_split, load_mnist_split

log = logging.getLogger("gan.classifier")

ARCH = "cnn1"  # bump when MNISTClassifier changes: old cache files then stop matching
MAX_HELD_OUT = 10_000  # held-out images when there is no separate test split to measure on
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # pixel statistics of MNIST's train split, in [0, 1]


# ---- the network -----------------------------------------------------------------------


class MNISTClassifier(nn.Module):
    """A small CNN for 28x28 digits: 3 convs -> `feature_dim` features -> 10 logits.

    Input: float (B, 1, 28, 28) in [0, 1]; 64x64 images are resized to 28x28 first.
    About 2.5 M multiply-adds per image (strided convs: no activation map is 28x28 wide):
    a forward pass over 1,000 images takes ~0.06 s on one CPU core.
    """

    def __init__(self, feature_dim: int = 128) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.frozen = False  # set by freeze(): keeps the module in eval mode for good
        self.info: ClassifierInfo | None = None  # where load_or_train got it from
        # Strided convs rather than max-pooling: pooling costs as much as a conv on the CPU.
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1),  # (B, 32, 14, 14)
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),  # (B, 64, 7, 7)
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),  # (B, 128, 4, 4)
            nn.ReLU(inplace=True),
            nn.Flatten(),  # (B, 2048)
            nn.Linear(128 * 4 * 4, feature_dim),  # (B, feature_dim)
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)  # training only: the features themselves are not dropped
        self.head = nn.Linear(feature_dim, 10)

    def _prepare(self, x: Tensor) -> Tensor:
        """(B, 1, S, S) in [0, 1], S in {28, 64} -> standardised float32 (B, 1, 28, 28)."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images (B, 1, H, W), got shape {tuple(x.shape)}")
        x = x.float()
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(
                x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False
            )
        return (x - MNIST_MEAN) / MNIST_STD

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (after ReLU): images (B, 1, S, S) -> (B, feature_dim)."""
        return self.body(self._prepare(x))

    def logits_from_features(self, features: Tensor) -> Tensor:
        """The last layer alone: (B, feature_dim) -> (B, 10) logits."""
        return self.head(self.dropout(features))

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, 1, S, S) in [0, 1] -> logits (B, 10)."""
        return self.logits_from_features(self.features(x))

    def train(self, mode: bool = True) -> MNISTClassifier:
        # Once frozen, a parent's .train() (Lightning calls it every epoch) must not switch
        # dropout back on: the features would turn random.
        return super().train(mode and not self.frozen)


def freeze(clf: MNISTClassifier) -> MNISTClassifier:
    """Make `clf` a fixed feature network: no gradients, eval mode, kept in eval mode."""
    clf.requires_grad_(False)
    clf.frozen = True
    clf.eval()
    return clf


# ---- training --------------------------------------------------------------------------


def random_affine(x: Tensor, max_shift: float = 2.0, max_degrees: float = 10.0) -> Tensor:
    """Each image of (B, 1, H, W) shifted by up to `max_shift` pixels, rotated and scaled a bit.

    One `grid_sample` for the whole batch, on its device. Digits stay readable: MNIST's
    own digits vary this much in position, slant and size.
    """
    b, _, h, w = x.shape
    angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(max_degrees)  # (B,)
    scale = 1 + (torch.rand(b, device=x.device) * 2 - 1) * 0.1  # (B,) in [0.9, 1.1]
    shift = (torch.rand(b, 2, device=x.device) * 2 - 1) * (2 * max_shift / w)  # (B, 2), grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ClassifierModule(L.LightningModule):
    """Trains an `MNISTClassifier` with Adam and cross-entropy, on [0, 1] image batches.

    Batches are `(images (B, 1, 28, 28) float in [0, 1], labels (B,) int64)`, as
    `MNISTDataModule(value_range="sigmoid")` makes them. Logs `train/loss`, `val/acc`
    and `test/acc`.
    """

    def __init__(self, lr: float = 2e-3, feature_dim: int = 128, augment: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = MNISTClassifier(feature_dim)
        self.val_acc = MulticlassAccuracy(num_classes=10, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=10, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (B, 1, 28, 28) in [0, 1], (B,)
        if self.hparams.augment:
            x = random_affine(x)
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.val_acc(self.net(batch[0]), batch[1])
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.test_acc(self.net(batch[0]), batch[1])
        self.log("test/acc", self.test_acc)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        # One cycle (warm-up, then annealing to ~0) converges in a few epochs, which keeps
        # the offline CPU run short.
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ---- data and cache ---------------------------------------------------------------------


@dataclass
class ClassifierInfo:
    """Where a classifier comes from: its cache file, training data and held-out accuracy."""

    key: str
    path: Path
    split: str
    num_train: int
    held_out: str  # which images the accuracy was measured on
    accuracy: float
    trained: bool  # True if load_or_train trained it just now, False if it came from the cache
    seconds: float = 0.0  # training time, when trained


def cache_dir() -> Path:
    """`$GAN_CACHE`, or `~/.cache/gan`."""
    return Path(os.environ.get("GAN_CACHE") or "~/.cache/gan").expanduser()


def classifier_key(split: str, images: Tensor, labels: Tensor) -> str:
    """Cache key of a classifier trained on `images` (N, 28, 28) uint8 and `labels` (N,)."""
    h = hashlib.sha256()
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.to(torch.uint8).contiguous().numpy().tobytes())
    return f"{split}-n{len(images)}-{h.hexdigest()[:12]}-{ARCH}"


def _training_data(
    root: str, split: str, download: bool
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], str, str]:
    """(train images, labels), (held-out images, labels), the held-out set's name, and the
    split the training images come from ("all" trains on the train split, as "train" does,
    and shares its cache file)."""
    if split not in SPLITS:
        raise GanError(f"data.split={split!r} is not one of {', '.join(SPLITS)}.")
    source = "test" if split == "test" else "train"
    ensure_mnist(root, source, download)
    if source == "train" and download and not has_split(root, "test"):
        try:
            ensure_mnist(root, "test", download)
        except GanError as err:  # the train split alone will do: measure on a held-out part
            log.warning("could not download the test split (%s)", err)
    if split == "all":
        ensure_mnist(root, "all", download)  # raises the GanError that names the missing files
    x, y = load_mnist_split(root, source)  # (N, 28, 28) uint8, (N,) int64
    if source == "train" and has_split(root, "test"):
        return (x, y), load_mnist_split(root, "test"), "the test split", source
    n_held = min(len(x) // 5, MAX_HELD_OUT)  # 2,000 of the test split's 10,000
    if source == "train":
        msg = "no MNIST test split in %s: measuring on the train split's last %d images"
        log.warning(msg, root, n_held)
    n = len(x) - n_held
    return (x[:n], y[:n]), (x[n:], y[n:]), f"the last {n_held} images of the {source} split", source


def _load_cached(path: Path, split: str) -> MNISTClassifier | None:
    """The classifier stored at `path`, or None (with a warning) if it cannot be read."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        with torch.random.fork_rng(devices=[]):  # building it draws init weights: keep the
            clf = MNISTClassifier(int(blob["feature_dim"]))  # caller's RNG as it was
        clf.load_state_dict(blob["state_dict"])
        stored = {k: blob[k] for k in ("key", "num_train", "held_out", "accuracy")}
        clf.info = ClassifierInfo(path=path, split=split, trained=False, **stored)
    except Exception as e:  # corrupt, truncated or from another version: train a new one
        log.warning("cached classifier %s is unreadable (%r); training a new one", path, e)
        return None
    return clf


def load_or_train(
    root: str,
    split: str = "train",
    download: bool = False,
    max_epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    retrain: bool = False,
    accelerator: str = "auto",
    progress_bar: bool = True,
) -> MNISTClassifier:
    """A frozen MNIST classifier (on the CPU) for `root`'s `split`: cached, or trained now.

    The cache file is `<cache_dir()>/classifier/<key>.pt` (see `classifier_key`); training
    settings (epochs, lr, ...) are not part of the key: `retrain=True` replaces the file.
    Training uses its own seeded RNG streams and leaves the global ones as they were.
    `clf.info` (a `ClassifierInfo`) tells the cache path and held-out accuracy.
    Raises GanError when the data is missing or the cache cannot be written.
    """
    for name, value, ok, need in (
        ("max_epochs", max_epochs, max_epochs >= 1, ">= 1"),
        ("batch_size", batch_size, batch_size >= 1, ">= 1"),
        ("lr", lr, lr > 0, "> 0"),
    ):
        if not ok:
            raise GanError(f"{name}={value!r} is out of range: it must be {need}.")
    root = str(root)
    train, held_out, held_name, source = _training_data(root, split, download)
    key = classifier_key(source, *train)
    path = cache_dir() / "classifier" / f"{key}.pt"
    if path.is_file() and not retrain:
        cached = _load_cached(path, split)
        if cached is not None and cached.info is not None:
            log.info(
                "classifier from the cache: %s (held-out accuracy %.4f)", path, cached.info.accuracy
            )
            return freeze(cached)

    n = len(train[0])
    gpu = accelerator != "cpu" and torch.cuda.is_available()
    estimate = n * max_epochs * (2e-5 if gpu else 2e-4)  # s per image and epoch, measured
    msg = "no cached classifier for %s (split=%s, %d images): training one (~%.0f s) -> %s"
    log.info(msg, root, split, n, estimate, path)
    start = time.perf_counter()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # seeded, and the caller's RNG streams untouched
        torch.manual_seed(seed)
        module = ClassifierModule(lr=lr)
        # The held-out set is both the validation and the test set: nothing is tuned on it.
        b = min(batch_size, n)  # a data set smaller than one batch still trains
        dm = MNISTDataModule.from_tensors(
            train, held_out, batch_size=b, seed=seed, val_batch_size=1000, value_range="sigmoid"
        )
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=1,
            max_epochs=max_epochs,
            logger=False,  # the cache file is the only output
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, datamodule=dm)
        result = trainer.test(module, datamodule=dm, verbose=False)
    seconds = time.perf_counter() - start
    accuracy = float(result[0]["test/acc"])

    clf = module.net.cpu()
    blob = dict(state_dict=clf.state_dict(), feature_dim=clf.feature_dim, arch=ARCH, key=key)
    blob |= dict(split=split, num_train=n, held_out=held_name, accuracy=accuracy)
    blob |= dict(max_epochs=max_epochs, seconds=seconds)
    try:  # atomic: readers, a sweep's other jobs among them, never see half a file
        atomic_write(path, lambda tmp: torch.save(blob, tmp))
    except OSError as e:
        raise GanError(
            f"could not write the classifier cache {path} ({e}). Fix: point GAN_CACHE at a "
            f"writable folder."
        ) from e
    clf.info = ClassifierInfo(key, path, split, n, held_name, accuracy, True, seconds)
    msg = "classifier trained in %.0f s: accuracy %.4f on %s; saved to %s"
    log.info(msg, seconds, accuracy, held_name, path)
    return freeze(clf)


@dataclass
class ClassifierDataConfig:
    root: str = "data"  # holds MNIST/raw/*; relative paths are from where you launch
    split: str = "train"  # train | test | all ("test": trains on 8,000 test images, offline)
    download: bool = True  # torchvision's mirrors; false to use the files already there


@dataclass
class ClassifierConfig:
    data: ClassifierDataConfig = field(default_factory=ClassifierDataConfig)
    max_epochs: int = 5  # one-cycle Adam: 98.4% after 8k test images (~8 s on a CPU core)
    batch_size: int = 128
    lr: float = 2e-3  # the one-cycle peak
    seed: int = 0
    retrain: bool = False  # train even if a cached classifier matches the data
    accelerator: str = "auto"
    progress_bar: bool = True


def register() -> None:
    """Put the command line's schema in Hydra's ConfigStore as `classifier_schema`."""
    ConfigStore.instance().store(name="classifier_schema", node=ClassifierConfig)


register()


def run(cfg: DictConfig | ClassifierConfig) -> MNISTClassifier:
    """What `python -m gan.classifier` does: load or train, then print accuracy and path."""
    keys = ("max_epochs", "batch_size", "lr", "seed", "retrain", "accelerator", "progress_bar")
    data = cfg.data
    clf = load_or_train(data.root, data.split, data.download, **{k: getattr(cfg, k) for k in keys})
    info = clf.info
    assert info is not None
    source = f"trained in {info.seconds:.0f} s" if info.trained else "from the cache"
    print(
        f"held-out accuracy: {info.accuracy:.4f} on {info.held_out} "
        f"({info.num_train} training images, {source})"
    )
    print(f"classifier: {info.path}")
    return clf


@hydra.main(version_base="1.3", config_path="../conf", config_name="classifier")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except GanError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
