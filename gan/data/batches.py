"""How the data module serves and splits its images: whole batches by one tensor index each.

`BatchDataset` holds a split in memory and returns a whole batch per index tensor;
`EpochBatchSampler` draws those index tensors (a fresh permutation each epoch, drop_last)
and `ResumableLoader` resumes them mid-epoch from a checkpoint's state. `held_out_split`
fixes a run's held-out images by its seed; `balanced_subset` draws `data.limit`'s
class-balanced subset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from gan.utils.errors import GanError


class BatchDataset(Dataset):
    """Tensors indexed a batch at a time: `ds[idx]` with idx int64 (B,) -> one gather."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images  # (N, 28, 28) or (N, C, 28, 28) uint8, on CPU or on the device
        self.labels = labels  # (N,) int64

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        idx = idx.to(self.images.device, non_blocking=True)
        # index_select, not images[idx]: same result, but advanced indexing is far slower on
        # small CPU batches (its parallel kernel can cost milliseconds on a busy machine).
        images = self.images.index_select(0, idx)  # (B, 28, 28) or (B, C, 28, 28) uint8
        if images.dim() == 3:
            images = images.unsqueeze(1)  # (B, 1, 28, 28)
        return images, self.labels.index_select(0, idx)  # (B,) int64


def no_collate(batch: Any) -> Any:
    return batch  # the dataset already returns whole batches (module-level: workers pickle it)


class EpochBatchSampler:
    """Yields index tensors (batch_size,) over a fresh permutation every epoch, drop_last.

    Epoch e's order is `randperm(n)` seeded with `seed + e`: it depends on (seed, epoch)
    alone. Lightning calls `set_epoch` each epoch; on resume, `start` batches of the next
    pass are skipped. Under DDP each rank takes every `world_size`-th image.
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
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)  # where the yielded index tensors live
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
        # A generator: epoch and start are read at the first next(), so that a set_epoch()
        # Lightning makes after iter() still counts.
        start, self.start = self.start, 0
        # (n / world_size,) int64, drawn on the CPU (the same order on any device) and moved
        # once per epoch.
        perm = self.permutation(self.epoch).to(self.device)
        b = self.batch_size
        for i in range(start, len(self)):
            yield perm[i * b : (i + 1) * b]


class ResumableLoader(DataLoader):
    """A DataLoader over an `EpochBatchSampler` that can resume mid-epoch.

    `state_dict()` -> {"epoch", "batches_seen"}: batches handed out (not merely prefetched
    by workers) in the current epoch. `load_state_dict()` makes the next pass skip them
    without loading them; after a finished epoch it starts the next. Lightning's fit loop
    keeps the state in checkpoints and loads it before its first `iter()` on resume.
    """

    def __init__(self, dataset: Dataset, sampler: EpochBatchSampler, **kwargs: Any) -> None:
        kwargs.setdefault("collate_fn", no_collate)
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


def held_out_split(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """(held-out indices, training indices) of a split of n images, each sorted: `val_size`
    random images fixed by `seed` (the run's own; gan.app's gauge measures against them)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:val_size].sort().values, perm[val_size:].sort().values


def balanced_subset(labels: Tensor, limit: int, num_classes: int, seed: int) -> Tensor:
    """Positions (limit,) into `labels` (N,), sorted: `limit // num_classes` random images of
    each class, one more for each of the first `limit % num_classes` classes (0, 1, ...),
    drawn by `seed` alone. GanError when a class has too few."""
    per_class, extra = divmod(limit, num_classes)
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):  # a fixed order: the draw depends on (labels, limit, seed)
        pool = (labels == c).nonzero().squeeze(1)  # (n_c,) positions of class c
        want = per_class + (c < extra)
        if len(pool) < want:
            raise GanError(
                f"data.limit={limit} takes {want} images of class {c}, but the training images "
                f"hold only {len(pool)} of it: lower data.limit, or train on a larger split "
                f"(data.split=all)."
            )
        chosen.append(pool[torch.randperm(len(pool), generator=gen)[:want]])
    return torch.cat(chosen).sort().values
