"""A kill during a checkpoint save: the last checkpoint stays whole, the half-written temp
file goes, and a temp file left by a real SIGKILL is ignored, then removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import gan.tools.sample
from gan.training.checkpoints import check_resume_checkpoint
from gan.training.config import to_dict
from gan.training.faults import AtomicCheckpointIO
from tests.helpers import Existing, compose_cfg, load_ckpt, snapshot


class KilledMidSave(BaseException):
    """Stands for the process dying: not an Exception, so nothing may swallow it."""


def test_a_save_cut_short_leaves_last_ckpt_intact(
    existing_run: Existing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes((existing_run.path / "checkpoints" / "last.ckpt").read_bytes())
    before = snapshot(last.parent)
    checkpoint = load_ckpt(last)
    checkpoint["gan_iteration"] += 100  # what the interrupted save would have written
    real_save = torch.save

    def half_then_die(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, tmp_path / "whole")
        data = (tmp_path / "whole").read_bytes()
        f.write(data[: len(data) // 2])
        f.flush()
        raise KilledMidSave

    monkeypatch.setattr(torch, "save", half_then_die)
    with pytest.raises(KilledMidSave):
        AtomicCheckpointIO().save_checkpoint(checkpoint, last)
    monkeypatch.undo()

    # The old checkpoint is untouched and loadable; the half-written temp file is removed.
    assert snapshot(last.parent) == before
    assert not list(last.parent.glob(".last.ckpt*.tmp"))
    mlp = to_dict(compose_cfg("model=mlp", out=tmp_path).model)
    check_resume_checkpoint(last, mlp, ema=False)
    assert gan.tools.sample.load_gan(last).iteration == checkpoint["gan_iteration"] - 100

    # A real SIGKILL cannot clean up: its temp file is ignored, then removed by the next save
    # (the random name of this version, and the fixed one of older versions).
    for left in (".last.ckpt.k1ll3d00.tmp", ".last.ckpt.tmp"):
        (last.parent / left).write_bytes(b"half a checkpoint")
    assert gan.tools.sample.load_gan(last).iteration == checkpoint["gan_iteration"] - 100
    AtomicCheckpointIO().save_checkpoint(checkpoint, last)
    assert not list(last.parent.glob(".last.ckpt*.tmp"))
    assert load_ckpt(last)["gan_iteration"] == checkpoint["gan_iteration"]
