"""Resume from the folder alone: `python -m gan.train ckpt_path=<run>` and nothing else.

    pytest tests/test_resume.py -m "slow or not slow"

Each runs `python -m gan.train` as a user does. The kill-and-resume tests, which need the
uninterrupted reference run, are in tests/faults/test_kill_resume.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, load_ckpt, run_cli, snapshot, train_existing_run


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m gan.train args...` from `cwd`, as a user runs it."""
    return run_cli("gan.train", *args, cwd=cwd)


@pytest.fixture
def finished(tiny_root: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    train_existing_run(tiny_root, run)
    return run


def test_overrides_that_change_the_run_are_refused_and_touch_nothing(
    finished: Path, tmp_path: Path
) -> None:
    before = snapshot(finished)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = cli(f"ckpt_path={finished}", "model=dcgan", "optimizer.lr=0.5", cwd=elsewhere)
    assert res.returncode == 1
    error = res.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "model=" in error and "optimizer.lr=0.5" in error
    assert "the run has 0.001" in error or "the run has" in error
    assert snapshot(finished) == before, "a refused resume changed the run folder"
    assert list(elsewhere.iterdir()) == []


def test_a_broken_checkpoint_leaves_the_folder_byte_identical(finished: Path) -> None:
    last = finished / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    before = snapshot(finished)
    res = cli(f"ckpt_path={finished}")
    assert res.returncode == 1 and "truncated or corrupt" in res.stderr
    assert snapshot(finished) == before


def test_harmless_overrides_continue_the_run(finished: Path) -> None:
    """A longer run and a different logger may change; the same value of another key too."""
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2", "logger=none", "model=mlp")
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_ckpt(finished / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert list((finished / ".hydra").glob("resume-*/overrides.yaml"))  # this command's record


def test_a_config_that_names_foreign_code_needs_trust_code(finished: Path, tmp_path: Path) -> None:
    config = finished / "config.yaml"
    marker = tmp_path / "code-ran.txt"
    text = config.read_text().replace(
        "_target_: gan.training.callbacks.LossPlot",
        f"_target_: pathlib.Path.write_text\n    self: {marker}\n    data: x",
    )
    config.write_text(text)
    before = snapshot(finished)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2")
    assert res.returncode == 1 and "trust_code=true" in res.stderr
    assert not marker.exists() and snapshot(finished) == before


def test_a_saved_config_cannot_grant_itself_trust(finished: Path, tmp_path: Path) -> None:
    config = finished / "config.yaml"
    text = config.read_text().replace("trust_code: false", "trust_code: true")
    text = text.replace(
        "_target_: gan.training.callbacks.LossPlot",
        f"_target_: pathlib.Path.write_text\n    self: {tmp_path / 'code-ran.txt'}\n    data: x",
    )
    config.write_text(text)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2")
    assert res.returncode == 1 and "trust_code=true" in res.stderr
    assert not (tmp_path / "code-ran.txt").exists()


def test_an_interpolation_in_config_yaml_runs_no_code(finished: Path, tmp_path: Path) -> None:
    """oc.decode would turn a string into a node with any _target_ once Hydra resolves it."""
    marker = tmp_path / "code-ran.txt"
    node = f"{{_target_: pathlib.Path.write_text, self: {marker}, data: x}}"
    config = finished / "config.yaml"
    text = config.read_text().replace(
        "callbacks:\n", f"callbacks:\n  zz: '${{oc.decode:\"{node}\"}}'\n", 1
    )
    config.write_text(text)
    before = snapshot(finished)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2")
    assert res.returncode == 1 and "is an interpolation" in res.stderr, res.stderr[-2000:]
    assert not marker.exists() and snapshot(finished) == before


@pytest.mark.parametrize(
    "keys", [("callbacks", "model_checkpoint", "filename"), ("logger", "csv", "name")]
)
def test_a_saved_name_cannot_send_writes_outside_the_run(
    finished: Path, tmp_path: Path, keys: tuple[str, str, str]
) -> None:
    """A file or logger name is joined to its folder: an absolute one would replace it."""
    import yaml

    victim = tmp_path / "victim"
    config = finished / "config.yaml"
    saved = yaml.safe_load(config.read_text())
    group, name, key = keys
    saved[group][name][key] = str(victim)
    config.write_text(yaml.safe_dump(saved))
    before = snapshot(finished)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2")
    assert res.returncode == 1 and "outside its run folder" in res.stderr, res.stderr[-2000:]
    assert f"{'.'.join(keys)}={victim}" in res.stderr
    assert not list(tmp_path.glob("victim*")) and snapshot(finished) == before


def test_a_logger_override_writes_into_the_run(finished: Path, tmp_path: Path) -> None:
    """`${paths.output_dir}` in an override is the run folder; a path elsewhere is refused."""
    res = cli(f"ckpt_path={finished}", f"logger.csv.name={tmp_path}/away", "trainer.max_epochs=2")
    assert res.returncode == 1 and f"logger.csv.name={tmp_path}/away" in res.stderr
    assert not (tmp_path / "away").exists()
    res = cli(
        f"ckpt_path={finished}",
        "logger.csv.save_dir=${paths.output_dir}/logs",
        "trainer.max_epochs=2",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Callback CheckOutputDir" not in res.stderr  # Hydra's warning of a failed check
    assert list((finished / "logs").rglob("metrics.csv"))


def test_a_checkpoint_cannot_make_a_resume_delete_files(finished: Path, tmp_path: Path) -> None:
    """ModelCheckpoint's restored paths are deleted when replaced: `..` must not escape."""
    import torch

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    last = finished / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    for key, state in ckpt["callbacks"].items():
        if key.startswith("ModelCheckpoint"):
            escape = f"{state['dirpath']}/../../{victim.name}"
            state["best_k_models"] = {escape: torch.tensor(1e9)}
            state["kth_best_model_path"] = state["best_model_path"] = escape
    torch.save(ckpt, last)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=3")
    assert res.returncode == 1 and "not in that callback's folder" in res.stderr
    assert victim.read_text() == "keep me"


def test_a_copied_run_resumes_into_itself(finished: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    before = snapshot(finished)
    res = cli(f"ckpt_path={copy}", "trainer.max_epochs=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert snapshot(finished) == before, "the resume of the copy wrote into the original"
    assert load_ckpt(copy / "checkpoints" / "last.ckpt")["epoch"] == 1


def test_a_link_in_the_run_folder_is_refused(finished: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.csv"
    victim.write_text("a,b\n1,2\n3,4\n")
    metrics = finished / "csv" / "metrics.csv"
    metrics.unlink(missing_ok=True)
    metrics.parent.mkdir(exist_ok=True)
    metrics.symlink_to(victim)
    res = cli(f"ckpt_path={finished}", "trainer.max_epochs=2")
    assert res.returncode == 1 and "symbolic link" in res.stderr
    assert victim.read_text() == "a,b\n1,2\n3,4\n"


def test_a_recipe_or_a_longer_decay_on_a_resume_is_refused(finished: Path) -> None:
    res = cli(f"ckpt_path={finished}", "experiment=fast_mnist")
    assert res.returncode == 1 and "experiment (not a setting of the run" in res.stderr


def test_nothing_left_to_train_keeps_the_result(finished: Path) -> None:
    result = '{"status": "ok", "value": 1.5}\n'
    (finished / "result.json").write_text(result)
    res = cli(f"ckpt_path={finished}")  # it already reached its max_epochs
    assert res.returncode == 0 and "nothing to train" in res.stdout
    assert (finished / "result.json").read_text() == result


@pytest.mark.parametrize("name", ["a,b", "p=q", "it's", "with space", "d$x"])
def test_the_hint_survives_any_folder_name(name: str, tmp_path: Path) -> None:
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gan.training.resume import resume_command

    run = tmp_path / name
    args = shlex.split(resume_command(run))
    assert args[:3] == ["python", "-m", "gan.train"]
    override = OverridesParser.create().parse_override(args[3])
    assert override.key_or_group == "ckpt_path" and override.value() == str(run)
