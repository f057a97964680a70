"""What `python -m gan.train` prints: no noise by default, and a table of the scores at the end.

pytest tests/test_console.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gan.training.console import summary
from tests.helpers import cli_env, run_cli, tiny

# What a default run used to print that says nothing a user can act on.
NOISE = (
    "💡",  # Lightning's tips
    "LeafSpec",  # a third-party deprecation warning
    "Total FLOPs",  # the layer table, with a FLOPs column of zeros
    "GPU available",
    "smaller than the logging interval",
    "{'fid_floor'",  # the floor as a raw dict
)


def train_cli(tiny_root: Path, run: Path, *extra: str) -> str:
    """`python -m gan.train` on tiny data as a user runs it; stdout and stderr together."""
    args = tiny(
        f"data.root={tiny_root}",
        "model=mlp",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run}",
        *extra,
        drop=["trainer.enable_model_summary", "logger"],  # the default's own choices
    )
    env = cli_env(WANDB_MODE="offline")
    env.pop("WANDB_SILENT", None)  # the tests' own setting: here the project's choice shows
    res = run_cli("gan.train", *args, env=env, merge_output=True)
    assert res.returncode == 0, res.stdout[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def quiet_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("console") / "run"
    return run, train_cli(tiny_root, run)


def test_a_default_run_prints_no_noise(quiet_run: tuple[Path, str]) -> None:
    _, text = quiet_run
    for line in NOISE:
        assert line not in text, f"{line!r} printed:\n{text}"
    assert "real-vs-real floor" in text  # the floor, as one rounded line


def test_the_end_of_run_table_shows_the_scores_of_result_json(
    quiet_run: tuple[Path, str],
) -> None:
    run, text = quiet_run
    final = json.loads((run / "result.json").read_text())["final"]
    table = text[text.index("run ok in") :]
    assert str(run) in table
    assert re.search(rf"val/fid\s+{re.escape(format(final['val/fid'], '.3g'))}\s", table)
    assert f"floor {final['val/fid_floor']:.3g}" in table
    assert f"best {final['best/val/fid']:.3g} at epoch {final['best/epoch']}" in table
    for key in ("precision", "recall"):
        assert f"{key} {final[f'val/{key}']:.3g}" in table
    assert f"python -m gan.sample ckpt={run}" in table and f"python -m gan.app ckpt={run}" in table


def test_wandb_is_quiet_and_the_scores_still_show(tiny_root: Path, tmp_path: Path) -> None:
    text = train_cli(tiny_root, tmp_path / "run", "logger=wandb")
    chatter = [line for line in text.splitlines() if line.startswith("wandb:")]
    assert not chatter, "\n".join(chatter)
    assert "run ok in" in text and "val/fid" in text  # the table, not W&B's summary
    assert "wandb sync" in text  # the one line that says how to upload the offline run


def test_verbose_brings_the_detail_back(tiny_root: Path, tmp_path: Path) -> None:
    text = train_cli(tiny_root, tmp_path / "run", "verbose=true", "metrics.enabled=false")
    assert "GPU available" in text and "Total params" in text  # Lightning's lines, the layers
    assert "no scores" in text


def test_a_negative_kid_floor_is_explained() -> None:
    from torch import tensor

    from gan.training.module import floor_line

    line = floor_line({"fid_floor": tensor(20.26082), "kid_floor": tensor(-0.2991)})
    assert line.startswith("fid 20.3, kid -0.299") and "reads as 0" in line


def test_summary_without_scores() -> None:
    text = summary(Path("run"), "ok", 3.0, {})
    assert "no scores" in text and "gan.sample ckpt=run" in text


def test_summary_names_modes_kl_and_label_accuracy_when_the_run_has_them() -> None:
    base = {"val/fid": 217.0, "val/fid_floor": 156.0, "val/coverage": 1000.0}
    stacked = summary(Path("run"), "ok", 3.0, base | {"val/modes": 1000.0, "val/kl": 0.0857})
    assert "modes 1000   KL 0.086" in stacked and "label accuracy" not in stacked
    conditional = summary(Path("run"), "ok", 3.0, base | {"val/label_accuracy": 0.9871})
    assert "label accuracy 0.987" in conditional and "modes" not in conditional
    assert "KL" not in summary(Path("run"), "ok", 3.0, base)
