"""The truncation trick, `truncation=ψ`: the convention (gan.core.sampling.truncate), and
gan.sample, gan.export and the app's drawing functions with it.

    pytest tests/test_truncation.py

The checkpoints are untrained GANs of the real config on tiny data: ψ's effect on the latents
does not depend on how good G is.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from gan.core.sampling import NOISE_MEANS, NOISES, generate, sample_z, truncate
from gan.tools.export import export
from gan.tools.export import parse as export_parse
from gan.tools.sample import main as sample_main
from gan.training.checkpoints import load_gan
from gan.training.module import GAN
from gan.utils.errors import GanError
from gan.utils.options import check_truncation
from tests.helpers import cli_error, save_untrained, start_cli


@pytest.fixture
def make_ckpt(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> Callable[..., Path]:
    def _make(*overrides: str) -> Path:
        name = "-".join(o.replace("=", "_") for o in overrides) or "default"
        return save_untrained(make_cfg(*overrides), tmp_path / name / "checkpoints" / "last.ckpt")

    return _make


# ---- the convention -------------------------------------------------------------------


def test_every_noise_declares_its_mean() -> None:
    assert NOISE_MEANS.keys() == NOISES.keys()
    for dist, mean in NOISE_MEANS.items():  # the mean the sampler really has
        z = sample_z(dist, 64, 4000, generator=torch.Generator().manual_seed(0))
        assert abs(float(z.mean()) - mean) < 0.02, dist


@pytest.mark.parametrize("dist", sorted(NOISES))
def test_truncate_pulls_towards_the_mean(dist: str) -> None:
    z = sample_z(dist, 8, 5, generator=torch.Generator().manual_seed(1))  # (5, 8)
    assert truncate(z, 1.0, dist) is z  # ψ = 1: untouched
    mean = torch.full_like(z, NOISE_MEANS[dist])
    assert torch.equal(truncate(z, 0.0, dist), mean)  # ψ = 0: the mean latent, for every z
    assert torch.allclose(truncate(z, 0.5, dist), mean + 0.5 * (z - mean))
    assert torch.allclose(truncate(z, 1.5, dist), mean + 1.5 * (z - mean))  # ψ > 1 widens


def test_psi_must_be_a_number_of_zero_or_more() -> None:
    assert check_truncation(0) == 0.0 and check_truncation("0.7") == 0.7
    assert check_truncation(1.5) == 1.5
    for bad in (-0.1, "-1", "abc", True, None, float("nan"), float("inf"), [0.5]):
        with pytest.raises(GanError) as info:
            check_truncation(bad)
        message = str(info.value)
        assert "\n" not in message and "must be a number >= 0" in message
        assert "Fix it with truncation=0.7" in message


@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_psi_zero_draws_the_mean_image_for_every_z(
    make_cfg: Callable[..., DictConfig], noise: str
) -> None:
    torch.manual_seed(0)
    module = GAN.from_config(make_cfg("model=dcgan", f"noise={noise}")).eval()
    dist = module.cfg.noise.dist
    assert dist == noise
    z = module.sample_z(6, generator=torch.Generator().manual_seed(2))  # (6, D), all different
    images = generate(module, truncate(z, 0.0, dist))  # (6, 1, 28, 28)
    mean = generate(module, torch.zeros(1, z.shape[1]))  # G(0): the mean of both noises
    assert torch.allclose(images, mean.expand_as(images), atol=1e-6)
    assert torch.equal(generate(module, truncate(z, 1.0, dist)), generate(module, z))
    assert not torch.allclose(generate(module, z)[0], generate(module, z)[1])  # z does matter


# ---- gan.sample -----------------------------------------------------------------------


def test_sample_takes_truncation_on_the_command_line(
    make_ckpt: Callable[..., Path], tmp_path: Path
) -> None:
    ckpt = make_ckpt("model=mlp", "noise=uniform")
    zero, bad = tmp_path / "zero.pt", tmp_path / "bad.pt"
    procs = [  # both at once: each pays torch's imports
        start_cli("gan.sample", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in (
            (f"ckpt={ckpt}", "format=pt", "n=6", "truncation=0", f"out={zero}"),
            (f"ckpt={ckpt}", "format=pt", "truncation=-0.5", f"out={bad}"),
        )
    ]
    (out, err), (_, bad_err) = (p.communicate(timeout=300) for p in procs)
    assert procs[0].returncode == 0, err[-2000:]
    images = torch.load(zero, weights_only=True)  # (6, 1, 28, 28) in [0, 1]
    assert images.shape == (6, 1, 28, 28)
    assert torch.equal(images, images[:1].expand_as(images))  # G(mean), six times
    assert procs[1].returncode == 1 and not bad.exists()
    lines = bad_err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: truncation=-0.5 is invalid"), bad_err


def draw(ckpt: Path, out: Path, *args: str) -> torch.Tensor:
    sample_main([f"ckpt={ckpt}", "format=pt", f"out={out}", "overwrite=true", *args])
    return torch.load(out, weights_only=True)


def test_every_mode_of_sample_applies_psi(make_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    ckpt = make_ckpt("model=mlp", "condition=concat", "ema.enabled=true")
    out = tmp_path / "x.pt"
    for mode in (
        ("n=5",),
        ("label=3", "n=4"),
        ("labels=[0,1]", "n=4"),
        ("per_class=2",),
        ("interpolate=true", "n=2", "steps=3"),
        ("interpolate=true", "n=2", "steps=3", "spherical=true"),
    ):
        plain = draw(ckpt, out, *mode)
        assert torch.equal(plain, draw(ckpt, out, *mode, "truncation=1"))  # ψ = 1: off
        assert not torch.equal(plain, draw(ckpt, out, *mode, "truncation=0.5")), mode
        if mode == ("label=3", "n=4"):  # one class at ψ = 0: one image
            mean = draw(ckpt, out, *mode, "truncation=0")
            assert torch.allclose(mean, mean[:1].expand_as(mean), atol=1e-6)
    for fmt, name in (("grid", "g.png"), ("png", "pngs")):  # the other formats take it too
        sample_main([f"ckpt={ckpt}", f"format={fmt}", f"out={tmp_path / name}", "truncation=0.7"])
        assert (tmp_path / name).exists()
    assert "truncation=-1 is invalid" in cli_error(sample_main, f"ckpt={ckpt}", "truncation=-1")
    assert "truncation='x' is invalid" in cli_error(sample_main, f"ckpt={ckpt}", "truncation=x")


# ---- gan.export -----------------------------------------------------------------------


def test_onnx_bakes_psi_into_the_graph(make_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason='the export extra: pip install -e ".[app]"')
    for overrides in (("model=dcgan", "noise=uniform"), ("model=mlp", "condition=concat")):
        ckpt = make_ckpt(*overrides)
        path = tmp_path / f"{overrides[0]}.onnx"
        out, worst = export(export_parse([f"ckpt={ckpt}", f"out={path}", "truncation=0.5"]))
        assert worst <= 1e-4
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert session.get_modelmeta().custom_metadata_map["truncation"] == "0.5"
        module = load_gan(ckpt)
        z = module.sample_z(7, generator=torch.Generator().manual_seed(3))  # (7, D)
        feed = {"z": z.numpy()}
        args: tuple[torch.Tensor, ...] = (0.5 * z,)  # both noises' mean is 0
        if module.num_classes:
            labels = torch.arange(7)
            feed["labels"], args = labels.numpy(), (0.5 * z, labels)
        got = torch.from_numpy(session.run(["images"], feed)[0])
        with torch.no_grad():
            want = module.sampling_generator()(*args)  # G(ψ z)
        assert (got - want).abs().max() <= 1e-4


def test_safetensors_records_psi_and_sample_draws_with_it(
    make_ckpt: Callable[..., Path], tmp_path: Path
) -> None:
    ckpt = make_ckpt("model=mlp", "ema.enabled=true")
    folder = tmp_path / "shared"
    export(export_parse([f"ckpt={ckpt}", "format=safetensors", f"out={folder}", "truncation=0.6"]))
    config = json.loads((folder / "config.json").read_text())
    assert config["truncation"] == 0.6 and config["version"] == 2
    assert "ψ = 0.6" in (folder / "README.md").read_text()
    at_06 = draw(ckpt, tmp_path / "a.pt", "truncation=0.6")
    assert torch.equal(draw(folder, tmp_path / "b.pt"), at_06)  # the recorded ψ by default
    assert torch.equal(
        draw(folder, tmp_path / "c.pt", "truncation=1"), draw(ckpt, tmp_path / "d.pt")
    )
    # exporting the folder again keeps its ψ; at ψ = 1 a folder stays version 1
    again = tmp_path / "again"
    export(export_parse([f"ckpt={folder}", "format=safetensors", f"out={again}"]))
    assert json.loads((again / "config.json").read_text())["truncation"] == 0.6
    plain = tmp_path / "plain"
    export(export_parse([f"ckpt={ckpt}", "format=safetensors", f"out={plain}"]))
    config = json.loads((plain / "config.json").read_text())
    assert config["version"] == 1 and "truncation" not in config
    # a folder recording a bad ψ is refused in one line
    bad = json.loads((folder / "config.json").read_text())
    bad["truncation"] = -2
    (folder / "config.json").write_text(json.dumps(bad))
    assert "truncation=-2, not a number >= 0" in cli_error(sample_main, f"ckpt={folder}")


# ---- the app's drawing functions ------------------------------------------------------


def cells(picture: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    """The images of an app picture (gan.tools.explore: 28 px, padding 2, scaled by 3)."""
    scale, size, pad = 3, 28, 2
    step, side = (size + pad) * scale, size * scale
    return [
        picture[pad * scale + r * step :][:side, pad * scale + c * step :][:, :side]
        for r in range(rows)
        for c in range(cols)
    ]


def test_app_grid_and_walk_take_psi(make_ckpt: Callable[..., Path]) -> None:
    pytest.importorskip("gradio", reason='the app extra: pip install -e ".[app]"')
    from gan.tools.app import MAX_TRUNCATION, check_input
    from gan.tools.explore import interpolation, sample_grid

    module = load_gan(make_ckpt("model=mlp"))
    plain = sample_grid(module, 0, 3)
    assert np.array_equal(plain, sample_grid(module, 0, 3, psi=1.0))
    assert not np.array_equal(plain, sample_grid(module, 0, 3, psi=0.5))
    mean = cells(sample_grid(module, 0, 3, psi=0.0), 3, 3)  # 9 copies of G(0)
    assert all(np.array_equal(c, mean[0]) for c in mean)
    strip, frame = interpolation(module, 0, 1, 4, False, 0.5, psi=0.0)
    assert all(np.array_equal(c, mean[0]) for c in [*cells(strip, 1, 4), frame])  # one: unpadded
    assert check_input("truncation", 0.7) == 0.7
    for bad in (-0.1, MAX_TRUNCATION + 0.1, float("nan"), "1"):
        with pytest.raises(GanError, match="truncation ψ must be a number from 0 to 1.5"):
            check_input("truncation", bad)
