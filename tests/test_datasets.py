"""Tests of the MNIST family in gan.data.mnist and gan.data.datamodule: Fashion-MNIST, KMNIST, EMNIST letters
and Stacked MNIST, on tiny files the tests write in torchvision's layout. Never downloads."""

from __future__ import annotations

import gzip
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from hydra.utils import instantiate
from torchvision.datasets.mnist import read_image_file, read_label_file

from gan.data.datamodule import MNISTDataModule
from gan.data.mnist import DATASETS, has_split, load_split, missing_files, raw_folder, stack_digits
from gan.training.validate import validate
from gan.utils.errors import GanError
from tests.mnist_files import tiny_images, write_tiny, write_tiny_mnist

FILES = ["fashion_mnist", "kmnist", "emnist_letters"]  # the data sets with files of their own
FOLDER = {"fashion_mnist": "FashionMNIST", "kmnist": "KMNIST", "emnist_letters": "EMNIST"}
TITLE = {"fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST", "emnist_letters": "EMNIST letters"}
KW = {"fashion_mnist": {}, "kmnist": {}, "emnist_letters": {"num_classes": 26}}
STACKED = {"dataset": "stacked_mnist", "channels": 3, "num_classes": 1000}


def _dm(root: Path, **kw) -> MNISTDataModule:
    kw = {"download": False, "val_size": 8, "batch_size": 8, **kw}
    dm = MNISTDataModule(root=str(root), **kw)
    dm.setup("fit")
    return dm


def test_registry_and_config_agree() -> None:
    assert list(DATASETS) == ["mnist", *FILES, "stacked_mnist"]
    assert [DATASETS[d].num_classes for d in DATASETS] == [10, 10, 10, 26, 1000]
    assert [DATASETS[d].channels for d in DATASETS] == [1, 1, 1, 1, 3]
    for name in ("mnist", "fashion_mnist", "kmnist", "emnist_letters", "stacked_mnist"):
        text = (Path(__file__).parents[1] / "conf" / "data" / f"{name}.yaml").read_text()
        assert name == "mnist" or f"dataset: {name}" in text


# ---- loading -----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", FILES)
@pytest.mark.parametrize("gz", [False, True])
def test_load_each_data_set_in_its_folder(tmp_path: Path, dataset: str, gz: bool) -> None:
    raw = write_tiny(tmp_path, dataset, "all", n=30, gz=gz)
    assert raw == tmp_path / FOLDER[dataset] / "raw" and raw_folder(tmp_path, dataset) == raw
    if gz and dataset != "emnist_letters":  # md5s are torchvision's: the tiny files fail them
        with pytest.raises(GanError, match="md5"):
            load_split(tmp_path, "test", dataset)
        return
    k = DATASETS[dataset].num_classes
    for split, seed in (("train", 0), ("test", 1)):
        x, y = load_split(tmp_path, split, dataset)
        assert x.shape == (30, 28, 28) and x.dtype == torch.uint8
        assert torch.equal(x, tiny_images(30, seed)), "served upright"
        assert y.dtype == torch.int64 and y.tolist() == [i % k for i in range(30)]
    x_all, y_all = load_split(tmp_path, "all", dataset)
    assert x_all.shape == (60, 28, 28) and len(y_all) == 60
    assert not has_split(tmp_path, "all", "mnist"), "MNIST's folder is another one"


def test_emnist_is_transposed_and_shifted_against_torchvision(tmp_path: Path) -> None:
    raw = write_tiny(tmp_path, "emnist_letters", "train", n=52)
    stored = read_image_file(str(raw / "emnist-letters-train-images-idx3-ubyte"))  # (52, 28, 28)
    stored_labels = read_label_file(str(raw / "emnist-letters-train-labels-idx1-ubyte"))
    x, y = load_split(tmp_path, "train", "emnist_letters")
    assert torch.equal(x, stored.transpose(1, 2)) and not torch.equal(x, stored)
    assert stored_labels.min() == 1 and stored_labels.max() == 26
    assert torch.equal(y, stored_labels - 1) and (y.min(), y.max()) == (0, 25)


def test_labels_out_of_range_are_caught(tmp_path: Path) -> None:
    raw = write_tiny(tmp_path, "emnist_letters", "train", n=20)
    mnist = write_tiny_mnist(tmp_path / "m", n=20)  # labels 0..9: 0 is not an EMNIST letter
    (raw / "emnist-letters-train-labels-idx1-ubyte").write_bytes(
        (mnist / "train-labels-idx1-ubyte").read_bytes()
    )
    with pytest.raises(GanError, match="labels outside 0..25"):
        load_split(tmp_path, "train", "emnist_letters")


@pytest.mark.parametrize("dataset", FILES)
def test_missing_files_and_has_split_per_data_set(tmp_path: Path, dataset: str) -> None:
    prefix = "emnist-letters-test" if dataset == "emnist_letters" else "t10k"
    assert missing_files(tmp_path, "test", dataset) == [
        f"{prefix}-images-idx3-ubyte",
        f"{prefix}-labels-idx1-ubyte",
    ]
    write_tiny_mnist(tmp_path, "all", n=10)  # MNIST's files do not count for another data set
    assert not has_split(tmp_path, "test", dataset) and has_split(tmp_path, "test")
    write_tiny(tmp_path, dataset, "test", n=10, gz=True)
    assert has_split(tmp_path, "test", dataset) and not has_split(tmp_path, "all", dataset)
    assert len(missing_files(tmp_path, "all", dataset)) == 2
    assert has_split(tmp_path, "all", "stacked_mnist"), "Stacked MNIST reads MNIST's files"
    with pytest.raises(GanError, match="data.dataset"):
        missing_files(tmp_path, "test", "cifar10")


# ---- the DataModule ----------------------------------------------------------------------


@pytest.mark.parametrize("dataset", FILES)
def test_datamodule_serves_each_data_set(tmp_path: Path, dataset: str) -> None:
    write_tiny(tmp_path, dataset, "train", n=40)
    dm = _dm(tmp_path, dataset=dataset, **KW[dataset])
    assert (dm.channels, dm.num_classes) == (1, DATASETS[dataset].num_classes)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    xf, _ = dm.on_after_batch_transfer((x, y), 0)
    assert xf.dtype == torch.float32 and xf.shape == (8, 1, 28, 28)


def test_stacked_mnist_batches_and_triples(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path, "test", n=50)
    digits, labels = load_split(tmp_path, "test")
    x, y = load_split(tmp_path, "test", "stacked_mnist", seed=3)
    assert x.shape == (50, 3, 28, 28) and x.dtype == torch.uint8 and y.shape == (50,)
    for i in range(50):  # each channel is one of the split's digits, the label its triple
        idx = [int((digits == x[i, c]).all(-1).all(-1).nonzero()[0]) for c in range(3)]
        assert int(y[i]) == 100 * labels[idx[0]] + 10 * labels[idx[1]] + labels[idx[2]]
    again, _ = load_split(tmp_path, "test", "stacked_mnist", seed=3)
    other, _ = load_split(tmp_path, "test", "stacked_mnist", seed=4)
    assert torch.equal(x, again) and not torch.equal(x, other), "fixed by the data seed"
    dm = _dm(tmp_path, split="test", img_size=64, seed=3, **STACKED)
    assert (dm.channels, dm.num_classes) == (3, 1000)
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (8, 3, 28, 28) and xb.dtype == torch.uint8 and yb.dtype == torch.int64
    xf, _ = dm.on_after_batch_transfer((xb, yb), 0)
    assert xf.shape == (8, 3, 64, 64) and xf.min() >= -1 and xf.max() <= 1


def test_stack_digits_covers_all_modes() -> None:
    digits = torch.arange(10, dtype=torch.uint8)[:, None, None].expand(10, 28, 28)
    x, y = stack_digits(digits.repeat(1000, 1, 1), torch.arange(10).repeat(1000), seed=0)
    assert x.shape == (10_000, 3, 28, 28)
    assert torch.equal(y, x[:, :, 0, 0].long() @ torch.tensor([100, 10, 1]))
    assert 990 <= len(y.unique()) <= 1000, "10,000 uniform triples reach nearly every mode"


@pytest.mark.parametrize(
    ("kw", "fix"),
    [
        ({"dataset": "emnist_letters"}, "data=emnist_letters"),
        ({"dataset": "stacked_mnist", "num_classes": 1000}, "data.channels=3"),
        ({"dataset": "mnist", "channels": 3}, "data.channels=1"),
        ({"dataset": "svhn"}, "data.dataset"),
    ],
)
def test_channels_and_classes_must_match_the_data_set(kw: dict, fix: str) -> None:
    with pytest.raises(GanError) as e:
        MNISTDataModule(**kw)
    assert fix in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["mnist", *FILES, "stacked_mnist"])
def test_each_data_option_composes_and_validates(make_cfg, name: str) -> None:
    cfg = make_cfg(f"data={name}", tiny=False)  # tiny=True would set metrics.num_samples
    validate(cfg)
    spec = DATASETS[name]
    assert (cfg.data.dataset, cfg.data.channels, cfg.data.num_classes) == (
        name,
        spec.channels,
        spec.num_classes,
    )
    assert cfg.metrics.dataset == name, "the metrics pick the data set's classifier"
    assert cfg.metrics.num_samples == (26_000 if name == "stacked_mnist" else 1000)
    dm = instantiate(cfg.data)
    assert (dm.dataset, dm.channels, dm.num_classes) == (name, spec.channels, spec.num_classes)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["data.dataset=svhn"], "data.dataset"),
        (["data=emnist_letters", "data.num_classes=10"], "data.num_classes"),
        (["data.dataset=stacked_mnist"], "data.channels"),
    ],
)
def test_validate_checks_the_data_set(make_cfg, overrides: list[str], key: str) -> None:
    with pytest.raises(GanError, match=key.replace(".", r"\.")):
        validate(make_cfg(*overrides))


# ---- missing data and downloads ----------------------------------------------------------


@pytest.mark.parametrize("dataset", [*FILES, "stacked_mnist"])
def test_missing_data_names_the_data_set_and_root(tmp_path: Path, dataset: str) -> None:
    kw = STACKED if dataset == "stacked_mnist" else {"dataset": dataset, **KW[dataset]}
    with pytest.raises(GanError) as e:
        MNISTDataModule(root=str(tmp_path), split="test", download=False, **kw).prepare_data()
    msg = str(e.value)
    title = TITLE.get(dataset, "Stacked MNIST")
    folder = FOLDER.get(dataset, "MNIST")
    assert msg.startswith(f"{title} data not found") and "data.root=" in msg
    assert str(tmp_path.resolve() / folder / "raw") in msg and "disabled" in msg
    assert f"data.dataset={dataset}" in msg and "\n" not in msg
    with pytest.raises(GanError, match=title):  # setup() without prepare_data() too
        MNISTDataModule(root=str(tmp_path), download=False, **kw).setup("fit")


@pytest.mark.parametrize("dataset", FILES)
def test_download_path_goes_through_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str
) -> None:
    cls = DATASETS[dataset].torchvision
    calls = []

    def fake_download(self):  # stands in for the network: writes where torchvision would
        assert type(self) is cls and Path(self.raw_folder) == tmp_path / FOLDER[dataset] / "raw"
        if self._check_exists():
            return
        calls.append([name for name, _ in getattr(self, "resources", [])])
        write_tiny(tmp_path, dataset, "all", n=30)  # EMNIST's zip holds both splits

    monkeypatch.setattr(cls, "download", fake_download)
    dm = MNISTDataModule(
        root=str(tmp_path), split="all", val_size=5, batch_size=5, dataset=dataset, **KW[dataset]
    )
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.num_train, dm.num_val) == (55, 5)
    assert len(calls) == 1, "one download provides both splits; the second part is skipped"
    if dataset != "emnist_letters":  # only the train part's files, with torchvision's md5s
        assert calls[0] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("dataset", FILES)
def test_failed_download_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str
) -> None:
    def offline(self):
        raise URLError("no network in tests")

    monkeypatch.setattr(DATASETS[dataset].torchvision, "download", offline)
    with pytest.raises(GanError) as e:
        MNISTDataModule(
            root=str(tmp_path), split="test", dataset=dataset, **KW[dataset]
        ).prepare_data()
    msg = str(e.value)
    assert TITLE[dataset] in msg and "download failed" in msg and "no network" in msg
    assert "data.root" in msg


def test_gz_is_checked_with_the_data_sets_own_md5(tmp_path: Path) -> None:
    raw = write_tiny(tmp_path, "fashion_mnist", "test", n=10, gz=True)
    with pytest.raises(
        GanError, match="bef4ecab320f06d8554ea6380940ec79"
    ):  # Fashion's, not MNIST's
        load_split(tmp_path, "test", "fashion_mnist")
    assert gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes())[:4] == bytes(
        [0, 0, 8, 3]
    )
