"""The MNIST family's files on disk, in torchvision's layout (`<root>/<Folder>/raw/`): which
splits are there, torchvision's download of the missing ones, and decoding into uint8 tensors.

    ensure_split("data", "train", download=True, dataset="fashion_mnist")  # torchvision's md5s
    images, labels = load_split("data", "train", "fashion_mnist")  # (60000, 28, 28) u8, (60000,)

`DATASETS` is the one list of data sets (the `data.dataset` choices). Files are read unpacked
or as md5-checked `.gz` (decompressed in memory: nothing is written beside them); only the
split(s) in use must be there. Downloads use https alone (`mirrors`: torchvision's https
mirrors, MNIST's http://yann.lecun.com dropped; an https copy of the same files where
torchvision has only http; no redirect to http, no fall-back to it) and every file must
match torchvision's md5, which torchvision checks before it unpacks anything. EMNIST
letters are served upright (its files hold transposed images) with labels 0..25. Stacked MNIST is built from MNIST's files: a seeded, fixed set of
digit triples stacked as the 3 channels, label 100*a + 10*b + c (1,000 modes).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import EMNIST, KMNIST, MNIST, FashionMNIST

from gan.utils.errors import GanError

SPLITS = ("train", "test", "all")
_PARTS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}
_KINDS = (("images-idx3-ubyte", 3), ("labels-idx1-ubyte", 1))  # file name suffix, idx dims
_IDX_UINT8 = 0x08  # idx type code of unsigned bytes, the only one the family uses


@dataclass(frozen=True)
class DatasetSpec:
    """One data set of the family: where torchvision puts its files and what they hold."""

    title: str  # for messages: "Fashion-MNIST"
    torchvision: type[MNIST]  # the class whose download() fetches the files
    num_classes: int
    channels: int = 1
    prefixes: dict[str, str] = field(default_factory=lambda: {"train": "train", "test": "t10k"})
    transposed: bool = False  # files hold images transposed (EMNIST): serve them upright
    label_offset: int = 0  # subtracted from the stored labels (EMNIST letters: 1..26 -> 0..25)
    source: str | None = None  # built from another data set's files (stacked_mnist: "mnist")

    @property
    def folder(self) -> str:  # torchvision names the folder after the class
        return self.torchvision.__name__

    @property
    def md5s(self) -> dict[str, str]:  # "train-images-idx3-ubyte.gz" -> md5 (EMNIST: a zip)
        return dict(getattr(self.torchvision, "resources", []))


_EMNIST = {"train": "emnist-letters-train", "test": "emnist-letters-test"}
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("MNIST", MNIST, 10),
    "fashion_mnist": DatasetSpec("Fashion-MNIST", FashionMNIST, 10),
    "kmnist": DatasetSpec("KMNIST", KMNIST, 10),
    "emnist_letters": DatasetSpec("EMNIST letters", EMNIST, 26, 1, _EMNIST, True, 1),
    "stacked_mnist": DatasetSpec("Stacked MNIST", MNIST, 1000, 3, source="mnist"),
}


def spec(dataset: str) -> DatasetSpec:
    """The registry entry of `dataset`; GanError naming the choices if there is none."""
    if dataset not in DATASETS:
        raise GanError(
            f"data.dataset={dataset!r} is not one of {', '.join(DATASETS)}. Fix it with "
            f"data=<one of them> (or data.dataset=...)."
        )
    return DATASETS[dataset]


def _files_of(dataset: str) -> tuple[str, DatasetSpec]:
    """The data set whose files hold `dataset`'s images (itself, or stacked MNIST's MNIST)."""
    s = spec(dataset)
    return (s.source, DATASETS[s.source]) if s.source else (dataset, s)


def raw_folder(root: str | os.PathLike[str], dataset: str = "mnist") -> Path:
    """The absolute folder torchvision uses for `dataset`'s files, e.g. `<root>/MNIST/raw`."""
    return Path(root).expanduser().resolve() / _files_of(dataset)[1].folder / "raw"


def _names(s: DatasetSpec, split: str) -> list[str]:
    return [f"{s.prefixes[p]}-{kind}" for p in _PARTS[split] for kind, _ in _KINDS]


def missing_files(root: str | os.PathLike[str], split: str, dataset: str = "mnist") -> list[str]:
    """Idx files of `split` found neither unpacked nor as `.gz` in `raw_folder(root, dataset)`.

    The one test of which splits are on disk. GanError if `split` is not in `SPLITS`.
    """
    if split not in SPLITS:
        raise GanError(f"data.split={split!r} is not one of {', '.join(SPLITS)}.")
    raw, s = raw_folder(root, dataset), _files_of(dataset)[1]
    return [n for n in _names(s, split) if not ((raw / n).is_file() or (raw / f"{n}.gz").is_file())]


def has_split(root: str | os.PathLike[str], split: str, dataset: str = "mnist") -> bool:
    """Whether every file of `split` is in `raw_folder(root, dataset)`, unpacked or as `.gz`."""
    return not missing_files(root, split, dataset)


def _missing_error(root: str | os.PathLike[str], split: str, dataset: str, why: str) -> GanError:
    names = ", ".join(f"{n}[.gz]" for n in missing_files(root, split, dataset))
    s, files = spec(dataset), _files_of(dataset)[1]
    built = f" (built from {files.title}'s files)" if s.source else ""
    test = f"{files.prefixes['test']}-*"
    return GanError(
        f"{s.title} data not found{built}: looked for {names} in {raw_folder(root, dataset)}, "
        f"and {why}. Fix: point data.root=/path/to/folder at a folder that holds "
        f"{files.folder}/raw/ with these files (data.dataset={dataset}; data.split=test works "
        f"when only the test split, {test}, is on disk)."
    )


def _read_idx(raw: Path, name: str, ndim: int, s: DatasetSpec) -> Tensor:
    """Idx file `name` of unsigned bytes as a uint8 tensor of `ndim` dims; GanError if corrupt.

    The unpacked file is preferred; a `.gz` is md5-checked and decompressed in memory.
    """
    path = raw / name if (raw / name).is_file() else raw / f"{name}.gz"
    data = path.read_bytes()

    fix = "Delete it and re-download (data.download=true), or point data.root elsewhere."

    def bad(what: str) -> GanError:
        return GanError(
            f"{path} is not a valid {s.title} idx file: {what}. It is truncated or corrupt: {fix}"
        )

    if path.suffix == ".gz":  # unpacked files carry no checksum: their size is checked below
        expected = s.md5s.get(path.name)
        actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if expected is not None and actual != expected:
            raise GanError(
                f"{path} has md5 {actual}, expected {expected} (torchvision's checksum): the "
                f"archive is corrupt or not the official {s.title} file. {fix}"
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


def _load_files(root: str | os.PathLike[str], split: str, dataset: str) -> tuple[Tensor, Tensor]:
    if missing_files(root, split, dataset):
        raise _missing_error(root, split, dataset, "this loader does not download")
    s, raw = spec(dataset), raw_folder(root, dataset)
    images, labels = [], []
    for part in _PARTS[split]:
        prefix = s.prefixes[part]
        x, y = (_read_idx(raw, f"{prefix}-{kind}", d, s) for kind, d in _KINDS)
        if tuple(x.shape[1:]) != (28, 28):
            raise GanError(
                f"{raw / prefix}-images-idx3-ubyte holds {tuple(x.shape[1:])} images, not 28x28."
            )
        if len(x) != len(y):
            raise GanError(
                f"{raw} holds {len(x)} {prefix} images but {len(y)} labels: one of the two files is "
                f"corrupt. Delete them and re-download, or point data.root elsewhere."
            )
        if s.transposed:  # (n, 28, 28) stored column by column: one copy, upright
            x = x.transpose(1, 2).contiguous()
        y = y.long() - s.label_offset
        if len(y) and (y.min() < 0 or y.max() >= s.num_classes):
            raise GanError(
                f"{raw / prefix}-labels-idx1-ubyte holds labels outside 0..{s.num_classes - 1} "
                f"after the shift by {s.label_offset}: not {s.title}'s file? Point data.root "
                f"elsewhere."
            )
        images.append(x)
        labels.append(y)
    if len(images) == 1:  # no copy of the 47 MB train split
        return images[0], labels[0]
    return torch.cat(images), torch.cat(labels)


def stack_digits(images: Tensor, labels: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Stacked MNIST from digits (N, 28, 28) uint8 and labels (N,) int64: N fixed triples.

    Triple i holds digits (a, b, c) drawn uniformly with replacement by a generator seeded
    with `seed`; returns images uint8 (N, 3, 28, 28) and labels 100*a + 10*b + c (N,) int64.
    """
    n = len(images)
    idx = torch.randint(0, n, (n, 3), generator=torch.Generator().manual_seed(seed))  # (N, 3)
    return images[idx], labels[idx] @ torch.tensor([100, 10, 1])


def load_split(
    root: str | os.PathLike[str], split: str, dataset: str = "mnist", seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Decode "train", "test" or "all" (train then test) of `dataset` into memory.

    Returns images uint8 (N, 28, 28) (stacked_mnist: (N, 3, 28, 28), its triples drawn with
    `seed`) and labels int64 (N,) in 0..num_classes-1; writes nothing. GanError when files
    are missing, a `.gz` fails torchvision's md5, or a file is truncated or corrupt.
    """
    s = spec(dataset)
    if s.source:
        return stack_digits(*_load_files(root, split, s.source), seed=seed)
    return _load_files(root, split, dataset)


def load_mnist_split(root: str | os.PathLike[str], split: str) -> tuple[Tensor, Tensor]:
    """MNIST's "train" (60,000 images), "test" (10,000) or "all": `load_split(..., "mnist")`."""
    return load_split(root, split, "mnist")


# https copies of files that torchvision fetches over http alone; each must still match
# torchvision's md5, so a copy can only ever serve the official bytes.
HTTPS_MIRRORS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",),  # Keras's
    "kmnist": ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),  # the http mirror's own host
}


def mirrors(dataset: str) -> list[str]:
    """Where `dataset`'s files are downloaded from, https URLs only, in the order tried:
    torchvision's mirrors (URL prefixes), then HTTPS_MIRRORS; EMNIST: its zip's URL."""
    name, s = _files_of(dataset)
    cls = s.torchvision
    if "url" in vars(cls):  # EMNIST: one zip at one address
        found = [cls.url]
    else:
        found = [*getattr(cls, "mirrors", []), *HTTPS_MIRRORS.get(name, ())]
    return [m for m in dict.fromkeys(found) if m.startswith("https://")]


class _RefuseHttp(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> None:  # type: ignore[override]
        raise urllib.error.URLError(f"refused {req.full_url}: downloads use https only")


class _RefuseFtp(urllib.request.FTPHandler):
    def ftp_open(self, req: urllib.request.Request) -> None:  # type: ignore[override]
        raise urllib.error.URLError(f"refused {req.full_url}: downloads use https only")


@contextlib.contextmanager
def https_only() -> Iterator[None]:
    """urllib (which torchvision downloads with) refuses every URL but https:// meanwhile.

    torchvision retries a failed https download over http, and urllib follows a redirect
    from https to http: both are refused, as are http mirrors and ftp.
    """
    previous = urllib.request._opener  # type: ignore[attr-defined]
    urllib.request.install_opener(urllib.request.build_opener(_RefuseHttp, _RefuseFtp))
    try:
        yield
    finally:
        urllib.request.install_opener(previous)


def _download(root: Path, part: str, dataset: str) -> None:
    """torchvision's own `download()` of `dataset`, for one part's files ("train" or "test").

    The instance skips the class's `__init__` (it would decode the files: our loader's job);
    its `raw_folder` is the class's, `<root>/<ClassName>/raw`.
    """
    s = spec(dataset)
    cls = s.torchvision
    tv = cls.__new__(cls)
    tv.root = str(root)
    tv.split, tv.train = "letters", part == "train"  # EMNIST's; the others ignore them
    prefix = s.prefixes[part]
    tv.resources = [r for r in s.md5s.items() if r[0].startswith(f"{prefix}-")]  # with md5s
    sources = mirrors(dataset)
    if not sources:
        raise urllib.error.URLError(f"torchvision has no https source for {s.title}")
    if "url" not in vars(cls):  # EMNIST downloads its one https `url`
        tv.mirrors = sources
    tv._check_exists = lambda: has_split(root, part, dataset)  # unpacked or .gz
    with https_only():
        tv.download()  # EMNIST: one zip holds every split; skips a part already on disk


def ensure_split(
    root: str | os.PathLike[str], split: str, download: bool, dataset: str = "mnist"
) -> None:
    """Make sure `split`'s files of `dataset` are on disk, downloading the missing ones with
    torchvision. GanError when some are missing and `download` is false, or it fails."""
    files = _files_of(dataset)[0]
    if has_split(root, split, files):
        return
    if not download:
        raise _missing_error(root, split, dataset, "downloading is disabled (data.download=false)")
    for part in _PARTS[split]:
        try:
            _download(Path(root).expanduser(), part, files)
        # URLError is an OSError; torchvision raises RuntimeError once every mirror failed.
        except (OSError, RuntimeError) as e:
            reason = " ".join(str(e).split())[:200]
            raise _missing_error(
                root, split, dataset, f"the download failed ({type(e).__name__}: {reason})"
            ) from e
    if not has_split(root, split, files):
        raise _missing_error(root, split, dataset, "the download did not provide them")
