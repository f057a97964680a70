"""Tiny, valid MNIST-family idx files for tests: no network, no real data needed.

`write_tiny_mnist(tmp_path)` writes `tmp_path/MNIST/raw/train-images-idx3-ubyte` and
`train-labels-idx1-ubyte` (torchvision's names), so `MNISTDataModule(root=tmp_path,
download=False)` loads them. With `gz=True` the files are gzipped; their md5 then differs
from torchvision's, which is what the md5 check must catch. `write_tiny(root, dataset)`
does the same for any data set of `gan.data.mnist.DATASETS` in its own folder and file names
(EMNIST letters: images stored transposed, labels 1..26, as in the real files).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

_PARTS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}


def tiny_images(n: int, seed: int = 0) -> torch.Tensor:
    """Random digit-like blobs, uint8 (n, 28, 28): a bright ellipse on black, noise added."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")  # (28, 28)
    centre = 9 + 10 * torch.rand(n, 2, generator=g)  # (n, 2)
    radius = 3 + 6 * torch.rand(n, 2, generator=g)  # (n, 2)
    d = ((yy - centre[:, :1, None]) / radius[:, :1, None]) ** 2 + (
        (xx - centre[:, 1:, None]) / radius[:, 1:, None]
    ) ** 2  # (n, 28, 28)
    img = (1.5 - d).clamp(0, 1) * 255 + 40 * torch.rand(n, 28, 28, generator=g)
    return img.clamp(0, 255).to(torch.uint8)


def _idx_bytes(t: torch.Tensor) -> bytes:
    header = bytes([0, 0, 0x08, t.dim()]) + struct.pack(f">{t.dim()}I", *t.shape)
    return header + t.contiguous().numpy().tobytes()


def write_tiny(
    root: str | Path,
    dataset: str = "mnist",
    split: str = "train",
    n: int = 64,
    gz: bool = False,
    seed: int = 0,
) -> Path:
    """Write `n` images and labels per split of `dataset` where torchvision keeps its files.

    Loading gives back `tiny_images(n, seed)` (the test split: seed + 1 with "all", else
    seed) upright and labels `arange(n) % num_classes`. `split` is "train", "test" or "all".
    Returns the raw folder.
    """
    from gan.data.mnist import DATASETS

    spec = DATASETS[dataset]
    raw = Path(root) / spec.folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(_PARTS[split]):
        prefix = spec.prefixes[part]
        images = tiny_images(n, seed + i)  # (n, 28, 28) uint8, upright
        if spec.transposed:
            images = images.transpose(1, 2)
        labels = (torch.arange(n) % spec.num_classes + spec.label_offset).to(torch.uint8)  # (n,)
        for name, t in (
            (f"{prefix}-images-idx3-ubyte", images),
            (f"{prefix}-labels-idx1-ubyte", labels),
        ):
            data = _idx_bytes(t)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (raw / name).write_bytes(data)
    return raw


def write_tiny_mnist(
    root: str | Path, split: str = "train", n: int = 64, gz: bool = False, seed: int = 0
) -> Path:
    """Write `n` images and labels (0..9 cycling) per split under `root/MNIST/raw/`.

    `split` is "train", "test" or "all" (both, the test split seeded with seed + 1).
    Returns the raw folder.
    """
    return write_tiny(root, "mnist", split, n, gz, seed)
