"""Tests of gan.data.datamodule: loading, batches, ordering, resume, errors. CPU only, never downloads."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path
from urllib.error import URLError

import lightning as L
import pytest
import torch
import torchvision
from torchvision.datasets.mnist import read_image_file, read_label_file

from gan.data.batches import balanced_subset
from gan.data.datamodule import MNISTDataModule
from gan.data.mnist import has_split, load_mnist_split, missing_files
from gan.utils.errors import GanError
from tests.mnist_files import tiny_images, write_tiny_mnist

SHARED = Path("/work/shared/mnist")


def _dm(root: Path, **kw) -> MNISTDataModule:
    kw = {"download": False, "val_size": 8, "batch_size": 8, **kw}
    dm = MNISTDataModule(root=str(root), **kw)
    dm.setup("fit")
    return dm


def _epoch(loader) -> list[torch.Tensor]:
    return [x.clone() for x, _ in loader]


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
    return sorted(out)


# ---- loading ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_tiny_split(tmp_path, split):
    write_tiny_mnist(tmp_path, split, n=40)
    x, y = load_mnist_split(str(tmp_path), split)
    assert x.shape == (40, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (40,) and y.dtype == torch.int64
    assert y.tolist() == [i % 10 for i in range(40)]


def test_load_all_is_train_then_test(tmp_path):
    write_tiny_mnist(tmp_path, "all", n=30)
    x_all, y_all = load_mnist_split(str(tmp_path), "all")
    x_tr, y_tr = load_mnist_split(str(tmp_path), "train")
    x_te, y_te = load_mnist_split(str(tmp_path), "test")
    assert torch.equal(x_all, torch.cat([x_tr, x_te])) and torch.equal(
        y_all, torch.cat([y_tr, y_te])
    )
    assert not torch.equal(x_tr, x_te)
    assert _dm(tmp_path, split="all").num_train == 60 - 8


def test_load_gz_matches_unpacked_and_ignores_md5_of_unknown_names(tmp_path):
    # Unpacked files win over archives, and are never md5-checked.
    write_tiny_mnist(tmp_path, "test", n=20)
    write_tiny_mnist(tmp_path, "test", n=20, gz=True)
    x, _ = load_mnist_split(str(tmp_path), "test")
    assert x.shape == (20, 28, 28)


@pytest.mark.skipif(
    not (SHARED / "MNIST" / "raw").is_dir(), reason=f"{SHARED} is not on this machine"
)
def test_real_test_split_read_only(tmp_path):
    before = _listing(SHARED)
    x, y = load_mnist_split(str(SHARED), "test")  # the .gz md5s pass or this raises
    assert x.shape == (10_000, 28, 28) and x.dtype == torch.uint8 and y.shape == (10_000,)
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # Same tensors as torchvision's own parser, on copies unpacked outside /work/shared.
    raw = SHARED / "MNIST" / "raw"
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress((raw / f"{name}.gz").read_bytes()))
    assert torch.equal(x, read_image_file(str(tmp_path / "t10k-images-idx3-ubyte")))
    assert torch.equal(y, read_label_file(str(tmp_path / "t10k-labels-idx1-ubyte")))
    dm = MNISTDataModule(root=str(SHARED), split="test", download=True)
    dm.prepare_data()  # files present: must not download nor write
    dm.setup("fit")
    assert (dm.num_train, dm.num_val) == (9000, 1000)
    assert _listing(SHARED) == before


def test_missing_files_and_has_split(tmp_path):
    assert missing_files(tmp_path, "test") == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    write_tiny_mnist(tmp_path, "test", n=10, gz=True)  # archives count as present
    assert has_split(tmp_path, "test") and not has_split(tmp_path, "all")
    assert missing_files(tmp_path, "all") == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    with pytest.raises(GanError, match="data.split"):
        missing_files(tmp_path, "val")


def test_from_tensors_serves_them_without_disk(tmp_path):
    x = tiny_images(30)  # (30, 28, 28) uint8
    y = torch.arange(30) % 10
    dm = MNISTDataModule.from_tensors(
        (x[:20], y[:20]), (x[20:], y[20:]), root=str(tmp_path / "none"), batch_size=5
    )
    dm.prepare_data()  # nothing to download, and no GanError for the missing files
    dm.setup("fit")
    assert (dm.num_train, dm.num_val) == (20, 10)
    loader = dm.train_dataloader()
    served = torch.cat([b for b, _ in loader])[:, 0]  # (20, 28, 28): x[:20] in epoch 0's order
    assert torch.equal(served[loader.sampler.permutation(0).argsort()], x[:20])
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        images, labels = zip(*loader, strict=True)
        assert torch.equal(torch.cat(images)[:, 0], x[20:])
        assert torch.equal(torch.cat(labels), y[20:])


# ---- batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("d_steps", [1, 3])
def test_train_batches_are_uint8_and_sized(tmp_path, d_steps):
    write_tiny_mnist(tmp_path, n=100)
    dm = _dm(tmp_path, val_size=10, batch_size=6, d_steps=d_steps)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 90 // (6 * d_steps)  # drop_last
    for x, y in batches:
        assert x.shape == (6 * d_steps, 1, 28, 28) and x.dtype == torch.uint8
        assert y.shape == (6 * d_steps,) and y.dtype == torch.int64


@pytest.mark.parametrize(
    ("value_range", "img_size", "lo", "hi"),
    [("tanh", 28, -1.0, 1.0), ("sigmoid", 28, 0.0, 1.0), ("tanh", 64, -1.0, 1.0)],
)
def test_after_transfer_range_and_size(tmp_path, value_range, img_size, lo, hi):
    write_tiny_mnist(tmp_path, n=64)
    dm = _dm(tmp_path, value_range=value_range, img_size=img_size)
    x_u8, y = next(iter(dm.train_dataloader()))
    x, y2 = dm.on_after_batch_transfer((x_u8, y), 0)
    assert x.shape == (8, 1, img_size, img_size) and x.dtype == torch.float32
    assert torch.equal(y, y2)
    assert x.min() >= lo and x.max() <= hi
    assert x.min() < lo + 0.05 and x.max() > hi - 0.05  # the full range is used
    if img_size == 28:
        scale = 127.5 if value_range == "tanh" else 255.0
        assert torch.allclose(
            (x + (1 if value_range == "tanh" else 0)) * scale, x_u8.float(), atol=1e-3
        )
    assert torch.equal(dm.to_model_range(x_u8), x)


def test_val_set_disjoint_fixed_and_seeded(tmp_path):
    write_tiny_mnist(tmp_path, n=100)
    a, b, c = (_dm(tmp_path, val_size=20, seed=s) for s in (0, 0, 1))
    assert (a.num_train, a.num_val) == (80, 20)
    assert set(a.train_indices.tolist()).isdisjoint(a.val_indices.tolist())
    assert sorted(a.train_indices.tolist() + a.val_indices.tolist()) == list(range(100))
    assert torch.equal(a.val_indices, b.val_indices)
    assert not torch.equal(a.val_indices, c.val_indices)
    x_all, _ = load_mnist_split(str(tmp_path), "train")
    vals = [x for x, _ in a.val_dataloader()]
    assert [len(v) for v in vals] == [20]  # val_batch_size=500 > 20: one batch
    assert torch.equal(torch.cat(vals)[:, 0], x_all[a.val_indices])
    small = _dm(tmp_path, val_size=20, val_batch_size=8)
    assert [len(x) for x, _ in small.val_dataloader()] == [8, 8, 4]  # fixed order, last kept
    assert _dm(tmp_path, val_size=0).val_dataloader() == []


def test_epoch_orders(tmp_path):
    write_tiny_mnist(tmp_path, n=64)
    dm = _dm(tmp_path)
    loader = dm.train_dataloader()
    e0 = _epoch(loader)
    loader.sampler.set_epoch(1)
    e1 = _epoch(loader)
    assert not all(torch.equal(p, q) for p, q in zip(e0, e1, strict=True))
    assert torch.equal(torch.cat(e0).sort(0).values, torch.cat(e1).sort(0).values)  # same images
    other = _dm(tmp_path).train_dataloader()
    other.sampler.set_epoch(1)
    assert all(torch.equal(p, q) for p, q in zip(e1, _epoch(other), strict=True))
    seed1 = _dm(tmp_path, seed=1).train_dataloader()
    seed1.sampler.set_epoch(1)
    assert not all(torch.equal(p, q) for p, q in zip(e1, _epoch(seed1), strict=True))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loaders_leave_the_global_rng_alone(tmp_path, num_workers):
    # Exact resume needs it: an iterator that drew a worker seed from the global RNG shifted
    # every later random number of a resumed run.
    write_tiny_mnist(tmp_path, n=64)
    dm = _dm(tmp_path, num_workers=num_workers)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for _ in range(2):  # two epochs: each iter() draws its seed anew
        assert len(_epoch(dm.train_dataloader())) == 7 and len(_epoch(dm.val_dataloader())) == 1
        dm.train_dataloader().sampler.set_epoch(1)
    assert torch.equal(torch.get_rng_state(), before)


# ---- resume ----------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "num_workers"), [(0, 0), (3, 0), (5, 2), (7, 0)])
def test_loader_state_resumes_mid_epoch(tmp_path, k, num_workers):
    write_tiny_mnist(tmp_path, n=72)
    full_loader = _dm(tmp_path, num_workers=num_workers).train_dataloader()  # 64 train -> 8 batches
    full_loader.sampler.set_epoch(2)
    full = _epoch(full_loader)
    loader = _dm(tmp_path, num_workers=num_workers).train_dataloader()
    loader.sampler.set_epoch(2)
    it = iter(loader)
    head = [next(it)[0] for _ in range(k)]  # workers prefetch ahead; only these k count
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches_seen": k}
    del it
    fresh = _dm(tmp_path, num_workers=num_workers).train_dataloader()
    fresh.load_state_dict(state)
    it = iter(fresh)  # Lightning: load_state_dict, iter(), then set_epoch(), then next()
    fresh.sampler.set_epoch(2)
    tail = [x for x, _ in it]
    assert len(head) + len(tail) == len(full)
    assert all(torch.equal(p, q) for p, q in zip(head + tail, full, strict=True))
    assert fresh.state_dict() == {"epoch": 2, "batches_seen": 8}
    fresh.sampler.set_epoch(3)
    assert len(_epoch(fresh)) == 8  # the next epoch is whole again


def test_loader_state_after_full_epoch_starts_next_epoch(tmp_path):
    write_tiny_mnist(tmp_path, n=72)
    a = _dm(tmp_path).train_dataloader()
    _epoch(a)
    assert a.state_dict() == {"epoch": 0, "batches_seen": 8}
    b = _dm(tmp_path).train_dataloader()
    b.load_state_dict(a.state_dict())
    a.sampler.set_epoch(1)
    assert all(torch.equal(p, q) for p, q in zip(_epoch(a), _epoch(b), strict=True))


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, _ = batch
        assert x.dtype == torch.float32 and x.min() >= -1  # converted by the datamodule hook
        self.seen.append(x.detach().clone())
        return (self.w * x.mean()).sum()

    def validation_step(self, batch, batch_idx):
        assert batch[0].dtype == torch.float32

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(root: Path, **kw) -> L.Trainer:
    return L.Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


@pytest.mark.parametrize(("k", "on_device"), [(3, False), (8, False), (11, True)])
def test_trainer_resume_continues_the_batch_stream(tmp_path, k, on_device):
    """Through a real Trainer: a checkpoint taken after step k, resumed, replays the rest exactly."""
    write_tiny_mnist(tmp_path, n=80)
    kw = {"download": False, "val_size": 16, "batch_size": 8, "on_device": on_device}
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    every_k = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=k, save_top_k=-1
    )
    full = _Recorder()
    trainer = _trainer(tmp_path, max_epochs=3, callbacks=[every_k])
    trainer.fit(full, datamodule=MNISTDataModule(str(tmp_path), **kw))
    assert len(full.seen) == 3 * 8  # 64 train images / 8 per batch, 3 epochs
    ckpt = tmp_path / "ckpt" / f"step={k}.ckpt"
    state = torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]
    assert state["combined_loader"] == [{"epoch": (k - 1) // 8, "batches_seen": (k - 1) % 8 + 1}]

    rest = _Recorder()
    _trainer(tmp_path, max_epochs=3, enable_checkpointing=False).fit(
        rest, datamodule=MNISTDataModule(str(tmp_path), **kw), ckpt_path=ckpt
    )
    assert len(rest.seen) == len(full.seen) - k
    assert all(torch.equal(p, q) for p, q in zip(rest.seen, full.seen[k:], strict=True))


# ---- errors ----------------------------------------------------------------------------


def test_missing_without_download(tmp_path):
    with pytest.raises(GanError) as e:
        MNISTDataModule(root=str(tmp_path), split="test", download=False).prepare_data()
    msg = str(e.value)
    assert "data.root" in msg and str(tmp_path.resolve() / "MNIST" / "raw") in msg
    assert "t10k-images-idx3-ubyte" in msg and "disabled" in msg and "data.split=test" in msg
    assert "\n" not in msg
    with pytest.raises(GanError, match="data.root"):  # setup() without prepare_data() too
        MNISTDataModule(root=str(tmp_path), download=False).setup("fit")


def test_failed_download_is_explained_and_only_fetches_the_split(tmp_path, monkeypatch):
    asked = []

    def offline(self):
        asked.extend(name for name, _ in self.resources)
        raise URLError("no network in tests")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(GanError) as e:
        MNISTDataModule(root=str(tmp_path), split="test", download=True).prepare_data()
    msg = str(e.value)
    assert "download failed" in msg and "data.root" in msg and "no network" in msg
    assert asked == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_path_goes_through_torchvision(tmp_path, monkeypatch):
    def fake_download(self):  # stands in for the network: writes where torchvision would
        assert Path(self.raw_folder) == tmp_path / "MNIST" / "raw"
        write_tiny_mnist(tmp_path, "test", n=30)

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_download)
    dm = MNISTDataModule(root=str(tmp_path), split="test", val_size=5, batch_size=5)
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.num_train, dm.num_val) == (25, 5)


def test_download_of_all_fetches_only_the_missing_split(tmp_path, monkeypatch):
    write_tiny_mnist(tmp_path, "train", n=30)
    asked = []

    def fake_download(self):  # torchvision's download starts with the same check
        if not self._check_exists():
            asked.extend(name for name, _ in self.resources)
            write_tiny_mnist(tmp_path, "test", n=30)

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_download)
    MNISTDataModule(root=str(tmp_path), split="all", download=True).prepare_data()
    assert asked == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_gz_with_wrong_md5(tmp_path):
    write_tiny_mnist(tmp_path, "test", n=20, gz=True)
    with pytest.raises(GanError) as e:
        load_mnist_split(str(tmp_path), "test")
    msg = str(e.value)
    assert (
        "md5" in msg
        and "9fb629c4189551a2d022fa330f9573f3" in msg
        and "t10k-images-idx3-ubyte.gz" in msg
    )
    assert "data.root" in msg


def test_truncated_idx_file(tmp_path):
    raw = write_tiny_mnist(tmp_path, n=20)
    f = raw / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(GanError, match="train-images-idx3-ubyte.*truncated"):
        load_mnist_split(str(tmp_path), "train")
    write_tiny_mnist(tmp_path, n=20)  # images whole again; now break the labels
    (raw / "train-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(GanError, match="train-labels-idx1-ubyte"):
        load_mnist_split(str(tmp_path), "train")


def test_labels_and_images_disagree(tmp_path):
    raw = write_tiny_mnist(tmp_path, n=20)
    other = write_tiny_mnist(tmp_path / "other", n=10)
    (raw / "train-labels-idx1-ubyte").write_bytes((other / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(GanError, match="20 train images but 10 labels"):
        load_mnist_split(str(tmp_path), "train")


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"split": "val"}, "data.split"),
        ({"img_size": 32}, "data.img_size"),
        ({"value_range": "relu"}, "data.value_range"),
        ({"val_size": -1}, "data.val_size"),
        ({"d_steps": 0}, "step_ratio.d_steps"),
        ({"on_device": True, "num_workers": 2}, "data.num_workers"),
        ({"limit": 9}, "data.limit"),  # fewer than the 10 classes
    ],
)
def test_bad_args_name_the_key(kw, key):
    with pytest.raises(GanError, match=key.replace(".", r"\.")):
        MNISTDataModule(**kw)


def test_val_size_and_batch_checked_against_the_data(tmp_path):
    write_tiny_mnist(tmp_path, n=20)
    with pytest.raises(GanError, match=r"data\.val_size=20"):
        _dm(tmp_path, val_size=20)
    with pytest.raises(GanError, match=r"data\.batch_size"):
        _dm(tmp_path, val_size=10, batch_size=6, d_steps=2)


# ---- data.limit: a class-balanced training subset ----------------------------------------


def test_limit_is_class_balanced_seeded_and_disjoint_from_the_held_out_images(tmp_path):
    write_tiny_mnist(tmp_path, n=200)  # labels 0..9 cycling
    full = _dm(tmp_path, val_size=40)
    dm = _dm(tmp_path, val_size=40, limit=23, limit_seed=5)
    assert dm.num_train == 23 and len(dm.train_indices) == 23
    counts = torch.bincount(dm.train_set.labels, minlength=10).tolist()
    assert counts == [3, 3, 3] + [2] * 7  # 23 // 10 each, the remainder to classes 0, 1, 2
    assert set(dm.train_indices.tolist()) <= set(full.train_indices.tolist())
    assert not set(dm.train_indices.tolist()) & set(dm.val_indices.tolist())
    assert torch.equal(dm.val_indices, full.val_indices)  # the scores keep every held-out image
    assert torch.equal(dm.val_set.images, full.val_set.images)
    again = _dm(tmp_path, val_size=40, limit=23, limit_seed=5)
    assert torch.equal(again.train_indices, dm.train_indices)  # the seed alone decides
    other = _dm(tmp_path, val_size=40, limit=23, limit_seed=6)
    assert not torch.equal(other.train_indices, dm.train_indices)
    assert len(dm.train_dataloader()) == 23 // 8  # batches come from the subset only


def test_limit_errors_are_one_line(tmp_path):
    write_tiny_mnist(tmp_path, n=64)
    with pytest.raises(GanError, match=r"data\.limit=100 is more than the 56 training images"):
        _dm(tmp_path, limit=100)
    with pytest.raises(GanError, match=r"data\.limit=20 training images are used"):
        _dm(tmp_path, limit=20, batch_size=16, d_steps=2)
    labels = torch.tensor([0, 0, 0, 0, 0, 1])
    with pytest.raises(GanError, match="takes 2 images of class 1, but the training images hold "):
        balanced_subset(labels, 4, 2, seed=0)
    assert balanced_subset(labels, 3, 2, seed=0).tolist()[-1] == 5  # class 1's one image


def test_a_resume_checks_the_subset_against_the_checkpoints(tmp_path):
    write_tiny_mnist(tmp_path, n=64)
    dm = _dm(tmp_path, limit=20, limit_seed=1)
    state = dm.state_dict()
    assert state["limit"] == 20 and torch.equal(state["limit_indices"], dm.train_indices)
    _dm(tmp_path, limit=20, limit_seed=1).load_state_dict(state)  # the same draw: fine
    with pytest.raises(GanError, match="now draws other images than the run did"):
        _dm(tmp_path, limit=20, limit_seed=2).load_state_dict(state)
    with pytest.raises(GanError, match="the run's subset holds 20 images, data.limit=30 now"):
        _dm(tmp_path, limit=30, limit_seed=1).load_state_dict(state)
    with pytest.raises(GanError, match="trained on data.limit=20, but this resume asks for every"):
        _dm(tmp_path).load_state_dict(state)
    _dm(tmp_path).load_state_dict(_dm(tmp_path).state_dict())  # no limit either side
