"""MNIST as a Lightning DataModule, built for GANs whose networks are tiny.

`MNISTDataModule` decodes the idx files once into a uint8 tensor (N, 28, 28) and serves
whole batches with one tensor index each: no PIL images, no per-item collation. The
conversion to float (value range, optional 64x64 resize) runs on the accelerator, for the
whole batch at once, in `on_after_batch_transfer`.

Usage (Hydra fills the arguments from the `data.*` config keys)::

    dm = MNISTDataModule(root="data", split="train", batch_size=128, d_steps=2)
    trainer.fit(model, datamodule=dm)  # batches: (images (B*d, 1, S, S) float, labels (B*d,))

Files are read from `<root>/MNIST/raw/` (torchvision's layout), either as the `.gz`
archives (md5-checked against torchvision's list, decompressed in memory: nothing is
written next to them) or as unpacked idx files. Only the split(s) in use must be present,
so a folder holding just the test split works with `split="test"`. The training loader is
resumable mid-epoch: Lightning saves its `state_dict()` in checkpoints.

`load_mnist_split(root, split)` is the loader on its own, for other tools (classifiers).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import MNIST

from gan.errors import GanError

__all__ = [
    "MNISTDataModule",
    "EpochBatchSampler",
    "ResumableLoader",
    "load_mnist_split",
    "ensure_mnist",
    "mnist_raw_folder",
    "SPLITS",
]

SPLITS = ("train", "test", "all")
_PREFIXES = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}
_MD5 = dict(MNIST.resources)  # "train-images-idx3-ubyte.gz" -> md5, torchvision's own list
_IDX_UINT8 = 0x08  # idx type code of unsigned bytes, the only one MNIST uses


def mnist_raw_folder(root: str | os.PathLike[str]) -> Path:
    """The absolute folder torchvision uses for MNIST's files: `<root>/MNIST/raw`."""
    return Path(root).expanduser().resolve() / "MNIST" / "raw"


def _file_names(split: str) -> list[str]:
    """Unpacked idx file names of a split, e.g. `t10k-images-idx3-ubyte`."""
    return [
        f"{p}-{kind}"
        for p in _PREFIXES[split]
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    ]


def _missing(root: str | os.PathLike[str], split: str) -> list[str]:
    """Files of `split` found neither unpacked nor as `.gz` under `<root>/MNIST/raw`."""
    raw = mnist_raw_folder(root)
    return [
        n for n in _file_names(split) if not ((raw / n).is_file() or (raw / f"{n}.gz").is_file())
    ]


def _missing_error(root: str | os.PathLike[str], split: str, why: str) -> GanError:
    names = ", ".join(f"{n}[.gz]" for n in _missing(root, split))
    return GanError(
        f"MNIST data not found: looked for {names} in {mnist_raw_folder(root)}, and {why}. "
        f"Fix: point data.root=/path/to/folder at a folder that holds MNIST/raw/ with these files "
        f"(data.split=test works when only the test split, t10k-*, is on disk)."
    )


def _read_bytes(path: Path) -> bytes:
    """Raw idx bytes of `path`; a `.gz` archive is md5-checked and decompressed in memory."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data  # unpacked files carry no checksum of their own; their size is checked on parse
    expected = _MD5.get(path.name)
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if expected is not None and actual != expected:
        raise GanError(
            f"{path} has md5 {actual}, expected {expected} (torchvision's checksum): the archive is "
            f"corrupt or not the official MNIST file. Delete it and re-download (data.download=true), "
            f"or point data.root elsewhere."
        )
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise GanError(
            f"{path} could not be decompressed ({e}). Delete it and re-download, or point data.root elsewhere."
        ) from e


def _parse_idx(data: bytes, path: Path, ndim: int) -> Tensor:
    """An idx file of unsigned bytes as a uint8 tensor of `ndim` dims; GanError if malformed."""

    def bad(what: str) -> GanError:
        return GanError(
            f"{path} is not a valid MNIST idx file: {what}. It is truncated or corrupt: delete it "
            f"and re-download (data.download=true), or point data.root elsewhere."
        )

    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad(f"{len(data)} bytes, shorter than its {header}-byte header")
    if data[0] != 0 or data[1] != 0 or data[2] != _IDX_UINT8 or data[3] != ndim:
        raise bad(f"magic number {data[:4].hex()}, expected 0000080{ndim}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise bad(f"its header says {dims} ({expected} bytes) but it holds {len(data)} bytes")
    # One copy into a writable buffer (torch.frombuffer warns on read-only `bytes`).
    return torch.frombuffer(bytearray(memoryview(data)[header:]), dtype=torch.uint8).reshape(dims)


def _read_idx(raw: Path, name: str, ndim: int) -> Tensor:
    """Read `name` from `raw`, preferring the unpacked file (no decompression) over `.gz`."""
    path = raw / name if (raw / name).is_file() else raw / f"{name}.gz"
    return _parse_idx(_read_bytes(path), path, ndim)


def load_mnist_split(root: str, split: str) -> tuple[Tensor, Tensor]:
    """Decode one MNIST split from `<root>/MNIST/raw` into memory, without writing anything.

    `split` is "train" (60,000 images), "test" (10,000) or "all" (train then test).
    Returns images uint8 (N, 28, 28) and labels int64 (N,). Raises GanError when files are
    missing, a `.gz` fails torchvision's md5, or an idx file is truncated or corrupt.
    """
    if split not in SPLITS:
        raise GanError(f"data.split={split!r} is not one of {', '.join(SPLITS)}.")
    if _missing(root, split):
        raise _missing_error(root, split, "this loader does not download")
    raw = mnist_raw_folder(root)
    images, labels = [], []
    for prefix in _PREFIXES[split]:
        x = _read_idx(raw, f"{prefix}-images-idx3-ubyte", ndim=3)  # (n, 28, 28) uint8
        y = _read_idx(raw, f"{prefix}-labels-idx1-ubyte", ndim=1)  # (n,) uint8
        if tuple(x.shape[1:]) != (28, 28):
            raise GanError(
                f"{raw / prefix}-images-idx3-ubyte holds {tuple(x.shape[1:])} images, not 28x28."
            )
        if len(x) != len(y):
            raise GanError(
                f"{raw} holds {len(x)} {prefix} images but {len(y)} labels: one of the two files is "
                f"corrupt. Delete them and re-download, or point data.root elsewhere."
            )
        images.append(x)
        labels.append(y.long())
    if len(images) == 1:
        return images[0], labels[0]
    return torch.cat(images), torch.cat(labels)


class _SplitMNIST(MNIST):
    """torchvision's MNIST restricted to one split: checks and downloads only its two files.

    Used for its download path alone; decoding is `load_mnist_split`'s job.
    """

    def __init__(self, root: str | os.PathLike[str], prefix: str) -> None:
        self.resources = [r for r in MNIST.resources if r[0].startswith(f"{prefix}-")]
        super().__init__(str(root), train=prefix == "train", download=True)

    @property
    def raw_folder(self) -> str:  # the base class names it after the class: keep "MNIST"
        return os.path.join(self.root, "MNIST", "raw")

    @property
    def processed_folder(self) -> str:
        return os.path.join(self.root, "MNIST", "processed")

    def _check_legacy_exist(self) -> bool:
        return False

    def _check_exists(self) -> bool:
        raw = Path(self.raw_folder)
        names = [r[0].removesuffix(".gz") for r in self.resources]
        return all((raw / n).is_file() or (raw / f"{n}.gz").is_file() for n in names)

    def _load_data(self) -> tuple[Tensor, Tensor]:
        return torch.empty(0, 28, 28, dtype=torch.uint8), torch.empty(0, dtype=torch.long)


def ensure_mnist(root: str, split: str, download: bool) -> None:
    """Make sure `split`'s files are under `<root>/MNIST/raw`, downloading the missing ones.

    Uses torchvision's download (mirrors, md5 check, extraction). GanError when files are
    missing and `download` is false, or when the download fails (no network).
    """
    if not _missing(root, split):
        return
    if not download:
        raise _missing_error(root, split, "downloading is disabled (data.download=false)")
    Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    for prefix in _PREFIXES[split]:
        try:
            _SplitMNIST(Path(root).expanduser(), prefix)
        # URLError is an OSError; torchvision raises RuntimeError once every mirror failed.
        except (OSError, RuntimeError) as e:
            reason = " ".join(str(e).split())[:200]
            raise _missing_error(
                root, split, f"the download failed ({type(e).__name__}: {reason})"
            ) from e


class _BatchDataset(Dataset):
    """Tensors indexed a batch at a time: `ds[idx]` with idx int64 (B,) -> one gather."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images  # (N, 28, 28) uint8, on CPU or on the device
        self.labels = labels  # (N,) int64

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        idx = idx.to(self.images.device, non_blocking=True)
        # index_select, not images[idx]: same result, but advanced indexing is far slower on
        # small CPU batches (its parallel kernel can cost milliseconds on a busy machine).
        images = self.images.index_select(0, idx).unsqueeze(1)  # (B, 1, 28, 28) uint8
        return images, self.labels.index_select(0, idx)  # (B,) int64


def _no_collate(batch: Any) -> Any:
    return batch  # the dataset already returns whole batches (module-level: workers pickle it)


class EpochBatchSampler:
    """Yields index tensors (batch_size,) over a fresh permutation every epoch, drop_last.

    Epoch e's order is `torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))`,
    so it depends on (seed, epoch) alone. `set_epoch` is called by Lightning each epoch.
    `start` batches of the next pass are skipped by slicing the permutation (used on resume).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.device = torch.device(device)  # where the yielded index tensors live
        self.rank, self.world_size = (
            rank,
            world_size,
        )  # under DDP each rank takes every world_size-th image
        self.epoch = 0
        self.start = 0  # batches to skip on the next pass only

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a resume position belongs to its own epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world_size // self.batch_size  # the same on every rank

    def permutation(self, epoch: int) -> Tensor:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
        return perm[self.rank :: self.world_size]  # this rank's disjoint share

    def __iter__(self) -> Iterator[Tensor]:
        # A generator: epoch and start are read at the first next(), so a set_epoch() that
        # Lightning makes after iter() still counts.
        start, self.start = self.start, 0
        # (n / world_size,) int64. Drawn on the CPU, so the order is the same on any device;
        # with data.on_device it moves there once per epoch, not once per batch.
        perm = self.permutation(self.epoch).to(self.device)
        b = self.batch_size
        for i in range(start, len(self)):
            yield perm[i * b : (i + 1) * b]


class ResumableLoader(DataLoader):
    """A DataLoader over an `EpochBatchSampler` that can resume mid-epoch.

    `state_dict()` -> {"epoch", "batches_seen"}: the batches this loader's iterator has
    handed out in the current epoch (batches prefetched by workers are not counted).
    `load_state_dict()` makes the next pass of that epoch skip those batches without loading
    them; a finished epoch resumes at the start of the next one. Lightning's fit loop saves
    the state in every checkpoint and loads it before its first `iter()` on resume.
    """

    def __init__(self, dataset: Dataset, sampler: EpochBatchSampler, **kwargs: Any) -> None:
        kwargs.setdefault("collate_fn", _no_collate)
        super().__init__(dataset, batch_size=None, sampler=sampler, **kwargs)
        self._epoch = sampler.epoch
        self._seen = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator too: nothing happens until the first next(), after Lightning's set_epoch.
        sampler: EpochBatchSampler = self.sampler  # type: ignore[assignment]
        self._epoch, self._seen = sampler.epoch, sampler.start
        for batch in super().__iter__():
            self._seen += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler: EpochBatchSampler = self.sampler  # type: ignore[assignment]
        if sampler.epoch != self._epoch:  # set_epoch() moved on; that pass has not started yet
            return {"epoch": sampler.epoch, "batches_seen": sampler.start}
        return {"epoch": self._epoch, "batches_seen": self._seen}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        epoch, seen = int(state_dict["epoch"]), int(state_dict["batches_seen"])
        if seen >= len(self):  # the epoch was finished: continue with the next one
            epoch, seen = epoch + 1, 0
        sampler: EpochBatchSampler = self.sampler  # type: ignore[assignment]
        sampler.epoch, sampler.start = epoch, seen
        self._epoch, self._seen = epoch, seen


class MNISTDataModule(L.LightningDataModule):
    """MNIST for GAN training: uint8 batches from the loaders, converted on the device.

    Loaders yield `(images uint8 (B, 1, 28, 28), labels int64 (B,))`; after the transfer
    hook the images are float32 (B, 1, img_size, img_size) in the model's value range.
    A training batch holds `batch_size * d_steps` images: the module splits it into
    `d_steps` chunks so that every D update sees fresh real images.
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
    ) -> None:
        super().__init__()

        def check(ok: bool, key: str, value: Any, want: str) -> None:
            if not ok:
                raise GanError(f"{key}={value!r} is invalid: it must be {want}.")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        check(split in SPLITS, "data.split", split, "one of train, test, all")
        check(is_int(batch_size) and batch_size >= 1, "data.batch_size", batch_size, ">= 1")
        check(
            is_int(val_batch_size) and val_batch_size >= 1,
            "data.val_batch_size",
            val_batch_size,
            ">= 1",
        )
        check(is_int(val_size) and val_size >= 0, "data.val_size", val_size, ">= 0")
        check(is_int(num_workers) and num_workers >= 0, "data.num_workers", num_workers, ">= 0")
        check(img_size in (28, 64), "data.img_size", img_size, "28 or 64")
        check(
            value_range in ("tanh", "sigmoid"), "data.value_range", value_range, "tanh or sigmoid"
        )
        check(is_int(d_steps) and d_steps >= 1, "step_ratio.d_steps", d_steps, ">= 1")
        if on_device and num_workers > 0:
            raise GanError(
                f"data.on_device=true keeps the images on the accelerator, where worker processes "
                f"cannot index them: set data.num_workers=0 (it is {num_workers})."
            )
        self.root = str(root)
        self.download = download
        self.split = split
        self.val_size = val_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory and not on_device  # on-device tensors need no pinning
        self.img_size = img_size
        self.value_range = value_range
        self.d_steps = d_steps
        self.on_device = on_device
        self.seed = seed
        self.val_batch_size = val_batch_size

        self.train_indices: Tensor | None = None  # (num_train,) int64, into the loaded split
        self.val_indices: Tensor | None = None  # (num_val,) int64, sorted
        self._train: _BatchDataset | None = None
        self._val: _BatchDataset | None = None
        self._train_loader: ResumableLoader | None = None

    # ---- data --------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download the split's missing files (rank 0 only, as Lightning calls it)."""
        ensure_mnist(self.root, self.split, self.download)

    def setup(self, stage: str | None = None) -> None:
        """Decode the split once and hold out `val_size` random images (fixed by `seed`)."""
        if self._train is None:
            if _missing(self.root, self.split):
                self.prepare_data()  # downloads, or raises the GanError that explains it
            images, labels = load_mnist_split(self.root, self.split)  # (N, 28, 28) u8, (N,) i64
            n, need = len(images), self.batch_size * self.d_steps
            if self.val_size >= n:
                raise GanError(
                    f"data.val_size={self.val_size} is invalid: split {self.split!r} holds only {n} "
                    f"images; it must be smaller."
                )
            if n - self.val_size < need:
                raise GanError(
                    f"data.batch_size={self.batch_size} x step_ratio.d_steps={self.d_steps} = {need} "
                    f"images per training batch, but only {n - self.val_size} training images remain "
                    f"after data.val_size={self.val_size}: lower data.batch_size or data.val_size."
                )
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
            self.val_indices = perm[: self.val_size].sort().values
            self.train_indices = perm[self.val_size :].sort().values
            # Gather once so that every batch is one index into a contiguous tensor.
            self._train = _BatchDataset(images[self.train_indices], labels[self.train_indices])
            self._val = _BatchDataset(images[self.val_indices], labels[self.val_indices])
            self._train_loader = None
        if self.on_device and self.trainer is not None:
            device = self.trainer.strategy.root_device
            for ds in (self._train, self._val):
                ds.images, ds.labels = ds.images.to(device), ds.labels.to(device)

    @property
    def num_train(self) -> int:
        """Training images (after the held-out set); valid after `setup()`."""
        return len(self._require(self._train))

    @property
    def num_val(self) -> int:
        """Held-out validation images; valid after `setup()`."""
        return len(self._require(self._val))

    @staticmethod
    def _require(ds: _BatchDataset | None) -> _BatchDataset:
        if ds is None:
            raise RuntimeError("MNISTDataModule.setup() has not been called yet")
        return ds

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
        }

    def train_dataloader(self) -> ResumableLoader:
        """Shuffled batches of `batch_size * d_steps`: (uint8 (B*d, 1, 28, 28), int64 (B*d,))."""
        ds = self._require(self._train)
        if self._train_loader is None:  # one loader per setup: its epoch and resume state live on
            rank, world = (
                (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
            )
            sampler = EpochBatchSampler(
                len(ds),
                self.batch_size * self.d_steps,
                self.seed,
                rank,
                world,
                device=ds.images.device,  # on_device: one copy of the order per epoch
            )
            self._train_loader = ResumableLoader(ds, sampler, **self._loader_kwargs())
        return self._train_loader

    def val_dataloader(self) -> DataLoader | list:
        """The held-out images in fixed order, `val_batch_size` per batch; [] if val_size=0."""
        ds = self._require(self._val)
        if len(ds) == 0:
            return []
        chunks = list(torch.arange(len(ds)).split(self.val_batch_size))  # (<=val_batch_size,) each
        return DataLoader(
            ds, batch_size=None, sampler=chunks, collate_fn=_no_collate, **self._loader_kwargs()
        )

    # ---- conversion on the device ------------------------------------------------------

    def to_model_range(self, images: Tensor) -> Tensor:
        """uint8 (B, 1, 28, 28) (or (B, 28, 28)) -> float32 (B, 1, S, S) in the value range."""
        if images.dtype != torch.uint8:
            raise TypeError(f"to_model_range expects uint8 images, got {images.dtype}")
        if images.dim() == 3:
            images = images.unsqueeze(1)
        x = images.float()
        # tanh: [-1, 1]; sigmoid: [0, 1]. In place: the float copy is ours.
        x = x.div_(127.5).sub_(1.0) if self.value_range == "tanh" else x.div_(255.0)
        if self.img_size != x.shape[-1]:
            # Bilinear without antialias interpolates between pixels: values stay in range.
            x = F.interpolate(
                x, size=self.img_size, mode="bilinear", antialias=False, align_corners=False
            )
        return x

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, labels = batch  # (B, 1, 28, 28) uint8, (B,) int64, already on the device
        return self.to_model_range(images), labels
