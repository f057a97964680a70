"""The feature network of the FID-like scores (`gan.metrics.scores`) and its training module.

`MNISTClassifier` is a small CNN for one 28x28 greyscale channel with a `num_classes`-way
head (10 for MNIST, Fashion-MNIST, KMNIST; 26 for EMNIST letters); `ClassifierModule`
trains it. `gan.classifier` caches trained ones; `gan.metrics.stacked` wraps MNIST's for the three
channels of Stacked MNIST.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # pixel statistics of MNIST's train split, in [0, 1]


# ---- the network -----------------------------------------------------------------------


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
    dataset: str = "mnist"  # the key of gan.data.mnist.DATASETS it was trained on
    # Its training settings (None: a cache file of an earlier version, which kept fewer).
    max_epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None


def to_28(x: Tensor) -> Tensor:
    """Images (B, C, S, S) -> (B, C, 28, 28), the classifier's size: 64x64 images resized
    (bilinear, antialiased), 28x28 ones returned as they are."""
    if x.shape[-2:] == (28, 28):
        return x
    return F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)


class MNISTClassifier(nn.Module):
    """A small CNN for 28x28 images: 3 convs -> `feature_dim` features -> `num_classes` logits.

    Input: float (B, 1, 28, 28) in [0, 1]; 64x64 images are resized to 28x28 first. Every
    data set is standardised with MNIST's pixel statistics (close enough for the family).
    About 2.5 M multiply-adds per image (strided convs: no activation map is 28x28 wide):
    a forward pass over 1,000 images takes ~0.06 s on one CPU core.
    """

    channels = 1  # image channels it scores (the stacked wrapper: 3)

    def __init__(self, feature_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.feature_dim, self.num_classes = feature_dim, num_classes
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
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def _prepare(self, x: Tensor) -> Tensor:
        """(B, 1, S, S) in [0, 1], S in {28, 64} -> standardised float32 (B, 1, 28, 28)."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images (B, 1, H, W), got shape {tuple(x.shape)}")
        return (to_28(x.float()) - MNIST_MEAN) / MNIST_STD

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (after ReLU): images (B, 1, S, S) -> (B, feature_dim)."""
        return self.body(self._prepare(x))

    def logits_from_features(self, features: Tensor) -> Tensor:
        """The last layer alone: (B, feature_dim) -> (B, num_classes) logits."""
        return self.head(self.dropout(features))

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, 1, S, S) in [0, 1] -> logits (B, num_classes)."""
        return self.logits_from_features(self.features(x))

    def train(self, mode: bool = True) -> MNISTClassifier:
        # Once frozen, a parent's .train() (Lightning calls it every epoch) must not switch
        # dropout back on: the features would turn random.
        return super().train(mode and not self.frozen)


def freeze(clf: Any) -> Any:
    """Make `clf` a fixed feature network: no gradients, eval mode, kept in eval mode.

    For any classifier whose `train()` honours `frozen` (MNISTClassifier, StackedClassifier).
    """
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

    def __init__(
        self, lr: float = 2e-3, feature_dim: int = 128, augment: bool = True, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = MNISTClassifier(feature_dim, num_classes)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

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
