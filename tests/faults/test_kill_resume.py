"""SIGKILL and SIGTERM of a real `python -m gan.train`, then a resume: bit-exact with the
uninterrupted run (`run_a`), wherever the signal lands (all slow).

The run pauses at a chosen point (tests/faults/pause_launcher.py) so that the signal lands
exactly there.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import (
    EVERY,
    PER_EPOCH,
    ROOT,
    RUN_ARGS,
    TOTAL,
    assert_every_epoch_validated,
    assert_same_metrics,
    assert_same_training_state,
    cli_env,
    key,
    load_ckpt,
    read_metrics,
    run_cli,
    start_cli,
    train_cli,
    val_fid_epochs,
)


def start_paused(
    data: Path, run: Path, at: int, *extra: str, hook: str = "step"
) -> tuple[subprocess.Popen, Path]:
    """Start a run that pauses at iteration `at`; returns it once it is paused there.

    `hook="step"`: right after that iteration's updates (the launcher); else in that hook
    of the iteration (`PauseIn`). `extra` overrides RUN_ARGS.
    """
    run.mkdir(parents=True)
    flag, out = run.parent / f"{run.name}.paused", run.parent / f"{run.name}.out"
    env = cli_env(
        GAN_TEST_PAUSE_AT=str(at if hook == "step" else -1), GAN_TEST_PAUSE_FLAG=str(flag)
    )
    if hook != "step":
        extra = (
            *extra,
            "+callbacks.pause._target_=tests.faults.pause_launcher.PauseIn",
            f"+callbacks.pause.hook={hook}",
            f"+callbacks.pause.at={at}",
        )
    own = {key(a) for a in extra}
    with out.open("w") as log:
        proc = start_cli(
            "tests.faults.pause_launcher",
            *[a for a in RUN_ARGS if key(a) not in own],
            f"data.root={data}",
            f"hydra.run.dir={run}",
            *extra,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 600
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not reach iteration {at}:\n{out.read_text()[-3000:]}")
        time.sleep(0.05)
    return proc, out


def resume_cli(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m gan.train ckpt_path=<run>` (a run folder) or `python -m gan.train <args>`,
    and nothing else: the run's own config.yaml is the config."""
    argv = [f"ckpt_path={args[0]}"] if len(args) == 1 and isinstance(args[0], Path) else args
    return run_cli("gan.train", *map(str, argv), cwd=cwd)


def kill_and_resume(
    data: Path, run_b: Path, hook: str, at: int, *extra: str, sig: int = signal.SIGKILL
) -> int:
    """Pause run_b at (hook, at), send `sig`, resume it in its folder; the iteration saved.

    SIGKILL: the process dies there. SIGTERM: it must save and exit with 128 + 15.
    """
    proc, out = start_paused(data, run_b, at, *extra, hook=hook)
    proc.send_signal(sig)
    expected = -signal.SIGKILL if sig == signal.SIGKILL else 128 + sig
    assert proc.wait(timeout=120) == expected, out.read_text()[-3000:]
    last = run_b / "checkpoints" / "last.ckpt"
    saved = load_ckpt(last)["gan_iteration"]
    drop = ("+callbacks.pause=null",) if hook != "step" else ()  # the pause is the test's
    res = train_cli(data, run_b, *extra, *drop, f"ckpt_path={run_b}")  # the same run folder
    assert res.returncode == 0, res.stderr[-3000:]
    assert not list((run_b / "checkpoints").glob("last-v*.ckpt")), "one last.ckpt only"
    return saved


@pytest.mark.slow
@pytest.mark.parametrize(
    "pause_at", [41, 32], ids=["mid-epoch", "from-the-save-that-ended-an-epoch"]
)
def test_sigkill_then_resume_matches_the_uninterrupted_run(
    run_a: Path, kill_data: Path, tmp_path: Path, pause_at: int
) -> None:
    run_b = tmp_path / "b"
    proc, out = start_paused(kill_data, run_b, pause_at)
    last = run_b / "checkpoints" / "last.ckpt"
    saved = load_ckpt(last)["gan_iteration"]
    assert saved == pause_at - pause_at % EVERY < pause_at  # killed between two saves
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    res = train_cli(kill_data, run_b, f"ckpt_path={last}")  # the same run folder
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(run_a / "checkpoints" / "last.ckpt", last)
    assert_same_metrics(run_a, run_b)
    assert not list((run_b / "checkpoints").glob("last-v*.ckpt")), "one last.ckpt only"


@pytest.mark.slow
def test_sigterm_saves_at_the_next_iteration_and_exits_143(
    run_a: Path, kill_data: Path, tmp_path: Path
) -> None:
    run_b = tmp_path / "b"
    at = 44  # the periodic save before it is at 42
    proc, out = start_paused(kill_data, run_b, at)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    text = out.read_text()
    assert "Traceback" not in text, text[-3000:]
    last = run_b / "checkpoints" / "last.ckpt"
    assert f"resume with: python -m gan.train ckpt_path={run_b}" in text
    assert load_ckpt(last)["gan_iteration"] == at  # saved at the iteration boundary, not at 42
    assert not list(last.parent.glob(".last.ckpt*.tmp"))

    res = train_cli(kill_data, run_b, f"ckpt_path={last}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(run_a / "checkpoints" / "last.ckpt", last)


@pytest.mark.slow
def test_kill_then_resume_from_the_folder_alone(
    run_a: Path, kill_data: Path, tmp_path: Path
) -> None:
    """SIGKILL mid-epoch; `ckpt_path=<run>` with no other override, from another folder:
    the weights and metrics.csv equal the uninterrupted run's, and nothing lands in cwd."""
    run_b = tmp_path / "b"
    proc, _ = start_paused(kill_data, run_b, 41)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = resume_cli(run_b, cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(
        run_a / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    )
    assert_same_metrics(run_a, run_b)
    assert list(elsewhere.iterdir()) == [], "the resume wrote into the current folder"
    assert (run_b / ".hydra" / "overrides.yaml").is_file()  # the run's own record is kept
    assert json.loads((run_b / "result.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_the_printed_hint_resumes_verbatim(run_a: Path, kill_data: Path, tmp_path: Path) -> None:
    run_b = tmp_path / "b"
    proc, out = start_paused(kill_data, run_b, 44)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    text = out.read_text()
    hint = text[text.index("resume with: ") + len("resume with: ") :].splitlines()[0]
    result = json.loads((run_b / "result.json").read_text())
    assert result["status"] == "interrupted" and hint in result["error"]
    args = shlex.split(hint)
    assert args[:3] == ["python", "-m", "gan.train"]
    res = resume_cli(*args[3:])
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(
        run_a / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    )
    assert_same_metrics(run_a, run_b)


# Where a kill can leave the last checkpoint: (hook, iteration, the iteration saved). At
# iteration 30, an epoch's last, the periodic save waits for the epoch's end (after
# validation): a kill before then resumes from iteration 27.
POSITIONS = {
    "mid-epoch-periodic-save": ("step", 41, 39),
    "epoch-last-batch-killed-in-validation": ("on_validation_start", 30, 27),
    "epoch-end-save-after-validation": ("on_train_epoch_end", 30, 30),
    "the-runs-last-iteration": ("step", TOTAL, TOTAL - EVERY),
    "the-runs-last-validation": ("on_validation_start", TOTAL, TOTAL - EVERY),
}


@pytest.mark.slow
@pytest.mark.parametrize("position", list(POSITIONS))
def test_sigkill_at_every_kind_of_save_position_resumes_bit_exact(
    run_a: Path, kill_data: Path, tmp_path: Path, position: str
) -> None:
    hook, at, expected = POSITIONS[position]
    run_b = tmp_path / "b"
    saved = kill_and_resume(kill_data, run_b, hook, at)
    assert_same_training_state(
        run_a / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    )
    assert saved == expected
    assert_every_epoch_validated(run_b, 3, resumed_from=saved)
    assert_same_metrics(run_a, run_b)


@pytest.mark.slow
@pytest.mark.parametrize(
    "position", ["epoch-last-batch-killed-in-validation", "epoch-end-save-after-validation"]
)
def test_sigkill_with_metrics_off_resumes_bit_exact(
    run_a_no_metrics: Path, kill_data: Path, tmp_path: Path, position: str
) -> None:
    hook, at, expected = POSITIONS[position]
    run_b = tmp_path / "b"
    saved = kill_and_resume(kill_data, run_b, hook, at, "metrics.enabled=false")
    a, b = run_a_no_metrics / "checkpoints" / "last.ckpt", run_b / "checkpoints" / "last.ckpt"
    assert_same_training_state(a, b)
    assert saved == expected
    assert_every_epoch_validated(run_b, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hook", "at"),
    [("step", 30), ("on_validation_start", 60)],
    ids=["in-an-epochs-last-iteration", "during-validation"],
)
def test_sigterm_at_an_epochs_end_saves_after_validation(
    run_a: Path, kill_data: Path, tmp_path: Path, hook: str, at: int
) -> None:
    """The save waits for the epoch's validation; the exit follows it: exit 143."""
    run_b = tmp_path / "b"
    proc, out = start_paused(kill_data, run_b, at, hook=hook)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, out.read_text()[-3000:]
    text = out.read_text()
    assert "Traceback" not in text, text[-3000:]
    last = run_b / "checkpoints" / "last.ckpt"
    assert f"resume with: python -m gan.train ckpt_path={run_b}" in text
    saved = load_ckpt(last)["gan_iteration"]
    epoch = at // PER_EPOCH - 1
    fid = [float(r["val/fid"]) for r in read_metrics(run_b) if r.get("val/fid")]
    assert val_fid_epochs(run_b)[-1] == epoch, "the epoch was validated before the exit"
    states = load_ckpt(last)["callbacks"]
    mc = next(v for k, v in states.items() if k.startswith("ModelCheckpoint"))
    assert float(mc["current_score"]) == pytest.approx(fid[-1]), "the best-checkpoint check ran"

    drop = ("+callbacks.pause=null",) if hook != "step" else ()  # the pause is the test's
    res = train_cli(kill_data, run_b, *drop, f"ckpt_path={last}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_training_state(run_a / "checkpoints" / "last.ckpt", last)
    assert saved == at  # at the epoch's end, not at the next iteration boundary
    assert_every_epoch_validated(run_b, 3, resumed_from=saved)


KILL_SEED = int(os.environ.get("GAN_TEST_KILL_SEED", "20251202"))


def random_kill_positions(seed: int, trials: int) -> list[tuple[str, int]]:
    """`trials` pause points, one drawn at random from each stretch of the run, in order.

    Every point where the run can be: after any iteration's updates, and at each epoch's
    end before and after validation.
    """
    points: list[tuple[str, int]] = []
    for i in range(1, TOTAL + 1):
        points.append(("step", i))
        if i % PER_EPOCH == 0:
            points += [("on_validation_start", i), ("on_train_epoch_end", i)]
    rng = random.Random(seed)
    size = len(points) / trials
    return [points[int(k * size) + rng.randrange(int(size))] for k in range(trials)]


@pytest.mark.slow
def test_random_sigkills_all_resume_bit_exact(run_a: Path, kill_data: Path, tmp_path: Path) -> None:
    """5 SIGKILLs at random points (GAN_TEST_KILL_SEED picks others), two at a time."""
    positions = random_kill_positions(KILL_SEED, 5)

    def trial(k: int, hook: str, at: int) -> tuple[str, int, int]:
        run_b = tmp_path / f"b{k}"
        saved = kill_and_resume(kill_data, run_b, hook, at)
        return hook, at, saved

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(trial, k, hook, at) for k, (hook, at) in enumerate(positions)]
        results = [f.result() for f in futures]
    a = run_a / "checkpoints" / "last.ckpt"
    for k, (hook, at, saved) in enumerate(results):
        where = f"GAN_TEST_KILL_SEED={KILL_SEED}: killed in {hook} at {at}, saved at {saved}"
        try:
            assert_same_training_state(a, tmp_path / f"b{k}" / "checkpoints" / "last.ckpt")
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from None
        assert_every_epoch_validated(tmp_path / f"b{k}", 3)
