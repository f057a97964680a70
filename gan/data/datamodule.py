"""The MNIST family as a Lightning DataModule, built for GANs whose networks are tiny.

`MNISTDataModule` decodes the idx files of `dataset` (mnist, fashion_mnist, kmnist,
emnist_letters, stacked_mnist: `gan.data.mnist.DATASETS`) once into a uint8 tensor (N, 28, 28),
or (N, 3, 28, 28) for stacked_mnist, and serves whole batches with one tensor index each
(`gan.data.batches`: no PIL, no per-item collation); the conversion to float (value
range, optional 64x64 resize) runs on the accelerator, in `on_after_batch_transfer`. Files are found, downloaded and
decoded by `gan.data.mnist`. The training loader resumes mid-epoch from the `state_dict()`
Lightning keeps in checkpoints::

    dm = MNISTDataModule(root="data", split="train", batch_size=128, d_steps=2)
    trainer.fit(model, datamodule=dm)  # batches: (images (B*d, C, S, S) float, labels (B*d,))
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from gan.core.ranges import from_uint8
from gan.data.batches import (
    BatchDataset,
    EpochBatchSampler,
    ResumableLoader,
    balanced_subset,
    held_out_split,
    no_collate,
)
from gan.data.mnist import DATASETS, SPLITS, ensure_split, load_split
from gan.utils.errors import GanError


class MNISTDataModule(L.LightningDataModule):
    """An MNIST-family data set for GAN training: uint8 batches, converted on the device.

    Loaders yield `(images uint8 (B, C, 28, 28), labels int64 (B,))`, C = `channels` (3 for
    stacked_mnist, else 1), labels in 0..num_classes-1; after the transfer hook the images
    are float32 (B, C, img_size, img_size) in the model's value range.
    With `limit`, training uses a class-balanced subset of that many of the training images
    (`balanced_subset`, drawn by `limit_seed`); the held-out images stay whole. Its indices
    are the module's `state_dict()`, so a checkpoint keeps them and a resume checks them.
    A training batch holds `batch_size * d_steps` images: the module splits it into
    `d_steps` chunks so that every D update sees fresh real images. After `setup()`,
    `train_set` and `val_set` (`BatchDataset`s) hold the images each loader serves.
    """

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        split: str = "train",  # "train" | "test" | "all"
        val_size: int = 1000,  # held-out real images for the metrics, not trained on
        batch_size: int = 128,
        num_workers: int = 0,  # batches are one tensor gather: worker processes only add IPC
        pin_memory: bool = False,
        img_size: int = 28,  # 64 for the DCGAN-64 nets: bilinear upsampling on the device
        value_range: str = "tanh",  # "tanh" -> [-1, 1], "sigmoid" -> [0, 1]
        d_steps: int = 1,  # real batches consumed per training step: each D update sees fresh images
        on_device: bool = False,  # keep the uint8 split on the accelerator (47 MB for train)
        seed: int = 0,
        val_batch_size: int = 500,
        dataset: str = "mnist",  # a key of gan.data.mnist.DATASETS
        channels: int = 1,  # must be the data set's: 3 for stacked_mnist
        num_classes: int = 10,  # must be the data set's: 26 for emnist_letters, 1000 stacked
        limit: int | None = None,  # train on a class-balanced subset of this many images
        limit_seed: int = 0,  # draws that subset
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise GanError(
                f"data.dataset={dataset!r} is invalid: it must be one of {', '.join(DATASETS)}. "
                f"Pick one with data=<name>."
            )
        spec = DATASETS[dataset]
        if (channels, num_classes) != (spec.channels, spec.num_classes):
            raise GanError(
                f"data.dataset={dataset} has {spec.channels} channel(s) and {spec.num_classes} "
                f"classes, but data.channels={channels} and data.num_classes={num_classes}. Fix: "
                f"select it with data={dataset} (its option file sets both), or set "
                f"data.channels={spec.channels} data.num_classes={spec.num_classes}."
            )
        self.dataset, self.channels, self.num_classes = dataset, channels, num_classes

        def at_least(v: Any, low: int) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= low

        for ok, key, value, want in (
            (split in SPLITS, "data.split", split, "one of train, test, all"),
            (at_least(batch_size, 1), "data.batch_size", batch_size, ">= 1"),
            (at_least(val_batch_size, 1), "data.val_batch_size", val_batch_size, ">= 1"),
            (at_least(val_size, 0), "data.val_size", val_size, ">= 0"),
            (at_least(num_workers, 0), "data.num_workers", num_workers, ">= 0"),
            (img_size in (28, 64), "data.img_size", img_size, "28 or 64"),
            (value_range in ("tanh", "sigmoid"), "data.value_range", value_range, "tanh/sigmoid"),
            (at_least(d_steps, 1), "step_ratio.d_steps", d_steps, ">= 1"),
            (
                limit is None or at_least(limit, num_classes),
                "data.limit",
                limit,
                f"null or >= data.num_classes ({num_classes}), one image of each class at least",
            ),
        ):
            if not ok:
                raise GanError(f"{key}={value!r} is invalid: it must be {want}.")
        if on_device and num_workers > 0:
            raise GanError(
                f"data.on_device=true keeps the images on the accelerator, where worker processes "
                f"cannot index them: set data.num_workers=0 (it is {num_workers})."
            )
        self.root, self.download, self.split, self.seed = str(root), download, split, seed
        self.batch_size, self.d_steps, self.on_device = batch_size, d_steps, on_device
        self.val_size, self.val_batch_size = val_size, val_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory and not on_device  # on-device tensors need no pinning
        self.img_size, self.value_range = img_size, value_range
        self.limit, self.limit_seed = limit, limit_seed

        # (num_train,) int64, sorted, into the loaded split: data.limit's subset, if any
        self.train_indices: Tensor | None = None
        self.val_indices: Tensor | None = None  # (num_val,) int64, sorted
        self.train_set: BatchDataset | None = None  # what train_dataloader serves
        self.val_set: BatchDataset | None = None  # what val_ and test_dataloader serve
        self._train_loader: ResumableLoader | None = None

    @classmethod
    def from_tensors(
        cls, train: tuple[Tensor, Tensor], held_out: tuple[Tensor, Tensor], **kwargs: Any
    ) -> MNISTDataModule:
        """Serve tensors in memory, each (images uint8 (N, [C,] 28, 28), labels int64 (N,)).

        `held_out` feeds both `val_dataloader` and `test_dataloader`. Nothing is read from
        disk; `kwargs` are the constructor's, where root, split and val_size go unused.
        """
        dm = cls(download=False, **kwargs)
        dm.train_set, dm.val_set = BatchDataset(*train), BatchDataset(*held_out)
        return dm

    # ---- data --------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download the split's missing files (rank 0 only, as Lightning calls it)."""
        if self.train_set is None:  # from_tensors: nothing to fetch
            ensure_split(self.root, self.split, self.download, self.dataset)

    def setup(self, stage: str | None = None) -> None:
        """Decode the split once and hold out `val_size` random images (fixed by `seed`)."""
        if self.train_set is None:
            self.prepare_data()  # a no-op when present; else downloads or explains in a GanError
            # (N, [C,] 28, 28) uint8, (N,) int64; stacked_mnist's triples are drawn with `seed`
            images, labels = load_split(self.root, self.split, self.dataset, self.seed)
            n, need = len(images), self.batch_size * self.d_steps
            if self.val_size >= n:
                raise GanError(
                    f"data.val_size={self.val_size} is invalid: split {self.split!r} holds only {n} "
                    f"images; it must be smaller."
                )
            if min(n - self.val_size, self.limit or n) < need:
                remain = (
                    f"data.limit={self.limit} training images are used"
                    if self.limit is not None and self.limit < n - self.val_size
                    else f"only {n - self.val_size} training images remain after "
                    f"data.val_size={self.val_size}"
                )
                raise GanError(
                    f"data.batch_size={self.batch_size} x step_ratio.d_steps={self.d_steps} = {need} "
                    f"images per training batch, but {remain}: lower data.batch_size, "
                    f"data.val_size or raise data.limit."
                )
            self.val_indices, self.train_indices = held_out_split(n, self.val_size, self.seed)
            if self.limit is not None:
                self.train_indices = self._subset(self.train_indices, labels)
            # Gather once so that every batch is one index into a contiguous tensor.
            self.train_set = BatchDataset(images[self.train_indices], labels[self.train_indices])
            self.val_set = BatchDataset(images[self.val_indices], labels[self.val_indices])
            self._train_loader = None
        if self.on_device and self.trainer is not None:
            device = self.trainer.strategy.root_device
            for ds in (self.train_set, self.val_set):
                assert ds is not None
                ds.images, ds.labels = ds.images.to(device), ds.labels.to(device)

    def _subset(self, train: Tensor, labels: Tensor) -> Tensor:
        """data.limit's class-balanced share of `train` (indices into the split, sorted)."""
        assert self.limit is not None
        if self.limit > len(train):
            raise GanError(
                f"data.limit={self.limit} is more than the {len(train)} training images of split "
                f"{self.split!r} (after data.val_size={self.val_size} held out): lower it, or set "
                f"data.limit=null to train on all of them."
            )
        # Drawn from the training images only: held-out images are never in the subset.
        keep = balanced_subset(labels[train], self.limit, self.num_classes, self.limit_seed)
        return train[keep]  # (limit,) sorted, as train is

    # ---- checkpoints: data.limit's subset ---------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The subset trained on (None: every training image), for checkpoints (Lightning)."""
        subset = self.train_indices if self.limit is not None else None
        return {"limit": self.limit, "limit_indices": subset}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On resume (after `setup`): the subset drawn again must be the checkpoint's."""
        theirs, ours = state_dict.get("limit_indices"), self.state_dict()["limit_indices"]
        if theirs is None and ours is None:
            return
        if theirs is None or ours is None:
            had = "every training image" if theirs is None else f"data.limit={len(theirs)}"
            now = "every training image" if ours is None else f"data.limit={self.limit}"
            why = f"the run trained on {had}, but this resume asks for {now}"
        elif len(theirs) != len(ours):
            why = f"the run's subset holds {len(theirs)} images, data.limit={self.limit} now"
        elif torch.equal(theirs.cpu(), ours.cpu()):
            return
        else:
            why = (
                f"data.limit={self.limit} with data.limit_seed={self.limit_seed} now draws other "
                f"images than the run did: the files under data.root={self.root} (or the seed) "
                f"differ from the run's"
            )
        raise GanError(
            f"the checkpoint's training subset does not match this run's: {why}. Resume with the "
            f"run's own data and settings, or start a new run."
        )

    @property
    def num_train(self) -> int:
        """Training images (after the held-out set); valid after `setup()`."""
        return len(self._require(self.train_set))

    @property
    def num_val(self) -> int:
        """Held-out validation images; valid after `setup()`."""
        return len(self._require(self.val_set))

    @staticmethod
    def _require(ds: BatchDataset | None) -> BatchDataset:
        if ds is None:
            raise RuntimeError("MNISTDataModule.setup() has not been called yet")
        return ds

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
            # Each iter() draws a base seed for its workers; without a generator of its own it
            # would draw from the global RNG, and a resumed run would then draw differently.
            "generator": torch.Generator().manual_seed(self.seed),
        }

    def train_dataloader(self) -> ResumableLoader:
        """Shuffled batches of `batch_size * d_steps`: (uint8 (B*d, C, 28, 28), int64 (B*d,))."""
        ds = self._require(self.train_set)
        if self._train_loader is None:  # one loader per setup: its epoch and resume state live on
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
            # Index tensors on the images' device: with on_device, one copy of the order per epoch.
            sampler = EpochBatchSampler(
                len(ds), self.batch_size * self.d_steps, self.seed, rank, world, ds.images.device
            )
            self._train_loader = ResumableLoader(ds, sampler, **self._loader_kwargs())
        return self._train_loader

    def val_dataloader(self) -> DataLoader | list:
        """The held-out images in fixed order, `val_batch_size` per batch; [] if there are none."""
        ds = self._require(self.val_set)
        if len(ds) == 0:
            return []
        chunks = list(torch.arange(len(ds)).split(self.val_batch_size))  # (<=val_batch_size,) each
        return DataLoader(
            ds, batch_size=None, sampler=chunks, collate_fn=no_collate, **self._loader_kwargs()
        )

    def test_dataloader(self) -> DataLoader | list:
        """The held-out images again, as `val_dataloader`: nothing is tuned on them."""
        return self.val_dataloader()

    # ---- conversion on the device ------------------------------------------------------

    def to_model_range(self, images: Tensor) -> Tensor:
        """uint8 (B, C, 28, 28) (or (B, 28, 28)) -> float32 (B, C, S, S) in the value range."""
        if images.dtype != torch.uint8:
            raise TypeError(f"to_model_range expects uint8 images, got {images.dtype}")
        if images.dim() == 3:
            images = images.unsqueeze(1)
        x = from_uint8(images, self.value_range)  # (B, C, 28, 28) in G's range
        if self.img_size != x.shape[-1]:
            # Bilinear without antialias interpolates between pixels: values stay in range.
            x = F.interpolate(
                x, size=self.img_size, mode="bilinear", antialias=False, align_corners=False
            )
        return x

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, labels = batch  # (B, C, 28, 28) uint8, (B,) int64, already on the device
        return self.to_model_range(images), labels
