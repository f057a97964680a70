"""MNIST's files on disk, in torchvision's layout (`<root>/MNIST/raw/`): which splits are
there, torchvision's download of the missing ones, and decoding into uint8 tensors.

    ensure_mnist("data", "train", download=True)       # torchvision's mirrors and md5s
    images, labels = load_mnist_split("data", "train")  # (60000, 28, 28) uint8, (60000,) int64

Files are read unpacked or as md5-checked `.gz` (decompressed in memory: nothing is
written beside them); only the split(s) in use must be there.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import MNIST

from gan.errors import GanError

SPLITS = ("train", "test", "all")
_PREFIXES = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}
_KINDS = (("images-idx3-ubyte", 3), ("labels-idx1-ubyte", 1))  # file name suffix, idx dims
_MD5 = dict(MNIST.resources)  # "train-images-idx3-ubyte.gz" -> md5, torchvision's own list
_IDX_UINT8 = 0x08  # idx type code of unsigned bytes, the only one MNIST uses


def mnist_raw_folder(root: str | os.PathLike[str]) -> Path:
    """The absolute folder torchvision uses for MNIST's files: `<root>/MNIST/raw`."""
    return Path(root).expanduser().resolve() / "MNIST" / "raw"


def missing_files(root: str | os.PathLike[str], split: str) -> list[str]:
    """Idx files of `split` found neither unpacked nor as `.gz` under `<root>/MNIST/raw`.

    The one test of which splits are on disk. GanError if `split` is not in `SPLITS`.
    """
    if split not in SPLITS:
        raise GanError(f"data.split={split!r} is not one of {', '.join(SPLITS)}.")
    raw = mnist_raw_folder(root)
    names = [f"{prefix}-{kind}" for prefix in _PREFIXES[split] for kind, _ in _KINDS]
    return [n for n in names if not ((raw / n).is_file() or (raw / f"{n}.gz").is_file())]


def has_split(root: str | os.PathLike[str], split: str) -> bool:
    """Whether every file of `split` is under `<root>/MNIST/raw`, unpacked or as `.gz`."""
    return not missing_files(root, split)


def _missing_error(root: str | os.PathLike[str], split: str, why: str) -> GanError:
    names = ", ".join(f"{n}[.gz]" for n in missing_files(root, split))
    return GanError(
        f"MNIST data not found: looked for {names} in {mnist_raw_folder(root)}, and {why}. "
        f"Fix: point data.root=/path/to/folder at a folder that holds MNIST/raw/ with these files "
        f"(data.split=test works when only the test split, t10k-*, is on disk)."
    )


def _read_idx(raw: Path, name: str, ndim: int) -> Tensor:
    """Idx file `name` of unsigned bytes as a uint8 tensor of `ndim` dims; GanError if corrupt.

    The unpacked file is preferred; a `.gz` is md5-checked and decompressed in memory.
    """
    path = raw / name if (raw / name).is_file() else raw / f"{name}.gz"
    data = path.read_bytes()

    fix = "Delete it and re-download (data.download=true), or point data.root elsewhere."

    def bad(what: str) -> GanError:
        return GanError(
            f"{path} is not a valid MNIST idx file: {what}. It is truncated or corrupt: {fix}"
        )

    if path.suffix == ".gz":  # unpacked files carry no checksum: their size is checked below
        expected, actual = _MD5.get(path.name), hashlib.md5(data, usedforsecurity=False).hexdigest()
        if expected is not None and actual != expected:
            raise GanError(
                f"{path} has md5 {actual}, expected {expected} (torchvision's checksum): the "
                f"archive is corrupt or not the official MNIST file. {fix}"
            )
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise bad(f"it could not be decompressed ({e})") from e
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad(f"{len(data)} bytes, shorter than its {header}-byte header")
    if data[0] != 0 or data[1] != 0 or data[2] != _IDX_UINT8 or data[3] != ndim:
        raise bad(f"magic number {data[:4].hex()}, expected 0000080{ndim}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = header + math.prod(dims)
    if len(data) != size:
        raise bad(f"its header says {dims} ({size} bytes) but it holds {len(data)} bytes")
    # One copy into a writable buffer (torch.frombuffer warns on read-only `bytes`).
    return torch.frombuffer(bytearray(memoryview(data)[header:]), dtype=torch.uint8).reshape(dims)


def load_mnist_split(root: str | os.PathLike[str], split: str) -> tuple[Tensor, Tensor]:
    """Decode "train" (60,000 images), "test" (10,000) or "all" (train then test) into memory.

    Returns images uint8 (N, 28, 28) and labels int64 (N,); writes nothing. GanError when
    files are missing, a `.gz` fails torchvision's md5, or a file is truncated or corrupt.
    """
    if missing_files(root, split):
        raise _missing_error(root, split, "this loader does not download")
    raw = mnist_raw_folder(root)
    images, labels = [], []
    for prefix in _PREFIXES[split]:
        x, y = (_read_idx(raw, f"{prefix}-{kind}", d) for kind, d in _KINDS)  # (n, 28, 28), (n,)
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
    if len(images) == 1:  # no copy of the 47 MB train split
        return images[0], labels[0]
    return torch.cat(images), torch.cat(labels)


class _SplitMNIST(MNIST):
    """torchvision's MNIST `download()` alone, for one split's files ("train" or "test").

    No base `__init__`: it would decode the files, which is `load_mnist_split`'s job.
    """

    def __init__(self, root: Path, split: str) -> None:
        self.root, self.split = str(root), split
        prefix = _PREFIXES[split][0]
        self.resources = [r for r in MNIST.resources if r[0].startswith(f"{prefix}-")]

    @property
    def raw_folder(self) -> str:  # the base class names it after the class: keep "MNIST"
        return os.path.join(self.root, "MNIST", "raw")

    def _check_exists(self) -> bool:
        return has_split(self.root, self.split)


def ensure_mnist(root: str | os.PathLike[str], split: str, download: bool) -> None:
    """Make sure `split`'s files are under `<root>/MNIST/raw`, downloading the missing ones
    with torchvision. GanError when some are missing and `download` is false, or it fails."""
    if has_split(root, split):
        return
    if not download:
        raise _missing_error(root, split, "downloading is disabled (data.download=false)")
    for part in ("train", "test") if split == "all" else (split,):
        try:
            _SplitMNIST(Path(root).expanduser(), part).download()  # skips a part on disk
        # URLError is an OSError; torchvision raises RuntimeError once every mirror failed.
        except (OSError, RuntimeError) as e:
            reason = " ".join(str(e).split())[:200]
            raise _missing_error(
                root, split, f"the download failed ({type(e).__name__}: {reason})"
            ) from e
    if not has_split(root, split):
        raise _missing_error(root, split, "the download did not provide them")
