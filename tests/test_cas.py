"""`python -m gan.cas`: the Classification Accuracy Score, its command line and its column in
`gan.report`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan.metrics.classifier import fit_classifier, training_data
from gan.tools.cas import balanced_labels, main
from gan.tools.report import higher_is_better
from gan.tools.report import main as report_main
from tests.helpers import (
    SHARED_MNIST,
    TINY,
    cli_error,
    compose_cfg,
    needs_mnist,
    real_classifier,
    run_cli,
    save_untrained,
)

# CAS on real digits against the cached classifier's accuracy (MNIST test split: 8,000
# training, 2,000 held-out digits; the default recipe). Measured with fit_classifier on one
# CPU thread: seeds 0, 1, 2 scored 0.9835, 0.9880, 0.9850 (mean 0.9855, std 0.0023); the
# cached classifier (seed 0) 0.9835, the same as seed 0 here. The binomial standard error of
# an accuracy of 0.985 on 2,000 digits is 0.0027. 0.01 is about four of either.
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> dict[str, Path]:
    """Untrained tiny mlp checkpoints in run folders: conditional (projection) and not."""
    base = tmp_path_factory.mktemp("cas")
    found = {}
    for name, condition in (("cond", "projection"), ("plain", "none")):
        run = base / name
        cfg = compose_cfg(
            *TINY, f"data.root={tiny_root}", "model=mlp", f"condition={condition}", out=run
        )
        found[name] = save_untrained(cfg, run / "checkpoints" / "last.ckpt")
    return found


def test_balanced_labels_are_balanced_and_seeded() -> None:
    labels = balanced_labels(25, 10, seed=0)  # (25,)
    assert torch.bincount(labels, minlength=10).tolist() == [3] * 5 + [2] * 5
    assert torch.equal(labels, balanced_labels(25, 10, seed=0))
    assert not torch.equal(labels, balanced_labels(25, 10, seed=1))


@pytest.mark.slow  # two trainings on 8,000 digits: ~1 min on a free CPU core
@needs_mnist
def test_cas_on_real_digits_is_the_real_classifiers_accuracy(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """CAS's training function, given the real training digits, scores what the cached
    classifier scored: the two are the same recipe (another seed: equal within noise)."""
    real = real_classifier(tmp_path_factory)  # the default recipe, on the test split's 8,000
    assert real.info is not None
    assert (real.info.max_epochs, real.info.batch_size, real.info.lr) == (5, 128, 2e-3)
    train, held_out, _, _ = training_data(str(SHARED_MNIST), "test", download=False)
    _, accuracy = fit_classifier(train, held_out, 10, seed=1, progress_bar=False)
    assert abs(accuracy - real.info.accuracy) < TOLERANCE, (accuracy, real.info.accuracy)


def test_the_command_line_writes_cas_json(
    ckpts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # its own cache: the session's may hold a real classifier another test trained for 1 epoch
    monkeypatch.setenv("GAN_CACHE", str(tmp_path / "cache"))
    run = ckpts["cond"].parents[1]
    proc = run_cli("gan.cas", f"ckpt={run}", "n=50", "epochs=1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((run / "cas.json").read_text())
    for key in ("cas", "cas_real", "per_class", "per_class_real", "n", "epochs", "seed", "ema"):
        assert key in scores, key
    assert scores["n"] == 50 and scores["epochs"] == 1 and scores["seed"] == 0
    assert scores["ema"] is True  # the default config keeps EMA weights: drawn by default
    assert 0 <= scores["cas"] <= 1 and 0 <= scores["cas_real"] <= 1
    assert len(scores["per_class"]) == len(scores["per_class_real"]) == 10
    assert scores["real_classifier"]["max_epochs"] == 5  # trained now, by the default recipe
    assert scores["same_recipe"] is False  # epochs=1 is not the real classifier's 5
    assert "CAS" in proc.stdout and "real" in proc.stdout and "wrote" in proc.stdout

    # an existing cas.json is kept without overwrite=true, before anything is loaded
    before = (run / "cas.json").read_bytes()
    message = cli_error(main, f"ckpt={run}", "n=50", "epochs=1")
    assert "already exists" in message and "overwrite=true" in message
    assert (run / "cas.json").read_bytes() == before
    scores = main([f"ckpt={run}", "n=20", "epochs=1", "seed=1", "overwrite=true", "ema=false"])
    assert scores is not None and scores["n"] == 20 and scores["ema"] is False
    assert json.loads((run / "cas.json").read_text())["seed"] == 1


def test_an_unconditional_checkpoint_is_refused(ckpts: dict[str, Path]) -> None:
    message = cli_error(main, f"ckpt={ckpts['plain']}", "n=10", "epochs=1")
    assert "unconditional" in message and "condition=" in message
    assert not (ckpts["plain"].parents[1] / "cas.json").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("n=0",), "n=0 is invalid"),
        (("epochs=0",), "epochs=0 is invalid"),
        (("seed=-1",), "seed=-1 is out of range"),
        (("out=cas.txt",), "does not end in .json"),
        (("n_samples=5",), "unknown option 'n_samples'"),
    ],
)
def test_bad_arguments_are_refused(
    ckpts: dict[str, Path], args: tuple[str, ...], words: str
) -> None:
    assert words in cli_error(main, f"ckpt={ckpts['cond']}", *args)


def test_report_shows_cas_for_a_run_with_cas_json(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    for name, cas in (("0", 0.71), ("1", None)):
        job = root / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
        (job / "result.json").write_text(
            json.dumps({"status": "ok", "metric": "val/fid", "value": 30.0, "seconds": 1})
        )
        if cas is not None:
            (job / "cas.json").write_text(json.dumps({"cas": cas, "cas_real": 0.98}))
    report_main([str(root), "per_job=true"])
    table = (root / "report.md").read_text()
    assert "final cas" in table and "final cas_real" in table
    line = next(r for r in table.splitlines() if r.startswith("| 0 "))
    assert "0.71" in line and "0.98" in line
    assert higher_is_better("cas") and higher_is_better("cas_real")
