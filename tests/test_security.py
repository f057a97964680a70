"""Files are data: crafted checkpoints, run folders, shared folders and caches run no code.

    pytest tests/test_security.py

Each crafted file holds only what `torch.load(weights_only=True)` accepts (dicts, strings,
bytes), or a pickled object beside them, and would make the loader write a marker file if
anything in it ran. Every loader (sample, export, the app's, resume, the NaN rollback and
the classifier cache) must refuse it with one line, and the marker must never appear.
The symlinks planted at temporary names are in tests/test_security_writes.py.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, open_dict

import gan.nets.mlp
from gan.metrics.classifier import _load_cached
from gan.tools.app import main as app_main
from gan.tools.export import main as export_main
from gan.tools.sample import main as sample_main
from gan.training.checkpoints import load_gan
from gan.training.health import NanGuard
from gan.training.module import GAN
from gan.training.run import train
from gan.utils.errors import GanError
from tests.helpers import cli_error, save_untrained


class Payload:
    """Pickled, it writes `marker` when unpickled: what a malicious file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "code ran"))


class OwnGenerator(gan.nets.mlp.Generator):
    """A network of one's own, outside gan.nets' registry (trained with trust_code=true)."""


def crafted(base: Path, marker: Path, kind: str) -> dict[str, Any]:
    """A checkpoint dict from `base`, changed so that loading it naively would run code."""
    ckpt = torch.load(base, weights_only=True)
    hp = ckpt["hyper_parameters"]
    write_marker = {  # Hydra builds nested nodes first: Path(marker).write_text("...")
        "_target_": "pathlib.Path.write_text",
        "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]},
        "data": "code ran",
    }
    unpickle = {  # torch.load(BytesIO(<pickle>), weights_only=False): any code at all
        "_target_": "torch.load",
        "weights_only": False,
        "f": {"_target_": "io.BytesIO", "_args_": [pickle.dumps(Payload(marker))]},
    }
    if kind == "names-a-callable":
        hp["model"]["generator"] = write_marker
    elif kind == "unpickles-its-bytes":
        hp["model"]["generator"] = unpickle
    elif kind == "nested-in-an-argument":
        hp["model"]["generator"]["hidden"] = write_marker
    elif kind == "says-trust-code":  # the file cannot grant itself trust
        hp["trust_code"] = True
        hp["model"]["generator"] = write_marker
    elif kind == "pickle-beside-the-weights":
        ckpt["callbacks"] = {"x": Payload(marker)}
    else:
        raise ValueError(kind)
    return ckpt


KINDS = [
    "names-a-callable",
    "unpickles-its-bytes",
    "nested-in-an-argument",
    "says-trust-code",
    "pickle-beside-the-weights",
]


@pytest.fixture
def base(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> Path:
    return save_untrained(make_cfg("model=mlp", "ema.enabled=false"), tmp_path / "good.ckpt")


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "code-ran.txt"
    yield path
    assert not path.exists(), "a crafted file ran code"


def plant(ckpt: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def assert_one_line(err: BaseException | str) -> str:
    text = str(err)
    assert "\n" not in text and text
    return text


# ---- the command-line loaders ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sample_export_and_app_refuse_crafted_checkpoints(
    base: Path, marker: Path, tmp_path: Path, kind: str
) -> None:
    evil = plant(crafted(base, marker, kind), tmp_path / "evil" / "checkpoints" / "last.ckpt")
    run = evil.parent.parent
    for ckpt in (evil, run):  # the file, and the run folder that holds it
        msgs = [
            cli_error(sample_main, f"ckpt={ckpt}", f"out={tmp_path / 'out.png'}"),
            cli_error(export_main, f"ckpt={ckpt}", f"out={tmp_path / 'g.onnx'}"),
            cli_error(
                export_main, f"ckpt={ckpt}", "format=safetensors", f"out={tmp_path / 'shared'}"
            ),
            cli_error(app_main, f"ckpt={ckpt}"),  # fails while loading: nothing is served
        ]
        for msg in msgs:
            if kind == "pickle-beside-the-weights":
                assert "holds Python objects" in msg
            elif kind == "says-trust-code":
                assert "trust_code" in msg and "not config groups" in msg
            else:
                assert "not one of this project's networks" in msg or "is invalid" in msg
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "shared").exists()


def test_a_refused_custom_network_names_trust_code(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    own = "model.generator._target_=tests.test_security.OwnGenerator"
    path = save_untrained(make_cfg("model=mlp", own, "trust_code=true"), tmp_path / "own.ckpt")
    msg = cli_error(sample_main, f"ckpt={path}", f"out={tmp_path / 'x.png'}")
    assert "tests.test_security.OwnGenerator" in msg and "trust_code=true" in msg
    assert not (tmp_path / "x.png").exists()
    # The user who trained it says so: it loads, and draws.
    sample_main([f"ckpt={path}", f"out={tmp_path / 'x.png'}", "trust_code=true", "n=4"])
    assert (tmp_path / "x.png").is_file()
    assert isinstance(load_gan(path, trust_code=True).generator, OwnGenerator)


def test_training_a_custom_network_needs_trust_code(
    make_cfg: Callable[..., DictConfig],
) -> None:
    own = "model.generator._target_=tests.test_security.OwnGenerator"
    with pytest.raises(GanError) as err:
        train(make_cfg("model=mlp", own, "trainer.max_steps=1"))
    assert "trust_code=true" in assert_one_line(err.value)
    assert not Path(make_cfg().paths.output_dir).exists(), "refused before any folder is made"


def test_interpolations_in_a_saved_config_are_refused(base: Path, tmp_path: Path) -> None:
    ckpt = torch.load(base, weights_only=True)
    ckpt["hyper_parameters"]["noise"]["dist"] = "${oc.env:HOME}"  # would read the environment
    msg = cli_error(sample_main, f"ckpt={plant(ckpt, tmp_path / 'x.ckpt')}")
    assert "interpolation" in msg


# ---- resume and the NaN rollback ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_resume_refuses_a_run_folder_whose_last_ckpt_is_crafted(
    make_cfg: Callable[..., DictConfig], base: Path, marker: Path, tmp_path: Path, kind: str
) -> None:
    evil = plant(crafted(base, marker, kind), tmp_path / "evil" / "checkpoints" / "last.ckpt")
    for ckpt_path in (evil.parent.parent, evil):
        cfg = make_cfg("model=mlp", "ema.enabled=false", f"ckpt_path={ckpt_path}")
        with pytest.raises(GanError) as err:
            train(cfg)
        assert_one_line(err.value)


def test_rollback_reads_last_ckpt_as_data(base: Path, marker: Path, tmp_path: Path) -> None:
    evil = plant(crafted(base, marker, "pickle-beside-the-weights"), tmp_path / "last.ckpt")
    module = GAN(**torch.load(base, weights_only=True)["hyper_parameters"])
    with pytest.raises(GanError) as err:
        NanGuard(on_nonfinite="rollback")._rollback(None, module, str(evil), "at iteration 3")  # type: ignore[arg-type]
    assert "Cannot roll back" in assert_one_line(err.value)


def test_lightning_resume_is_weights_only(
    make_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trainer.fit` is asked to read the checkpoint weights-only, whatever torch's default."""
    import lightning as L

    seen: dict[str, Any] = {}

    def fit(self: L.Trainer, *args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(L.Trainer, "fit", fit)
    train(make_cfg("model=mlp", "metrics.enabled=false"))
    assert seen["weights_only"] is True


# ---- the classifier cache -------------------------------------------------------------


def test_a_crafted_classifier_cache_is_not_unpickled(marker: Path, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "classifier.pt"
    path.parent.mkdir()
    torch.save({"state_dict": {}, "feature_dim": 8, "x": Payload(marker)}, path)
    assert _load_cached(path, "test") is None  # unreadable: trained anew, as for a corrupt file


# ---- the shared generator folder ------------------------------------------------------


def shared_folder(ckpt: Path, out: Path) -> Path:
    export_main([f"ckpt={ckpt}", "format=safetensors", f"out={out}"])
    return out


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=mlp", "ema.enabled=false"),
        ("model=dcgan", "model.generator.base_channels=8", "ema.enabled=true"),
        ("model=mlp", "condition=concat", "ema.enabled=true"),
    ],
    ids=["mlp", "dcgan-ema", "conditional-ema"],
)
def test_safetensors_round_trip_draws_bit_identical_images(
    make_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: tuple[str, ...],
) -> None:
    ckpt = save_untrained(make_cfg(*overrides), tmp_path / "run.ckpt")
    folder = shared_folder(ckpt, tmp_path / "shared")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert json.loads((folder / "config.json").read_text())["format"] == "gan-generator"

    def no_unpickling(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the shared folder was unpickled")

    for ema in ("ema=true", "ema=false") if "ema.enabled=true" in overrides else ("ema=false",):
        args = ["format=pt", "n=16", "seed=3", ema]
        sample_main([f"ckpt={ckpt}", f"out={tmp_path / 'a.pt'}", *args])
        with monkeypatch.context() as m:  # the folder is read without any unpickling
            for owner, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
                m.setattr(owner, name, no_unpickling)
            sample_main([f"ckpt={folder}", f"out={tmp_path / 'b.pt'}", *args])
        a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("a.pt", "b.pt"))
        assert torch.equal(a, b), ema
        for f in ("a.pt", "b.pt"):
            (tmp_path / f).unlink()


def test_a_crafted_shared_folder_runs_no_code(base: Path, marker: Path, tmp_path: Path) -> None:
    folder = shared_folder(base, tmp_path / "shared")
    config = json.loads((folder / "config.json").read_text())
    good = (folder / "config.json").read_text()

    config["hyper_parameters"]["model"]["generator"] = {
        "_target_": "pathlib.Path.write_text",
        "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]},
        "data": "code ran",
    }
    (folder / "config.json").write_text(json.dumps(config))
    for main in (sample_main, export_main, app_main):
        assert "not one of this project's networks" in cli_error(main, f"ckpt={folder}")

    (folder / "config.json").write_text(good)
    buf = io.BytesIO()
    torch.save({"generator.net.0.weight": Payload(marker)}, buf)  # a pickle named .safetensors
    (folder / "model.safetensors").write_bytes(buf.getvalue())
    assert "not a readable safetensors file" in cli_error(sample_main, f"ckpt={folder}")

    (folder / "config.json").write_text("{not json")
    assert "not readable JSON" in cli_error(sample_main, f"ckpt={folder}")


def test_checkpoints_of_earlier_versions_still_load(base: Path, tmp_path: Path) -> None:
    """A checkpoint written before a config group existed (no `stabilize`, no `perf`)."""
    ckpt = torch.load(base, weights_only=True)
    for group in ("stabilize", "perf", "condition"):
        ckpt["hyper_parameters"].pop(group)
    module = load_gan(plant(ckpt, tmp_path / "old.ckpt"))
    assert module(module.sample_z(2)).shape == (2, 1, 28, 28)


def test_an_export_folder_is_not_overwritten(base: Path, tmp_path: Path) -> None:
    folder = shared_folder(base, tmp_path / "shared")
    before = (folder / "model.safetensors").read_bytes()
    assert "already holds" in cli_error(
        export_main, f"ckpt={base}", "format=safetensors", f"out={folder}"
    )
    assert (folder / "model.safetensors").read_bytes() == before


def test_lightning_style_loading_is_refused(base: Path, marker: Path, tmp_path: Path) -> None:
    """Lightning's load_from_checkpoint would hand a file's `trust_code` to GAN(...)."""
    evil = plant(crafted(base, marker, "says-trust-code"), tmp_path / "evil.ckpt")
    with pytest.raises(GanError) as err:
        GAN.load_from_checkpoint(evil)
    assert "load_gan" in assert_one_line(err.value)
    assert load_gan(base).iteration == 0


def test_trust_code_is_never_saved(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg("model=mlp")
    with open_dict(cfg):
        cfg.trust_code = True
    assert "trust_code" not in GAN.from_config(cfg).hparams  # never saved, so never read back
