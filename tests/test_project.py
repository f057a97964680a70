"""`python -m gan.project`: a drawn digit found in G (the latent, and the class of a
conditional G), its picture prepared as MNIST's, and one-line errors for bad pictures.

The generators are untrained tiny ones (nothing trains but the tiny classifier, one epoch
on 64 images): recovery is measured against what a random latent gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from gan.data.pictures import MAX_SIDE, MNIST_BOX, read_picture, to_mnist
from gan.nets import ARCHITECTURES
from gan.tools.explore import generate_images
from gan.tools.project import main
from gan.tools.projector import search
from gan.training.checkpoints import load_gan
from tests.helpers import TINY, cli_error, compose_cfg, run_cli, save_untrained


def digit_png(
    path: Path,
    size: tuple[int, int] = (300, 200),
    ink: str | tuple[int, ...] = "black",
    paper: str | tuple[int, ...] = "white",
    mode: str = "RGB",
    box: tuple[int, int, int, int] = (190, 20, 260, 180),
) -> Path:
    """A '7'-like stroke drawn in `box` (off-centre, large) on a picture of `size`."""
    image = Image.new(mode, size, paper)
    x0, y0, x1, y1 = box
    ImageDraw.Draw(image).line([(x0, y0), (x1, y0), (x0 + 15, y1)], fill=ink, width=12)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def ckpts(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained mlp checkpoints (unconditional and concat-conditional) in run folders, and
    the cached classifier of their data (so the perceptual term and the labels are on)."""
    from gan.metrics.classifier import load_or_train

    folder = tmp_path_factory.mktemp("project")
    out = {}
    for cond in ("none", "concat"):
        cfg = compose_cfg(*TINY, f"data.root={tiny_root}", "model=mlp", f"condition={cond}")
        out[cond] = save_untrained(cfg, folder / cond / "checkpoints" / "last.ckpt")
    load_or_train(str(tiny_root), "train", max_epochs=1, accelerator="cpu", progress_bar=False)
    return out


# ---- the search ------------------------------------------------------------------------


@pytest.mark.parametrize("cond", ["none", "concat"])
def test_an_image_of_g_is_recovered(ckpts: dict[str, Path], cond: str) -> None:
    module = load_gan(ckpts[cond])
    gen = torch.Generator().manual_seed(123)
    z = module.sample_z(4, generator=gen)  # (4, 8)
    labels = torch.tensor([3, 3, 3, 3]) if cond == "concat" else None
    target = generate_images(
        module, z[:1], None if labels is None else labels[:1]
    )  # (1, 1, 28, 28)
    others = generate_images(module, z[1:], None if labels is None else torch.tensor([0, 5, 9]))
    random_mse = float((others - target).pow(2).flatten(1).mean(1).mean())
    found = search(module, target, steps=150, restarts=8, seed=0)
    assert found.images.shape == target.shape and found.z.shape == (1, 8)
    assert float(found.mse[0]) < 1e-3
    assert float(found.mse[0]) < 0.1 * random_mse  # far nearer than another latent's image
    if cond == "concat":
        assert found.labels is not None and int(found.labels[0]) == 3
    again = search(module, target, steps=150, restarts=8, seed=0)
    assert torch.equal(again.z, found.z)  # the seed fixes the result


# ---- the picture -----------------------------------------------------------------------


def test_an_off_centre_large_digit_is_centred_into_a_20_box(tmp_path: Path) -> None:
    digit = to_mnist(read_picture(digit_png(tmp_path / "d.png")))
    assert digit.shape == (28, 28)
    rows = torch.nonzero((digit > 0.1).any(1)).flatten()
    cols = torch.nonzero((digit > 0.1).any(0)).flatten()
    height, width = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    assert max(height, width) in (MNIST_BOX, MNIST_BOX + 1)  # the long side: 20 px
    assert height > width  # the aspect kept: the stroke is taller than wide
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    cy, cx = float((digit * ys).sum() / digit.sum()), float((digit * xs).sum() / digit.sum())
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75  # centred by its centre of mass
    assert float(digit[0].max()) == 0 and float(digit.max()) == pytest.approx(1.0, abs=0.02)


def test_dark_on_light_is_inverted_and_colour_made_grey(tmp_path: Path) -> None:
    dark = to_mnist(read_picture(digit_png(tmp_path / "dark.png")))
    light = to_mnist(read_picture(digit_png(tmp_path / "light.png", ink="white", paper="black")))
    assert torch.allclose(dark, light, atol=0.02)  # white ink on black, either way
    colour = read_picture(digit_png(tmp_path / "c.png", ink=(200, 30, 30), paper=(250, 250, 200)))
    assert colour.dim() == 2  # grey
    assert torch.allclose(to_mnist(colour), dark, atol=0.06)
    clear = digit_png(tmp_path / "t.png", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    assert torch.allclose(to_mnist(read_picture(clear)), dark, atol=0.02)  # transparent canvas


# ---- bad pictures: one line each -------------------------------------------------------


def test_bad_pictures_get_one_line(ckpts: dict[str, Path], tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (280, 280), "white").save(blank)
    huge = tmp_path / "huge.png"
    Image.new("L", (MAX_SIDE + 1, 8)).save(huge)  # a small file, over the side limit
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    ckpt = f"ckpt={ckpts['none']}"
    cases = {
        "blank": (blank, "blank"),
        "huge": (huge, f"over the {MAX_SIDE} x {MAX_SIDE} limit"),
        "text": (text, "not an image PIL can read"),
        "missing": (tmp_path / "nowhere.png", "does not exist"),
    }
    for name, (path, expected) in cases.items():
        message = cli_error(main, ckpt, f"image={path}", f"out={tmp_path / name}")
        assert expected in message, message
        assert not (tmp_path / name).exists()  # nothing written
    proc = run_cli("gan.project", ckpt, f"image={blank}", f"out={tmp_path / 'cli'}", timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ") and "blank" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ---- the command line ------------------------------------------------------------------


def test_the_command_line_writes_three_files_and_refuses_to_overwrite(
    ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = digit_png(tmp_path / "seven.png")
    args = [f"ckpt={ckpts['concat']}", f"image={image}", "steps=20", "restarts=2"]
    main(args)
    printed = capsys.readouterr().out
    out = ckpts["concat"].parent.parent / "projections" / "seven"  # beside the checkpoint
    assert {p.name for p in out.iterdir()} == {"match.png", "z.pt", "progress.gif"}
    assert "pixel MSE of the match: 0." in printed
    assert "classifier's label: drawn digit " in printed and ", match " in printed
    blob = torch.load(out / "z.pt", weights_only=True)
    assert blob["z"].shape == (1, 8) and 0 <= blob["label"] < 10
    with Image.open(out / "match.png") as match, Image.open(out / "progress.gif") as gif:
        assert match.size[0] > match.size[1]  # the picture | the match
        assert gif.n_frames >= 2
    before = (out / "z.pt").read_bytes()
    assert "overwrite=true" in cli_error(main, *args)
    assert (out / "z.pt").read_bytes() == before
    main([*args, "overwrite=true", "seed=1"])
    assert (out / "z.pt").read_bytes() != before
    capsys.readouterr()
    main(["--help"])
    help_text = capsys.readouterr().out
    for option in ("ckpt", "image", "out", "steps", "restarts", "seed", "ema", "overwrite"):
        assert f"    {option} " in help_text


# ---- every network, with and without its EMA weights -----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("ema", [True, False])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture(
    arch: str, ema: bool, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_cfg(*TINY, f"data.root={tiny_root}", f"model={arch}", "ema.enabled=true")
    ckpt = save_untrained(cfg, tmp_path / "last.ckpt")
    image = digit_png(tmp_path / "d.png")
    out = tmp_path / "out"
    args = [f"ckpt={ckpt}", f"image={image}", f"out={out}", f"ema={str(ema).lower()}"]
    main([*args, "steps=3", "restarts=2", "gif_frames=2", "perceptual=0"])
    blob = torch.load(out / "z.pt", weights_only=True)
    assert blob["z"].shape == (1, cfg.noise.dim) and np.isfinite(blob["mse"])
    assert "pixel MSE of the match" in capsys.readouterr().out


def test_the_found_z_goes_to_samples_and_interpolation(ckpts: dict[str, Path]) -> None:
    """What the Project tab's *use the found z* button draws: G(found z) in the grid's first
    cell, and the walk starting from it."""
    from gan.tools.explore import sample_grid, to_picture
    from gan.tools.projector import Projector, grid_with_found, walk_from_found
    from gan.utils.errors import GanError

    module = load_gan(ckpts["concat"])
    picture = read_picture(digit_png(Path(ckpts["concat"]).parent / "seven.png"))
    pair, strip, found, line = Projector(module).find(picture, steps=10, restarts=2, frames=4)
    assert pair.shape == (32 * 3, 62 * 3) and strip.shape[1] == (4 * 30 + 2) * 3
    assert "Pixel error" in line and len(found["z"]) == 8 and 0 <= found["label"] < 10
    z = torch.tensor([found["z"]])
    first = to_picture(generate_images(module, z, torch.tensor([found["label"]])), 1)
    cell = slice(2 * 3, 2 * 3 + first.shape[0])  # make_grid's padding of 2, upscaled 3x
    grid = grid_with_found(module, found, seed=0, side=3)
    assert np.array_equal(grid[cell, cell], first)
    below = (2 + 28 + 2) * 3  # the rows below the first: the seed's own grid's
    assert np.array_equal(grid[below:], sample_grid(module, 0, 3)[below:])
    walk, _ = walk_from_found(module, found, seed_b=1, steps=5, spherical=False, position=0.5)
    assert np.array_equal(walk[cell, cell], first)
    with pytest.raises(GanError, match="nothing found yet"):
        grid_with_found(module, None, seed=0, side=3)
