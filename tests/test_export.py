"""`python -m gan.export`: every architecture round-trips, the batch stays free, errors are one line.

    pytest tests/test_export.py

Checkpoints are untrained modules saved as the Trainer would (weights and hyperparameters):
the export does not care how good G is, and nothing here trains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from gan.nets import ARCHITECTURES
from gan.tools.export import export, main, parse
from gan.utils.errors import GanError
from tests.helpers import cli_error, save_untrained

pytest.importorskip("onnxruntime", reason='the export extra: pip install -e ".[app]"')


@pytest.fixture
def make_ckpt(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> Callable[..., Path]:
    def _make(*overrides: str) -> Path:
        name = "-".join(o.replace("=", "_") for o in overrides) or "default"
        return save_untrained(make_cfg(*overrides), tmp_path / name / "checkpoints" / "last.ckpt")

    return _make


def run_onnx(path: Path, z: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["images"], {"z": z.numpy()})[0])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_onnx_round_trip_every_architecture(
    arch: str, make_ckpt: Callable[..., Path], tmp_path: Path
) -> None:
    from gan.tools.sample import load_gan

    ckpt = make_ckpt(f"model={arch}")
    out, worst = export(parse([f"ckpt={ckpt}", f"out={tmp_path / 'g.onnx'}"]))
    assert out.is_file() and worst <= 1e-4
    module = load_gan(ckpt)
    for n in (1, 7):  # the dynamic batch: neither is the size the exporter traced with
        z = module.sample_z(n, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            want = module.sampling_generator()(z)
        got = run_onnx(out, z)
        assert (
            got.shape == want.shape == (n, 1, module.cfg.model.img_size, module.cfg.model.img_size)
        )
        assert (got - want).abs().max() <= 1e-4
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed, not left behind


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_torchscript_round_trip(arch: str, make_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    from gan.tools.sample import load_gan

    ckpt = make_ckpt(f"model={arch}", "ema.enabled=true")
    out, worst = export(parse([f"ckpt={ckpt}", "format=torchscript", f"out={tmp_path / 'g.pt'}"]))
    assert worst <= 1e-4
    module = load_gan(ckpt)
    loaded = torch.jit.load(str(out))
    for n in (1, 7):
        z = module.sample_z(n)
        with torch.no_grad():  # the EMA copy is what gets exported when there is one
            assert torch.allclose(loaded(z), module.sampling_generator()(z), atol=1e-4)


def test_conditional_generator_takes_labels(make_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    from gan.tools.sample import load_gan

    ckpt = make_ckpt("model=mlp", "condition=concat")
    out, worst = export(parse([f"ckpt={ckpt}", f"out={tmp_path / 'g.onnx'}"]))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "labels"]
    assert session.get_modelmeta().custom_metadata_map["num_classes"] == "10"
    module = load_gan(ckpt)
    z, labels = module.sample_z(5), torch.tensor([0, 1, 2, 3, 9])
    got = session.run(["images"], {"z": z.numpy(), "labels": labels.numpy()})[0]
    with torch.no_grad():
        want = module.sampling_generator()(z, labels)
    assert worst <= 1e-4 and (torch.from_numpy(got) - want).abs().max() <= 1e-4


def test_cli_prints_the_difference(
    make_ckpt: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_ckpt("model=mlp")
    main([f"ckpt={ckpt.parents[1]}", f"out={tmp_path / 'g.onnx'}"])  # a run folder works too
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {tmp_path / 'g.onnx'}: onnxruntime and PyTorch agree")
    assert "max abs difference" in line

    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map  # what a user needs to draw noise
    assert meta["noise"] == "normal" and meta["output"] == "tanh" and meta["num_classes"] == "0"
    assert [i.name for i in session.get_inputs()] == ["z"]
    assert session.get_inputs()[0].shape[1] == int(meta["noise_dim"])


def error_of(*args: str) -> str:
    return cli_error(main, *args)


def test_bad_inputs_give_one_line_errors(make_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    assert "does not exist" in error_of(f"ckpt={tmp_path / 'nope.ckpt'}")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    assert "is not a checkpoint" in error_of(f"ckpt={text}")
    ckpt = make_ckpt("model=mlp", "ema.enabled=false")
    assert "format='tflite' is unknown" in error_of(f"ckpt={ckpt}", "format=tflite")
    assert "did you mean format=" in error_of(f"ckpt={ckpt}", "fromat=onnx")
    assert "no checkpoint given" in error_of("format=onnx")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "out=" in error_of(f"ckpt={ckpt}", f"out={blocker / 'g.onnx'}")  # a file in the way
    assert "is a folder" in error_of(f"ckpt={ckpt}", f"out={tmp_path}")
    assert "no EMA weights" in error_of(f"ckpt={ckpt}", "ema=true", f"out={tmp_path / 'g.onnx'}")
    assert not (tmp_path / "g.onnx").exists()


def test_failed_check_writes_nothing(
    make_ckpt: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gan.tools.export

    monkeypatch.setattr(gan.tools.export, "TOLERANCE", -1.0)  # no export can pass: a stand-in bug
    with pytest.raises(GanError, match="nothing was written"):
        export(parse([f"ckpt={make_ckpt('model=mlp')}", f"out={tmp_path / 'g.onnx'}"]))
    assert list(tmp_path.iterdir()) == [tmp_path / "model_mlp"]
