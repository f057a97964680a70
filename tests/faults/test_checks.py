"""The checks behind the bad-input messages, called directly: a resume checkpoint that does
not fit the run, and an output folder that cannot be written."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from gan.training.checkpoints import check_resume_checkpoint
from gan.training.config import to_dict
from gan.training.faults import CheckOutputDir
from gan.utils.errors import GanError
from gan.utils.files import check_writable
from tests.helpers import compose_cfg


def test_check_resume_checkpoint_names_the_problem(
    inputs: dict[str, Path], tmp_path: Path, tiny_root: Path
) -> None:
    mlp = to_dict(compose_cfg(f"data.root={tiny_root}", "model=mlp", out=tmp_path).model)
    dcgan = to_dict(compose_cfg(f"data.root={tiny_root}", "model=dcgan", out=tmp_path).model)
    check_resume_checkpoint(inputs["ckpt"], mlp, ema=False)  # the right one passes
    check_resume_checkpoint(inputs["ckpt"].parent.parent, mlp, ema=False)  # or its run folder
    check_resume_checkpoint("last", dcgan)  # Lightning's names are Lightning's business
    expect = {
        ("ckpt", "dcgan"): "was written by a model=mlp run, but this run has model=dcgan",
        ("text", "mlp"): "is not a checkpoint: it is not a file written by torch.save",
        ("missing", "mlp"): "does not exist",
        ("torn", "mlp"): "is not a readable checkpoint",
        ("foreign", "mlp"): "a Lightning checkpoint of another module",
        ("empty", "mlp"): "is a folder without checkpoints/last.ckpt, not a checkpoint",
    }
    for (name, model), text in expect.items():
        with pytest.raises(GanError) as err:
            check_resume_checkpoint(inputs[name], dcgan if model == "dcgan" else mlp)
        assert text in str(err.value), str(err.value)
        assert f"ckpt_path={inputs[name]}" in str(err.value)
    wide = {**mlp, "generator": {**mlp["generator"], "hidden": 256}}
    with pytest.raises(
        GanError,
        match=r"model\.generator\.hidden=128, but this run has model\.generator\.hidden=256",
    ):
        check_resume_checkpoint(inputs["ckpt"], wide)
    with pytest.raises(GanError, match="holds no EMA weights .* Resume with ema.enabled=false"):
        check_resume_checkpoint(inputs["ckpt"], mlp, ema=True)
    # a stabiliser that reshapes D: packing widens its first layer; spectral norm renames weights
    stabilize = to_dict(compose_cfg(f"data.root={tiny_root}", out=tmp_path).stabilize)
    check_resume_checkpoint(inputs["ckpt"], mlp, stabilize=stabilize)
    with pytest.raises(
        GanError, match=r"stabilize\.pack=1, but this run has stabilize\.pack=2: the networks"
    ):
        check_resume_checkpoint(inputs["ckpt"], mlp, stabilize={**stabilize, "pack": 2})


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "run")  # can be created: fine, and nothing is made
    assert not (tmp_path / "new").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(
        GanError, match="afile is a file, not a folder. Pick another folder: hydra.run.dir="
    ):
        check_writable(tmp_path / "afile" / "run")
    with pytest.raises(GanError, match="hydra.sweep.dir="):
        check_writable(tmp_path / "afile" / "run", key="hydra.sweep.dir")
    if Path("/proc/self").is_dir():  # a place where no folder can be made, whoever you are
        with pytest.raises(GanError, match="/proc does not accept new folders .*hydra.run.dir="):
            check_writable("/proc/forbidden/run")
    with pytest.raises(SystemExit, match="^error: cannot create the output folder"):
        CheckOutputDir().on_run_start(
            DictConfig({"hydra": {"run": {"dir": str(tmp_path / "afile" / "run")}}})
        )
