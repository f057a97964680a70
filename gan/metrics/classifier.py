"""Small per-data-set classifiers: the feature networks of the FID-like scores in `gan.metrics.scores`.

Inception-v3 knows nothing of handwritten digits and needs downloaded weights, so the
project trains its own small CNN (`gan.metrics.classifier_net`) on each data set of the MNIST
family and caches it on disk. Its penultimate layer (128 features) plays the role of
Inception's pool features, its logits that of Inception's class scores. Stacked MNIST is
scored with MNIST's classifier on each channel (`gan.metrics.stacked.StackedClassifier`).

    python -m gan.classifier                              # train on data/ (train split), or report the cache
    python -m gan.classifier data.root=../shared/mnist data.split=test data.download=false
    python -m gan.classifier data.dataset=fashion_mnist   # any key of gan.data.mnist.DATASETS
    python -m gan.classifier retrain=true max_epochs=8    # ignore the cached one

    clf = load_or_train("data", split="train", dataset="mnist")  # frozen, on the CPU; .info
    feats = clf.features(images)  # (B, 128); images (B, 1, 28|64, 28|64) in [0, 1]

Cache: `<cache_dir()>/classifier/<key>.pt`; the key names the data set and the training
data (see `classifier_key`), not the training settings: `retrain=true` replaces the file.
split="test" (the offline case, only t10k-* on disk) trains on the first 80% of the test
split and measures on the last 20%. split="train" or "all" trains on the train split and
measures on the test split, or on the train split's last 10,000 images without one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from torch import Tensor

from gan.data.datamodule import MNISTDataModule
from gan.data.mnist import SPLITS, ensure_split, has_split, load_split, spec
from gan.metrics.classifier_net import (  # noqa: F401  (re-exported: the classifier's public names)
    MNIST_MEAN,
    MNIST_STD,
    ClassifierInfo,
    ClassifierModule,
    MNISTClassifier,
    freeze,
    random_affine,
    to_28,
)
from gan.metrics.stacked import StackedClassifier
from gan.utils.errors import GanError
from gan.utils.files import atomic_write

log = logging.getLogger("gan.classifier")

ARCH = "cnn1"  # bump when MNISTClassifier changes: old cache files then stop matching
MAX_HELD_OUT = 10_000  # held-out images when there is no separate test split to measure on
# The training recipe's defaults (python -m gan.classifier's, load_or_train's, CAS's).
EPOCHS, BATCH_SIZE, LR = 5, 128, 2e-3  # one-cycle Adam: 98.4% after 8k test images


# ---- data and cache ---------------------------------------------------------------------


def cache_dir() -> Path:
    """`$GAN_CACHE`, or `~/.cache/gan`."""
    return Path(os.environ.get("GAN_CACHE") or "~/.cache/gan").expanduser()


def classifier_key(split: str, images: Tensor, labels: Tensor, dataset: str = "mnist") -> str:
    """Cache key of a classifier trained on `dataset`'s `images` (N, 28, 28) uint8, `labels` (N,).

    MNIST's keys are those of earlier versions (`<split>-n<N>-<hash>-<arch>`: its cached
    classifiers stay valid); other data sets' keys start with the data set's name.
    """
    h = hashlib.sha256()
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.to(torch.uint8).contiguous().numpy().tobytes())
    key = f"{split}-n{len(images)}-{h.hexdigest()[:12]}-{ARCH}"
    return key if dataset == "mnist" else f"{dataset}-{key}"


def training_data(
    root: str, split: str, download: bool, dataset: str = "mnist"
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], str, str]:
    """(train images, labels), (held-out images, labels), the held-out set's name, and the
    split the training images come from ("all" trains on the train split, as "train" does,
    and shares its cache file)."""
    if split not in SPLITS:
        raise GanError(f"data.split={split!r} is not one of {', '.join(SPLITS)}.")
    source = "test" if split == "test" else "train"
    ensure_split(root, source, download, dataset)
    if source == "train" and download and not has_split(root, "test", dataset):
        try:
            ensure_split(root, "test", download, dataset)
        except GanError as err:  # the train split alone will do: measure on a held-out part
            log.warning("could not download the test split (%s)", err)
    if split == "all":  # raises the GanError that names the missing files
        ensure_split(root, "all", download, dataset)
    x, y = load_split(root, source, dataset)  # (N, 28, 28) uint8, (N,) int64
    if source == "train" and has_split(root, "test", dataset):
        return (x, y), load_split(root, "test", dataset), "the test split", source
    n_held = min(len(x) // 5, MAX_HELD_OUT)  # 2,000 of the test split's 10,000
    if source == "train":
        msg = "no %s test split in %s: measuring on the train split's last %d images"
        log.warning(msg, spec(dataset).title, root, n_held)
    n = len(x) - n_held
    return (x[:n], y[:n]), (x[n:], y[n:]), f"the last {n_held} images of the {source} split", source


def _load_cached(path: Path, split: str, dataset: str = "mnist") -> MNISTClassifier | None:
    """The classifier stored at `path`, or None (with a warning) if it cannot be read."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        k = int(blob.get("num_classes", 10))  # files of earlier versions: MNIST's 10
        with torch.random.fork_rng(devices=[]):  # building it draws init weights: keep the
            clf = MNISTClassifier(int(blob["feature_dim"]), k)  # caller's RNG as it was
        clf.load_state_dict(blob["state_dict"])
        stored = {k: blob[k] for k in ("key", "num_train", "held_out", "accuracy")}
        stored |= {k: blob.get(k) for k in ("max_epochs", "batch_size", "lr")}  # None: older
        clf.info = ClassifierInfo(path=path, split=split, trained=False, dataset=dataset, **stored)
    except Exception as e:  # corrupt, truncated or from another version: train a new one
        log.warning("cached classifier %s is unreadable (%r); training a new one", path, e)
        return None
    return clf


def fit_classifier(
    train: tuple[Tensor, Tensor],
    held_out: tuple[Tensor, Tensor],
    num_classes: int,
    max_epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    seed: int = 0,
    accelerator: str = "auto",
    progress_bar: bool = True,
) -> tuple[MNISTClassifier, float]:
    """Train a fresh `MNISTClassifier` on `train` and measure it on `held_out`: the one
    training recipe of the cached classifiers (`load_or_train`) and of the Classification
    Accuracy Score (`gan.tools.cas`, which passes generated digits as `train`).

    Each part is (images uint8 (N, 28, 28), labels int64 (N,)). One-cycle Adam, random
    affine augmentation, `max_epochs` epochs of `batch_size`; seeded by `seed` on its own
    RNG streams (the caller's are left as they were). Returns the network (on the CPU, not
    frozen) and its accuracy on `held_out`.
    """
    n = len(train[0])
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # seeded, and the caller's RNG streams untouched
        torch.manual_seed(seed)
        module = ClassifierModule(lr=lr, num_classes=num_classes)
        # The held-out set is both the validation and the test set: nothing is tuned on it.
        b = min(batch_size, n)  # a data set smaller than one batch still trains
        dm = MNISTDataModule.from_tensors(
            train, held_out, batch_size=b, seed=seed, val_batch_size=1000, value_range="sigmoid"
        )
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=1,
            max_epochs=max_epochs,
            logger=False,  # the caller writes what it keeps
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, datamodule=dm)
        result = trainer.test(module, datamodule=dm, verbose=False)
    return module.net.cpu(), float(result[0]["test/acc"])


def load_or_train(
    root: str,
    split: str = "train",
    download: bool = False,
    max_epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    seed: int = 0,
    retrain: bool = False,
    accelerator: str = "auto",
    progress_bar: bool = True,
    dataset: str = "mnist",
) -> MNISTClassifier | StackedClassifier:
    """A frozen classifier (on the CPU) for `root`'s `split` of `dataset`: cached, or trained now.

    `dataset` is a key of `gan.data.mnist.DATASETS`; its head has that data set's classes.
    "stacked_mnist" returns a `StackedClassifier` around MNIST's classifier (trained on
    MNIST's `split` if not cached): 3-channel images, 1,000 joint classes.
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
    root, num_classes = str(root), spec(dataset).num_classes
    if spec(dataset).source == "mnist":  # stacked_mnist: MNIST's classifier on each channel
        kw = dict(max_epochs=max_epochs, batch_size=batch_size, lr=lr, seed=seed, retrain=retrain)
        kw |= dict(accelerator=accelerator, progress_bar=progress_bar)
        return StackedClassifier(load_or_train(root, split, download, dataset="mnist", **kw))
    train, held_out, held_name, source = training_data(root, split, download, dataset)
    key = classifier_key(source, *train, dataset=dataset)
    path = cache_dir() / "classifier" / f"{key}.pt"
    if path.is_file() and not retrain:
        cached = _load_cached(path, split, dataset)
        if cached is not None and cached.info is not None:
            log.info(
                "classifier from the cache: %s (held-out accuracy %.4f)", path, cached.info.accuracy
            )
            return freeze(cached)

    n = len(train[0])
    gpu = accelerator != "cpu" and torch.cuda.is_available()
    estimate = n * max_epochs * (2e-5 if gpu else 2e-4)  # s per image and epoch, measured
    msg = "no cached %s classifier for %s (split=%s, %d images): training one (~%.0f s) -> %s"
    log.info(msg, spec(dataset).title, root, split, n, estimate, path)
    start = time.perf_counter()
    clf, accuracy = fit_classifier(
        train, held_out, num_classes, max_epochs, batch_size, lr, seed, accelerator, progress_bar
    )
    seconds = time.perf_counter() - start

    blob = dict(state_dict=clf.state_dict(), feature_dim=clf.feature_dim, arch=ARCH, key=key)
    blob |= dict(dataset=dataset, num_classes=num_classes)
    blob |= dict(split=split, num_train=n, held_out=held_name, accuracy=accuracy)
    blob |= dict(max_epochs=max_epochs, batch_size=batch_size, lr=lr, seconds=seconds)
    try:  # atomic: readers, a sweep's other jobs among them, never see half a file
        atomic_write(path, lambda tmp: torch.save(blob, tmp))
    except OSError as e:
        raise GanError(
            f"could not write the classifier cache {path} ({e}). Fix: point GAN_CACHE at a "
            f"writable folder."
        ) from e
    settings = dict(max_epochs=max_epochs, batch_size=batch_size, lr=lr)
    clf.info = ClassifierInfo(
        key, path, split, n, held_name, accuracy, True, seconds, dataset, **settings
    )
    msg = "classifier trained in %.0f s: accuracy %.4f on %s; saved to %s"
    log.info(msg, seconds, accuracy, held_name, path)
    return freeze(clf)


@dataclass
class ClassifierDataConfig:
    root: str = "data"  # holds MNIST/raw/* (FashionMNIST/, ...); relative to where you launch
    split: str = "train"  # train | test | all ("test": trains on 8,000 test images, offline)
    dataset: str = "mnist"  # a key of gan.data.mnist.DATASETS
    download: bool = True  # torchvision's mirrors; false to use the files already there


@dataclass
class ClassifierConfig:
    data: ClassifierDataConfig = field(default_factory=ClassifierDataConfig)
    max_epochs: int = EPOCHS  # one-cycle Adam: 98.4% after 8k test images (~8 s on a CPU core)
    batch_size: int = BATCH_SIZE
    lr: float = LR  # the one-cycle peak
    seed: int = 0
    retrain: bool = False  # train even if a cached classifier matches the data
    accelerator: str = "auto"
    progress_bar: bool = True


def register() -> None:
    """Put the command line's schema in Hydra's ConfigStore as `classifier_schema`."""
    ConfigStore.instance().store(name="classifier_schema", node=ClassifierConfig)


register()


def run(cfg: DictConfig | ClassifierConfig) -> MNISTClassifier | StackedClassifier:
    """What `python -m gan.classifier` does: load or train, then print accuracy and path."""
    keys = ("max_epochs", "batch_size", "lr", "seed", "retrain", "accelerator", "progress_bar")
    data = cfg.data
    kw = {k: getattr(cfg, k) for k in keys}
    clf = load_or_train(data.root, data.split, data.download, dataset=data.dataset, **kw)
    info = clf.info
    assert info is not None
    source = f"trained in {info.seconds:.0f} s" if info.trained else "from the cache"
    per = " per channel, MNIST's classifier" if data.dataset == "stacked_mnist" else ""
    print(
        f"{spec(data.dataset).title} held-out accuracy{per}: {info.accuracy:.4f} "
        f"on {info.held_out} "
        f"({info.num_train} training images, {source})"
    )
    print(f"classifier: {info.path}")
    return clf
