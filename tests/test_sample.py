"""`python -m gan.sample`: images from a checkpoint alone, and one-line errors for bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from gan.tools.sample import main
from gan.training.module import GAN
from tests.helpers import TINY, cli_error, compose_cfg, start_cli


def make_ckpt(path: Path, tiny_root: Path, *overrides: str) -> Path:
    """A checkpoint of an mlp GAN trained for 2 batches on tiny data, written by a Trainer."""
    cfg = compose_cfg(*TINY, f"data.root={tiny_root}", "model=mlp", *overrides)
    module = GAN.from_config(cfg)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=path.parent,
    )
    trainer.fit(module, datamodule=instantiate(cfg.data))
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def ckpts(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    return {
        "plain": make_ckpt(folder / "plain.ckpt", tiny_root, "ema.enabled=false"),
        "ema": make_ckpt(folder / "ema.ckpt", tiny_root, "ema.enabled=true"),
    }


def cli(*args: str) -> subprocess.Popen:
    """Start `python -m gan.sample args...` as a user would, from the repository root."""
    return start_cli("gan.sample", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_the_command_line(ckpts: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    plain_dict = tmp_path / "dict.pt"
    torch.save({"a": 1}, plain_dict)
    grid = tmp_path / "new" / "grid.png"  # its folder is created
    errors = {  # args -> words the one-line message must hold
        (f"ckpt={tmp_path / 'missing.ckpt'}",): "does not exist",
        (f"ckpt={text}",): "not a checkpoint",
        (f"ckpt={plain_dict}",): "not a checkpoint of this project",
        (f"ckpt={ckpts['plain']}", "ema=true", f"out={tmp_path / 'x.png'}"): "no EMA weights",
        (f"ckpt={ckpts['plain']}", "nn=4"): "unknown option 'nn'",
    }
    # All at once: each process pays torch's and Lightning's imports.
    ok = cli(f"ckpt={ckpts['plain']}", "n=16", "nrow=4", f"out={grid}")
    procs = {args: cli(*args) for args in errors}

    code, stdout, stderr = finish(ok)
    assert code == 0, stderr[-2000:]
    assert str(grid) in stdout
    with Image.open(grid) as image:
        assert image.size == (4 * (28 + 2) + 2,) * 2  # make_grid's padding of 2
    assert [p.name for p in grid.parent.iterdir()] == ["grid.png"]  # no temp file left

    for args, words in errors.items():
        code, stdout, stderr = finish(procs[args])
        assert code != 0, args
        assert "Traceback" not in stderr, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        assert words in lines[0], (args, lines[0])
    assert not (tmp_path / "x.png").exists()


def load_pt(ckpt: Path, out: Path, *args: str) -> torch.Tensor:
    assert main([f"ckpt={ckpt}", "format=pt", f"out={out}", *args]) == out
    return torch.load(out, weights_only=True)


def test_format_pt_and_the_seed(ckpts: dict[str, Path], tmp_path: Path) -> None:
    a = load_pt(ckpts["plain"], tmp_path / "a.pt", "n=10", "seed=3")
    assert a.shape == (10, 1, 28, 28) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, load_pt(ckpts["plain"], tmp_path / "b.pt", "n=10", "seed=3"))
    assert not torch.equal(a, load_pt(ckpts["plain"], tmp_path / "c.pt", "n=10", "seed=4"))
    # EMA weights on request, or by default when the run kept them; ema=false takes G
    ema = load_pt(ckpts["ema"], tmp_path / "e.pt", "n=10", "ema=true")
    assert torch.equal(ema, load_pt(ckpts["ema"], tmp_path / "d.pt", "n=10"))
    assert not torch.equal(ema, load_pt(ckpts["ema"], tmp_path / "g.pt", "n=10", "ema=false"))


def test_interpolation_walks_start_at_the_plain_samples(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    plain = load_pt(ckpts["plain"], tmp_path / "p.pt", "n=3")
    for spherical in ("false", "true"):
        walk = load_pt(
            ckpts["plain"],
            tmp_path / f"w-{spherical}.pt",
            "n=3",
            "interpolate=true",
            "steps=5",
            f"spherical={spherical}",
        )
        assert walk.shape == (3 * 5, 1, 28, 28)
        torch.testing.assert_close(walk[::5], plain)  # z0 = the first n latents of the seed
    grid = main(
        [
            f"ckpt={ckpts['plain']}",
            "n=3",
            "interpolate=true",
            "steps=5",
            f"out={tmp_path / 'w.png'}",
        ]
    )
    with Image.open(grid) as image:
        assert image.size == (5 * 30 + 2, 3 * 30 + 2)  # one walk per row


def test_format_png_writes_one_file_per_image(ckpts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pngs"
    main([f"ckpt={ckpts['plain']}", "n=3", "format=png", f"out={out}"])
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "002.png"]
    with Image.open(out / "000.png") as image:
        assert image.size == (28, 28)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda c: {"w": torch.zeros(3)}, "plain state_dict"),
        (lambda c: {**c, "hyper_parameters": {"lr": 1}}, "another module"),
        (lambda c: {**c, "state_dict": {"net.weight": torch.zeros(1)}}, "weights do not fit"),
    ],
)
def test_checkpoints_of_other_code_are_refused(
    ckpts: dict[str, Path], tmp_path: Path, make, words: str
) -> None:
    bad = tmp_path / "bad.ckpt"
    torch.save(make(torch.load(ckpts["plain"], weights_only=True)), bad)
    with pytest.raises(SystemExit, match=words) as err:
        main([f"ckpt={bad}", f"out={tmp_path / 'x.png'}"])
    assert str(err.value.code).startswith("error: ")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["n=abc"], "n='abc' is invalid"),
        (["format=jpg"], "format='jpg' is unknown"),
        (["n"], "not key=value"),
        (["steps=4"], "add interpolate=true"),
        ([], None),
    ],
)
def test_bad_arguments_are_refused(
    ckpts: dict[str, Path], args: list[str], words: str | None
) -> None:
    argv = [f"ckpt={ckpts['plain']}", *args] if words else args
    with pytest.raises(SystemExit, match=words or "no checkpoint given"):
        main(argv)


def test_an_out_folder_that_cannot_be_written(ckpts: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        SystemExit, match="cannot create the output folder .* is a file, not a folder. .*out="
    ):
        main([f"ckpt={ckpts['plain']}", f"out={blocker / 'sub' / 'x.png'}"])
    with pytest.raises(SystemExit, match="is a folder"):
        main([f"ckpt={ckpts['plain']}", f"out={tmp_path}"])


def test_a_run_folder_samples_from_its_last_checkpoint(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpts["plain"], run / "checkpoints" / "last.ckpt")
    out = main([f"ckpt={run}", "n=4", f"out={tmp_path / 'four.png'}"])
    assert out is not None and out.is_file()
    with pytest.raises(SystemExit, match="is a folder without checkpoints/last.ckpt"):
        main([f"ckpt={tmp_path}", "n=4", f"out={tmp_path / 'x.png'}"])  # holds run/, no checkpoint


def test_samples_default_to_a_new_name_beside_the_checkpoint(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpts["plain"], run / "checkpoints" / "last.ckpt")
    first = main([f"ckpt={run}", "n=4"])
    assert first == run / "samples" / "grid_seed0.png" and first.is_file()
    again = main([f"ckpt={run}", "n=4"])  # never over the first one
    assert again == run / "samples" / "grid_seed0_1.png" and first.is_file()
    assert (
        main([f"ckpt={run}", "n=4", "format=pt", "seed=2"]) == run / "samples" / "samples_seed2.pt"
    )
    walk = main([f"ckpt={run}", "n=2", "interpolate=true", "steps=3"])
    assert walk == run / "samples" / "walk_seed0.png"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("format=pt", "out=x.png"), "format=pt writes a torch tensor file, but out=x.png"),
        (("out=x.pt",), "format=grid writes one PNG grid, but out=x.pt ends in .pt"),
        (("format=png", "out=x.png"), "format=png writes a folder of PNGs"),
    ],
)
def test_a_format_and_out_that_disagree_are_refused(
    ckpts: dict[str, Path], tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    assert words in cli_error(main, f"ckpt={ckpts['plain']}", *args)
    assert not (Path.cwd() / "x.png").exists() and not (Path.cwd() / "x.pt").exists()
