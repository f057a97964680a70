"""Writes that cannot be redirected or lose work, and one line for each bad input.

1. Temporary files: a symlink planted at every name the writers used to pick
   (`.<name>.tmp`, `.<name>.<pid>.tmp`) must not redirect any write: the file it points at
   keeps its content (atomic_write, a checkpoint save, a short training run, gan.tools.sample,
   gan.tools.export).
2. No overwrite without consent: `python -m gan.train` into a folder that holds a run,
   `gan.sample` and `gan.export` onto an existing `out`, refuse with one line naming
   `overwrite=true`, before anything is written (or loaded).
3. Bad inputs that used to end in a traceback: one `error: ...` line each.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig

import gan.tools.export
import gan.tools.sample
from gan.data.mnist import DATASETS
from gan.training.faults import AtomicCheckpointIO
from gan.training.run import train
from gan.training.validate import validate
from gan.utils.errors import GanError
from gan.utils.files import atomic_write
from tests.helpers import cli_error, run_cli, save_untrained, snapshot, tiny

PRECIOUS = b"a file outside the output folder that no write may touch\n"


# ---- helpers ----------------------------------------------------------------------------


def marker(tmp_path: Path) -> Path:
    """A file outside every output folder: the target of the planted symlinks."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PRECIOUS)
    return path


def old_temp_names(name: str) -> list[str]:
    """Every temporary name the writers used before: durable, and per process."""
    return [f".{name}.tmp", f".{name}.{os.getpid()}.tmp"]


def plant(folder: Path, names: list[str], target: Path) -> None:
    """Symlinks at `folder/<name>` for each temporary name of each of `names`, to `target`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        for tmp in old_temp_names(name):
            (folder / tmp).symlink_to(target)


@pytest.fixture
def ckpt(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> Path:
    return save_untrained(make_cfg("model=mlp", "ema.enabled=false"), tmp_path / "g.ckpt")


# ---- 1. temporary files -----------------------------------------------------------------


@pytest.mark.parametrize("durable", [False, True], ids=["plain", "durable"])
def test_atomic_write_ignores_symlinks_at_the_old_temporary_names(
    tmp_path: Path, durable: bool
) -> None:
    target = marker(tmp_path)
    out = tmp_path / "out"
    plant(out, ["file.bin"], target)
    atomic_write(out / "file.bin", lambda tmp: tmp.write_bytes(b"new"), durable=durable)
    assert target.read_bytes() == PRECIOUS
    assert (out / "file.bin").read_bytes() == b"new" and not (out / "file.bin").is_symlink()
    # and no temporary file of this write is left behind
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_atomic_write_cleans_up_and_keeps_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    atomic_write(tmp_path / "atomic", lambda tmp: tmp.write_bytes(b"x"))
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "atomic", fail)
    assert (tmp_path / "atomic").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic", "plain"]


def test_a_durable_write_removes_what_killed_saves_left(tmp_path: Path) -> None:
    left = [tmp_path / ".last.ckpt.tmp", tmp_path / ".last.ckpt.ab12cd34.tmp"]
    for path in left:
        path.write_bytes(b"half a checkpoint")
    other = tmp_path / ".best.ckpt.ab12cd34.tmp"  # another file's: left alone
    other.write_bytes(b"x")
    atomic_write(tmp_path / "last.ckpt", lambda tmp: tmp.write_bytes(b"whole"), durable=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "last.ckpt"]


def test_a_checkpoint_save_ignores_symlinks_at_the_old_temporary_names(tmp_path: Path) -> None:
    target = marker(tmp_path)
    folder = tmp_path / "checkpoints"
    plant(folder, ["last.ckpt"], target)
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, folder / "last.ckpt")
    assert target.read_bytes() == PRECIOUS
    assert torch.equal(torch.load(folder / "last.ckpt", weights_only=True)["w"], torch.ones(3))


def test_a_training_run_writes_through_no_planted_symlink(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """A short run on tiny data: its checkpoints, images, loss plot and config.yaml."""
    target = marker(tmp_path)
    cfg = make_cfg(
        "model=mlp",
        "trainer.max_epochs=1",
        "metrics.enabled=false",
        "callbacks.checkpointing.every_n_iterations=2",
    )
    run = Path(cfg.paths.output_dir)
    plant(run / "checkpoints", ["last.ckpt"], target)
    grids = ["grid_epoch000_step0000018.png", "progress.gif"]
    epoch = ["real_vs_fake_epoch000.png", "interpolation_epoch000.png"]
    plant(run / "images", grids + epoch, target)
    plant(run, ["loss.png", "config.yaml"], target)
    train(cfg)
    assert target.read_bytes() == PRECIOUS
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["gan_iteration"] == 6
    for name in grids + epoch:
        assert (run / "images" / name).is_file() and not (run / "images" / name).is_symlink()
    assert "model:" in (run / "config.yaml").read_text()
    # the old fixed name of last.ckpt's durable save is removed with the planted links
    assert not os.path.lexists(run / "checkpoints" / ".last.ckpt.tmp")


@pytest.mark.parametrize("fmt", ["grid", "png", "pt"])
def test_gan_sample_writes_through_no_planted_symlink(ckpt: Path, tmp_path: Path, fmt: str) -> None:
    target = marker(tmp_path)
    out = tmp_path / {"grid": "s.png", "png": "pngs", "pt": "s.pt"}[fmt]
    if fmt == "png":
        plant(out, ["000.png", "001.png"], target)  # a folder of links only: overwrite=true
        gan.tools.sample.main([f"ckpt={ckpt}", "n=2", "format=png", f"out={out}", "overwrite=true"])
    else:
        plant(out.parent, [out.name], target)
        gan.tools.sample.main([f"ckpt={ckpt}", "n=2", f"format={fmt}", f"out={out}"])
    assert target.read_bytes() == PRECIOUS


def test_gan_export_writes_through_no_planted_symlink(ckpt: Path, tmp_path: Path) -> None:
    target = marker(tmp_path)
    out = tmp_path / "export" / "g.pt"
    plant(out.parent, [out.name], target)
    gan.tools.export.main([f"ckpt={ckpt}", "format=torchscript", f"out={out}"])
    assert target.read_bytes() == PRECIOUS
    assert torch.jit.load(str(out)) is not None


# ---- 2. no overwrite without consent: training --------------------------------------------

TRAIN_ARGS = tiny(
    "model=mlp",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "metrics.enabled=false",
)


def train_cli(tiny_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "gan.train",
        *[a for a in args if a.startswith("-")],  # -m (a sweep) before the overrides
        *TRAIN_ARGS,
        f"data.root={tiny_root}",
        *[a for a in args if not a.startswith("-")],
    )


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, res.stderr[-3000:]
    return lines[0]


def finished_run(folder: Path) -> Path:
    """What a finished run leaves (contents made up: nothing here reads them)."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "config.yaml").write_text("model:\n  name: mlp\n")
    (folder / "result.json").write_text(json.dumps({"status": "ok", "value": 12.5}) + "\n")
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"the finished run's weights")
    (folder / "checkpoints" / "best_epoch009.ckpt").write_bytes(b"its best weights")
    (folder / ".hydra" / "config.yaml").write_text("seed: 42\n")
    (folder / ".hydra" / "overrides.yaml").write_text("- model=mlp\n")
    return folder


def test_training_into_a_finished_run_is_refused_before_anything_is_written(
    tiny_root: Path, tmp_path: Path
) -> None:
    run = finished_run(tmp_path / "run")
    before = snapshot(run)
    line = one_error_line(train_cli(tiny_root, f"hydra.run.dir={run}"))
    assert (
        f"hydra.run.dir={run} already holds a run (config.yaml, result.json, checkpoints/)" in line
    )
    assert "overwrite=true" in line and "ckpt_path=" in line
    assert snapshot(run) == before  # byte for byte: no .hydra/ rewritten, no train.log
    assert sorted(p.name for p in run.iterdir()) == [
        ".hydra",
        "checkpoints",
        "config.yaml",
        "result.json",
    ]


def test_without_the_hydra_callback_gan_train_still_refuses(
    tiny_root: Path, tmp_path: Path
) -> None:
    """The check in gan.training.run itself: Hydra has written .hydra/ by then, nothing else."""
    run = finished_run(tmp_path / "run")
    full = snapshot(run)
    before = {k: v for k, v in full.items() if not k.startswith(".hydra")}
    res = train_cli(tiny_root, f"hydra.run.dir={run}", "~hydra.callbacks.check_output_dir")
    assert "already holds a run" in one_error_line(res) and "overwrite=true" in res.stderr
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(full) <= {".hydra/hydra.yaml", "train.log"}, "nothing else new"


def test_overwrite_true_replaces_the_run(tiny_root: Path, tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    res = train_cli(tiny_root, f"hydra.run.dir={run}", "overwrite=true")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((run / "result.json").read_text())["status"] in ("ok", "no-metric")
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "best_epoch009.ckpt" not in ckpts, "the old run's checkpoints are gone"
    assert "last.ckpt" in ckpts and "removed the earlier run's" in (run / "train.log").read_text()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["gan_iteration"] == 2


def test_resuming_with_a_last_ckpt_that_is_not_a_checkpoint(
    tiny_root: Path, tmp_path: Path
) -> None:
    """ckpt_path=last is resolved to <run>/checkpoints/last.ckpt and checked like a path;
    the run's record (result.json) stays as it was."""
    run = finished_run(tmp_path / "run")
    line = one_error_line(train_cli(tiny_root, f"hydra.run.dir={run}", "ckpt_path=last"))
    last = run / "checkpoints" / "last.ckpt"
    assert f"ckpt_path={last} is not a checkpoint: it is not a file written by torch.save" in line
    assert json.loads((run / "result.json").read_text()) == {"status": "ok", "value": 12.5}
    assert last.read_bytes() == b"the finished run's weights"
    assert (run / "config.yaml").read_text() == "model:\n  name: mlp\n"


def test_a_sweep_into_a_folder_of_earlier_jobs_is_refused(tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    finished_run(sweep / "0")
    before = snapshot(sweep)
    res = train_cli(tiny_root, "-m", f"hydra.sweep.dir={sweep}", "seed=1,2")
    line = one_error_line(res)
    assert f"hydra.sweep.dir={sweep} already holds runs (0)" in line and "overwrite=true" in line
    assert snapshot(sweep) == before


def test_check_run_folder_knows_a_resume_from_a_new_run(tmp_path: Path) -> None:
    from gan.training.faults import check_run_folder

    run = finished_run(tmp_path / "run")
    ckpts, fresh = run / "checkpoints", tmp_path / "fresh"
    check_run_folder(fresh, fresh / "checkpoints", None, False)  # nothing there
    for resume in ("last", "best", "hpc", str(run), str(ckpts / "last.ckpt")):
        check_run_folder(run, ckpts, resume, False)  # continues this very run
    check_run_folder(run, ckpts, None, True)  # overwrite=true
    elsewhere = tmp_path / "other" / "last.ckpt"
    for ckpt_path in (None, str(elsewhere)):  # a new run, or another run's checkpoint
        with pytest.raises(GanError, match="already holds a run .*overwrite=true"):
            check_run_folder(run, ckpts, ckpt_path, False)


def test_a_rank_variable_alone_does_not_skip_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SLURM task or torchrun worker has a rank too: only the DDP ranks that Lightning
    starts, in the folder rank 0 checked, skip the check."""
    from gan.training.faults import CHECKED_RUN, check_run_folder

    run = finished_run(tmp_path / "run")
    monkeypatch.delenv(CHECKED_RUN, raising=False)
    for var in ("LOCAL_RANK", "RANK", "SLURM_PROCID"):
        monkeypatch.setenv(var, "1")
    with pytest.raises(GanError, match="already holds a run"):
        check_run_folder(run, run / "checkpoints", None, False)
    monkeypatch.setenv(CHECKED_RUN, str(tmp_path / "another"))
    with pytest.raises(GanError, match="already holds a run"):
        check_run_folder(run, run / "checkpoints", None, False)
    monkeypatch.setenv(CHECKED_RUN, str(run.resolve()))
    check_run_folder(run, run / "checkpoints", None, False)  # a rank Lightning started
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(GanError, match="already holds a run"):
        check_run_folder(run, run / "checkpoints", None, False)


@pytest.mark.parametrize(
    ("name", "files", "words"),
    [
        ("last", [], "holds no last.ckpt, so there is nothing to resume"),
        ("best", ["last.ckpt"], "holds 0 checkpoints besides last.ckpt"),
        ("best", ["a.ckpt", "b.ckpt", "last.ckpt"], "holds 2 checkpoints besides last.ckpt"),
        ("hpc", [], "holds no hpc_ckpt_<N>.ckpt"),
        ("registry", [], "Lightning's model registry"),
    ],
)
def test_lightning_names_that_find_no_file_are_one_line(
    make_cfg: Callable[..., DictConfig], name: str, files: list[str], words: str
) -> None:
    cfg = make_cfg(
        "model=mlp", "trainer.max_epochs=1", "metrics.enabled=false", f"ckpt_path={name}"
    )
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    folder.mkdir(parents=True)
    for f in files:
        (folder / f).write_bytes(b"x")
    with pytest.raises(GanError, match=words) as err:
        train(cfg)
    assert "\n" not in str(err.value)


def test_lightning_names_resolve_to_the_file_lightning_would_load(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from gan.training.checkpoints import resolve_lightning_name

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("last.ckpt", "best_epoch003.ckpt"):
        (folder / name).write_bytes(b"x")
    os.utime(folder / "last.ckpt", ns=(1, 1))
    (folder / "last-v1.ckpt").write_bytes(b"x")  # newer: Lightning takes the newest last*
    (tmp_path / "run" / "hpc_ckpt_2.ckpt").write_bytes(b"x")
    (tmp_path / "run" / "hpc_ckpt_10.ckpt").write_bytes(b"x")
    run = tmp_path / "run"
    assert resolve_lightning_name("last", folder, run) == folder / "last-v1.ckpt"
    assert resolve_lightning_name("best", folder, run) == folder / "best_epoch003.ckpt"
    assert resolve_lightning_name("hpc", folder, run) == run / "hpc_ckpt_10.ckpt"


# ---- 2. no overwrite without consent: gan.sample and gan.export ---------


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals come before the checkpoint is loaded."""

    def refuse(*args: Any) -> None:
        raise AssertionError("the checkpoint was loaded before the refusal")

    monkeypatch.setattr(gan.tools.sample, "load_gan", refuse)


@pytest.mark.parametrize("fmt", ["grid", "pt"])
def test_gan_sample_refuses_an_existing_out(
    ckpt: Path, tmp_path: Path, fmt: str, no_loading: None
) -> None:
    out = tmp_path / {"grid": "old.png", "pt": "old.pt"}[fmt]
    out.write_bytes(b"older samples")
    line = cli_error(gan.tools.sample.main, f"ckpt={ckpt}", f"format={fmt}", f"out={out}")
    assert f"out={out} already exists" in line and "overwrite=true" in line
    assert out.read_bytes() == b"older samples"
    link = tmp_path / "link.png"  # a dangling symlink counts as there
    link.symlink_to(tmp_path / "nowhere.png")
    assert "already exists" in cli_error(gan.tools.sample.main, f"ckpt={ckpt}", f"out={link}")


def test_gan_sample_overwrite_replaces_the_file(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "old.pt"
    out.write_bytes(b"older samples")
    gan.tools.sample.main([f"ckpt={ckpt}", "format=pt", "n=2", f"out={out}", "overwrite=true"])
    assert torch.load(out, weights_only=True).shape == (2, 1, 28, 28)


def test_gan_sample_png_into_a_folder_that_is_not_empty(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pngs"
    out.mkdir()
    for i in range(5):
        (out / f"{i:03d}.png").write_bytes(b"an earlier draw")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with monkeypatch.context() as m:
        m.setattr(gan.tools.sample, "load_gan", lambda *a: pytest.fail("loaded before the refusal"))
        line = cli_error(gan.tools.sample.main, f"ckpt={ckpt}", "format=png", f"out={out}")
    assert f"out={out} is a folder that is not empty" in line and "overwrite=true" in line
    assert snapshot(out) == before
    gan.tools.sample.main([f"ckpt={ckpt}", "format=png", "n=2", f"out={out}", "overwrite=true"])
    # the new draw alone, no older numbered PNG mixed in; other files stay
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "notes.txt"]
    assert (out / "000.png").read_bytes().startswith(b"\x89PNG")


def test_gan_export_refuses_an_existing_out(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "g.pt"
    out.write_bytes(b"an earlier export")
    with monkeypatch.context() as m:
        m.setattr(gan.tools.sample, "load_gan", lambda *a: pytest.fail("loaded before the refusal"))
        line = cli_error(gan.tools.export.main, f"ckpt={ckpt}", "format=torchscript", f"out={out}")
    assert f"out={out} already exists" in line and "overwrite=true" in line
    assert out.read_bytes() == b"an earlier export"
    gan.tools.export.main([f"ckpt={ckpt}", "format=torchscript", f"out={out}", "overwrite=true"])
    assert torch.jit.load(str(out)) is not None


# ---- 3. bad inputs: one line each -----------------------------------------------------------


def test_a_seed_beyond_int64_is_one_line(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    for seed in ("99999999999999999999999", str(2**63), "-1"):
        line = cli_error(gan.tools.sample.main, f"ckpt={ckpt}", f"seed={seed}", f"out={out}")
        assert f"seed={seed} is out of range" in line and "0..9223372036854775807" in line
    gan.tools.sample.main([f"ckpt={ckpt}", f"seed={2**63 - 1}", "n=2", f"out={out}"])  # the largest
    assert out.is_file()


def test_more_images_than_memory_holds_is_one_line(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.pt"
    line = cli_error(
        gan.tools.sample.main, f"ckpt={ckpt}", "n=1000000000000", "format=pt", f"out={out}"
    )
    assert "n=1000000000000 asks for 1,000,000,000,000 images of 1x28x28" in line
    assert "would need 9.4 PB of memory" in line and "the most this machine can draw" in line
    line = cli_error(
        gan.tools.sample.main, f"ckpt={ckpt}", "n=100000", "interpolate=true", "steps=100000000"
    )
    assert "n=100000 with steps=100000000 asks for 10,000,000,000,000 images" in line
    assert not out.exists()


def test_the_memory_cap_is_what_fits() -> None:
    per_image = 4 * 28 * 28 * gan.tools.sample.COPIES
    gan.tools.sample.check_memory(10, (1, 28, 28), "n=10", available=10 * per_image)
    with pytest.raises(GanError, match=r"the most this machine can draw at once is 10 images"):
        gan.tools.sample.check_memory(11, (1, 28, 28), "n=11", available=10 * per_image + 5)
    with pytest.raises(GanError, match=r"the free memory is unknown here, so a draw is capped"):
        gan.tools.sample.check_memory(10**9, (1, 28, 28), "n=1000000000", available=None)
    assert gan.tools.sample.available_memory() is None or gan.tools.sample.available_memory() > 0


def test_a_non_utf8_out_is_one_line(ckpt: Path, tmp_path: Path) -> None:
    arg = os.fsdecode(b"out=" + bytes(tmp_path) + b"/b\xff.png")  # as sys.argv holds it
    line = cli_error(gan.tools.sample.main, f"ckpt={ckpt}", arg)
    assert "b\\xff.png is not valid UTF-8" in line
    assert "not valid UTF-8" in cli_error(gan.tools.export.main, f"ckpt={ckpt}", arg)


def test_a_non_utf8_out_from_the_command_line(tmp_path: Path) -> None:
    """The bytes as a shell passes them; the error comes before torch is even imported."""
    res = run_cli(
        "gan.sample",
        "ckpt=x.ckpt",
        b"out=" + bytes(tmp_path) + b"/\xff.png",
        text=False,
        timeout=120,
    )
    assert res.returncode == 1
    lines = res.stderr.decode("utf-8", "replace").strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: out=") and "not valid UTF-8" in lines[0]


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=inf",
        "optimizer.lr=nan",
        "optimizer.d_lr_scale=inf",
        "optimizer.g.lr=inf",
        "optimizer.clip_norm=nan",
        "loss.gp_weight=inf",
        "label_smoothing.noise=nan",
        "stabilize.r1=inf",
        "stabilize.topk=nan",
        "ema.decay=nan",
        "guard.lr_factor=nan",
        "condition.aux_weight=inf",
    ],
)
def test_non_finite_settings_are_refused(
    make_cfg: Callable[..., DictConfig], override: str
) -> None:
    key, value = override.split("=")
    with pytest.raises(GanError) as err:
        validate(make_cfg(override))
    assert str(err.value).startswith(f"{key}={value} is out of range: it must be a finite number")


def test_a_training_seed_out_of_range_is_refused(make_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(GanError, match=r"seed=99999999999999999999999 is out of range"):
        validate(make_cfg("seed=99999999999999999999999"))


# ---- downloads: https only, md5-checked ------------------------------------------------------


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_the_download_sources_are_https_only(dataset: str) -> None:
    from gan.data.mnist import mirrors

    sources = mirrors(dataset)
    assert sources and all(s.startswith("https://") for s in sources), sources
    assert "http://yann.lecun.com/exdb/mnist/" not in sources


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "kmnist", "emnist_letters"])
def test_the_download_tries_https_alone_and_with_md5s(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision's downloader is asked for https URLs and md5s only (no network here)."""
    import torchvision.datasets.mnist as tv

    from gan.data.mnist import ensure_split

    asked: list[tuple[str, str | None]] = []

    def offline(url: str, *args: Any, md5: str | None = None, **kwargs: Any) -> None:
        asked.append((url, md5))
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(tv, "download_and_extract_archive", offline)
    with pytest.raises(GanError, match="the download failed"):
        ensure_split(tmp_path, "test", download=True, dataset=dataset)
    assert asked and all(url.startswith("https://") for url, _ in asked), asked
    assert all(md5 and len(md5) == 32 for _, md5 in asked), "every file is md5-checked"


def test_https_only_refuses_http_and_a_downgrade_without_the_network() -> None:
    from gan.data.mnist import https_only

    with https_only(), pytest.raises(urllib.error.URLError, match="downloads use https only"):
        urllib.request.urlopen("http://127.0.0.1:9/train-images-idx3-ubyte.gz", timeout=1)
    assert urllib.request._opener is None or not any(  # type: ignore[attr-defined]
        type(h).__name__ == "_RefuseHttp"
        for h in urllib.request._opener.handlers  # type: ignore[attr-defined]
    ), "the opener is restored afterwards"
