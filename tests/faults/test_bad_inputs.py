"""Every bad input a user may give, and the one line each must print.

`CASES` lists them with the text the user must see: each runs in-process, and those marked
`cli` through the real command line too (slow); neither may touch an existing run folder.
docs/troubleshooting.md shows each case (`test_every_case_is_in_the_doc` keeps the two in
step). Print the doc's table from real runs with:

    .venv/bin/python -m tests.faults.test_bad_inputs /tmp/table.md
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import gan.tools.sample
from gan.training.run import train
from gan.utils.errors import GanError
from tests.helpers import (
    METRICS,
    ROOT,
    Existing,
    cli_env,
    compose_cfg,
    key,
    make_inputs,
    run_cli,
    tiny,
    train_existing_run,
)
from tests.mnist_files import write_tiny_mnist

DOC = ROOT / "docs" / "troubleshooting.md"


# ---- the list of bad inputs ---------------------------------------------------------------


class Case(NamedTuple):
    """A bad input: `python -m <args>` must print `expected` (and exit 1 unless `ok`).

    `{name}` in args is a path the tests make (see `make_inputs`); `cli`: also run through a
    real subprocess (slow); `needs`: the project checks that the clean message relies on;
    `library`: what `gan.training.run.train(cfg)` says instead, where the command line's
    check of the run's own config.yaml speaks first.
    """

    description: str
    args: tuple[str, ...]
    expected: str
    ok: bool = False
    cli: bool = False
    needs: tuple[str, ...] = ()
    library: str | None = None


CASES: list[Case] = [
    Case(
        "unknown option of a config group",
        ("gan.train", "model=foo"),
        "Could not find 'model/foo'",
        cli=True,
    ),
    Case(
        "unknown key",
        ("gan.train", "optimizer.lrr=1"),
        "Key 'lrr' not in 'OptimizerConfig'",
        cli=True,
    ),
    Case(
        "value of the wrong type",
        ("gan.train", "step_ratio.d_steps=two"),
        "Value 'two' of type 'str' could not be converted to Integer",
        cli=True,
    ),
    Case(
        "learning rate of zero",
        ("gan.train", "optimizer.lr=0"),
        "optimizer.lr=0.0 is out of range: it must be > 0",
        cli=True,
    ),
    Case(
        "negative learning rate",
        ("gan.train", "optimizer.lr=-0.001"),
        "optimizer.lr=-0.001 is out of range: it must be > 0",
    ),
    Case(
        "unknown lr schedule",
        ("gan.train", "optimizer.schedule=step"),
        "optimizer.schedule='step' is out of range: it must be one of ('constant', 'linear', "
        "'cosine')",
    ),
    Case(
        "a decay that starts at the run's end",
        ("gan.train", "optimizer.schedule=linear", "optimizer.decay_start=1"),
        "optimizer.decay_start=1.0 is out of range: it must be within [0, 1)",
    ),
    Case(
        "batch size of zero",
        ("gan.train", "data.batch_size=0"),
        "data.batch_size=0 is out of range: it must be >= 1",
    ),
    Case(
        "fewer than one D step",
        ("gan.train", "step_ratio.d_steps=0"),
        "step_ratio.d_steps=0 is out of range: it must be >= 1",
    ),
    Case(
        "label smoothing target above 1",
        ("gan.train", "label_smoothing.real=1.5"),
        "label_smoothing.real=1.5 is out of range: it must be within [0, 1]",
    ),
    Case(
        "label smoothing target below 0",
        ("gan.train", "label_smoothing.fake=-0.1"),
        "label_smoothing.fake=-0.1 is out of range: it must be within [0, 1]",
    ),
    Case(
        "negative R1 weight",
        ("gan.train", "stabilize.r1=-1"),
        "stabilize.r1=-1.0 is out of range: it must be >= 0 (0 turns it off)",
    ),
    Case(
        "unknown DiffAugment policy",
        ("gan.train", "stabilize.diffaug=[translation,rotate]"),
        "stabilize.diffaug=['translation', 'rotate'] is out of range: it must be a list of "
        "('color', 'translation', 'cutout')",
    ),
    Case(
        "ADA target outside (0, 1)",
        ("gan.train", "stabilize.ada=true", "stabilize.ada_target=1"),
        "stabilize.ada_target=1.0 is out of range: it must be within (0, 1)",
    ),
    Case(
        "training subset smaller than the number of classes",
        ("gan.train", "data.limit=5"),
        "data.limit=5 is out of range: it must be >= data.num_classes (10)",
    ),
    Case(
        "training subset larger than the data",
        ("gan.train", "data.limit=100000"),
        "data.limit=100000 is more than the 48 training images of split 'train'",
        cli=True,
    ),
    Case(
        "latent size of zero",
        ("gan.train", "noise.dim=0"),
        "noise.dim=0 is out of range: it must be >= 1",
    ),
    Case(
        "architecture paired with the wrong image size",
        ("gan.train", "model=dcgan", "data.img_size=64"),
        "model=dcgan makes 28x28 images, but data.img_size=64",
        cli=True,
    ),
    Case(
        "no MNIST files and no network",
        ("gan.train", "data.root={empty}", "data.download=true"),
        "the download failed",
        cli=True,
    ),
    Case(
        "MNIST archive that fails its md5",
        ("gan.train", "data.root={bad_md5}"),
        "the archive is corrupt or not the official MNIST file",
        cli=True,
    ),
    Case(
        "truncated MNIST file",
        ("gan.train", "data.root={truncated}"),
        "is not a valid MNIST idx file",
    ),
    Case(
        "output folder that cannot be created",
        ("gan.train", "hydra.run.dir={file}/run"),
        "is a file, not a folder",
        cli=True,
        needs=("writable-check", "dir-callback"),
    ),
    Case(
        "output folder in a place where no folder can be made",
        ("gan.train", "hydra.run.dir=/proc/forbidden"),
        "/proc does not accept new folders",
        cli=True,
        needs=("writable-check", "dir-callback"),
    ),
    Case(
        "resume from a checkpoint of another architecture",
        ("gan.train", "model=dcgan", "ckpt_path={ckpt}"),
        "model=dcgan (the run's model differs)",
        cli=True,
        library="was written by a model=mlp run, but this run has model=dcgan",
        needs=("resume-check",),
    ),
    Case(
        "resume from a file that is not a checkpoint",
        ("gan.train", "ckpt_path={text}"),
        "is not a checkpoint: it is not a file written by torch.save",
        cli=True,
        needs=("resume-check",),
    ),
    Case(
        "resume from a checkpoint that does not exist",
        ("gan.train", "ckpt_path={missing}"),
        "does not exist. Resume with ckpt_path=<run>/checkpoints/last.ckpt",
        needs=("resume-check",),
    ),
    Case(
        "resume from a truncated checkpoint",
        ("gan.train", "ckpt_path={torn}"),
        "is not a readable checkpoint",
        needs=("resume-check",),
    ),
    Case(
        "resume from a Lightning checkpoint of another project",
        ("gan.train", "ckpt_path={foreign}"),
        "is not a checkpoint of this project",
        needs=("resume-check",),
    ),
    Case(
        "resume with EMA on from a run without EMA",
        ("gan.train", "model=mlp", "ema.enabled=true", "ckpt_path={ckpt}"),
        "ema.enabled=True (the run has False)",
        cli=True,
        library="holds no EMA weights",
        needs=("resume-check",),
    ),
    Case(
        "sample from a file that is not a checkpoint",
        ("gan.sample", "ckpt={text}", "out={run}/s.png"),
        "is not a checkpoint: it is not a file written by torch.save",
        cli=True,
    ),
    Case(
        "sample from a checkpoint whose weights are of another architecture",
        ("gan.sample", "ckpt={mismatched}", "out={run}/s.png"),
        "its weights do not fit the model its hyper_parameters describe",
        cli=True,
    ),
    Case(
        "sample from a Lightning checkpoint of another project",
        ("gan.sample", "ckpt={foreign}", "out={run}/s.png"),
        "is not a checkpoint of this project",
    ),
    Case(
        "GPU asked for on a machine without one",
        ("gan.train", "trainer.accelerator=gpu"),
        "Use trainer.accelerator=cpu",
        cli=True,
    ),
    Case(
        "W&B with no credentials and no network",
        (
            "gan.train",
            "model=mlp",
            "logger=wandb",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
        ),
        "W&B run saved offline; upload it with: wandb sync",
        ok=True,
        cli=True,
    ),
]

# Added to every gan.train case unless the case sets the same key: tiny data, CPU, quiet.
TRAIN_BASE = ("data.root={data}", *tiny(drop=METRICS), "hydra.run.dir={run}")


def case_id(case: Case) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", case.description).strip("-")  # also a folder name


def full_args(case: Case) -> list[str]:
    """`gan.train` cases on top of TRAIN_BASE (the case wins); `gan.sample` as they are."""
    module, *args = case.args
    if module != "gan.train":
        return [module, *args]
    own = {key(a) for a in args}
    return [module, *[a for a in TRAIN_BASE if key(a) not in own], *args]


def fill(args: list[str], paths: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]


def params(cases: list[Case]) -> list[Any]:
    """Cases as pytest params, named after what they try."""
    return [pytest.param(case, id=case_id(case)) for case in cases]


def case_env(case: Case, home: Path) -> dict[str, str]:
    env = cli_env(
        # A download goes to a closed port: "no network", here and on machines that have one.
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        no_proxy="",
    )
    if "logger=wandb" in case.args:  # a first-time user: no key, no login, no mode set
        for k in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SILENT", "WANDB_DIR"):
            env.pop(k, None)
        env["HOME"] = str(home)
    return env


def run_case_cli(case: Case, paths: dict[str, Path], run: Path) -> subprocess.CompletedProcess:
    module, *args = fill(full_args(case), {**paths, "run": run})
    home = run.parent / f"{run.name}-home"
    home.mkdir(parents=True, exist_ok=True)
    return run_cli(module, *args, env=case_env(case, home))


def run_case_in_process(case: Case, paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> str:
    """What the case raises in-process: the GanError message, or Hydra's/OmegaConf's."""
    module, *args = fill(full_args(case), paths)
    if module == "gan.sample":
        with pytest.raises(SystemExit) as exit_:
            gan.tools.sample.main(args)
        return str(exit_.value.code)

    def no_network(*a: Any, **k: Any) -> Any:
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    run = next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir="))
    try:
        cfg = compose_cfg(*[a for a in args if not a.startswith("hydra.")], out=Path(run))
    except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf: the CLI prints both lines
        return f"{e}\n{e.__cause__}"
    with pytest.raises(GanError) as err:
        train(cfg)
    return str(err.value)


# ---- in-process -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", params([c for c in CASES if not c.ok]))
def test_bad_input_in_process(
    case: Case,
    inputs: dict[str, Path],
    existing_run: Existing,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "trainer.accelerator=gpu" in case.args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    mine = existing_run.copy_to(tmp_path / "existing")  # what {ckpt} cases resume from
    paths = {**inputs, "ckpt": mine.path / "checkpoints" / "last.ckpt", "run": tmp_path / "run"}
    message = run_case_in_process(case, paths, monkeypatch)
    assert (case.library or case.expected) in message
    mine.assert_untouched()
    existing_run.assert_untouched()


# ---- the command line -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_results(
    inputs: dict[str, Path], existing_run: Existing, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[subprocess.CompletedProcess, Path, Existing]]:
    """Every `cli` case through the real command line, two at a time.

    Each case resumes ({ckpt}) from its own copy of the existing run.
    """
    base = tmp_path_factory.mktemp("cli")
    runs = {}
    for case in [c for c in CASES if c.cli]:
        mine = existing_run.copy_to(base / f"{case_id(case)}-existing")
        runs[case_id(case)] = (case, base / case_id(case), mine)
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(
                run_case_cli, case, {**inputs, "ckpt": mine.path / "checkpoints" / "last.ckpt"}, run
            )
            for name, (case, run, mine) in runs.items()
        }
        return {name: (futures[name].result(), run, mine) for name, (_, run, mine) in runs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", params([c for c in CASES if c.cli]))
def test_bad_input_from_the_command_line(
    case: Case,
    cli_results: dict[str, tuple[subprocess.CompletedProcess, Path, Existing]],
    existing_run: Existing,
) -> None:
    if "trainer.accelerator=gpu" in case.args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res, run, mine = cli_results[case_id(case)]
    shown = res.stdout + res.stderr
    assert res.returncode == (0 if case.ok else 1), shown[-3000:]
    assert case.expected in shown, shown[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "Callback CheckOutputDir" not in res.stderr, res.stderr[-3000:]  # Hydra's warning
    if "logger=wandb" in case.args:
        assert list((run / "wandb").glob("offline-run-*")), "W&B did not run offline"
    mine.assert_untouched()  # the run folder it resumed from, or could have
    existing_run.assert_untouched()


@pytest.mark.slow
def test_the_output_dir_callback_from_the_command_line(tmp_path: Path) -> None:
    """CheckOutputDir (a Hydra callback in conf/train.yaml) catches an unwritable run folder."""
    (tmp_path / "afile").write_text("x")
    res = run_cli("gan.train", "model=mlp", f"hydra.run.dir={tmp_path}/afile/run")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"error: cannot create the output folder {tmp_path}/afile/run: ")
    assert "hydra.run.dir=" in res.stderr


# ---- the doc ----------------------------------------------------------------------------------


def test_every_case_is_in_the_doc() -> None:
    doc = DOC.read_text()
    for case in CASES:
        assert case.description in doc, (
            f"docs/troubleshooting.md lacks the case {case.description!r}"
        )
        for text in filter(None, (case.expected, case.library)):
            assert text in doc, f"docs/troubleshooting.md lacks the message {text!r}"


def doc_table() -> str:  # pragma: no cover - run by hand: python -m tests.faults.test_bad_inputs
    """The troubleshooting table from real command-line runs of every case."""
    rows = ["| Bad input | Command | What you see |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ.setdefault("GAN_CACHE", str(base / "cache"))
        data = base / "data"
        write_tiny_mnist(data, split="all", n=64)
        ckpt = train_existing_run(data, base / "existing")
        paths = make_inputs(base / "inputs", data, ckpt)
        for case in CASES:
            res = run_case_cli(case, paths, base / "runs" / case_id(case))
            lines = [
                ln
                for ln in (res.stderr + res.stdout).splitlines()
                if ln.strip() and "HYDRA_FULL_ERROR" not in ln
            ]
            hit = next((i for i, ln in enumerate(lines) if case.expected in ln), 0)
            shown = " ".join(lines[hit : hit + 1]).replace(tmp, "<tmp>").replace("|", "/")
            command = "python -m " + " ".join(case.args).replace("{", "<").replace("}", ">")
            rows.append(f"| {case.description} | `{command}` | `{shown}` |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    Path(sys.argv[1]).write_text(doc_table() + "\n")
