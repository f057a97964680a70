"""Classification Accuracy Score (CAS) of a class-conditional generator: train the project's
classifier on generated digits only, then test it on real held-out digits.

    python -m gan.cas ckpt=outputs/2024-05-01/12-00-00         # -> <run>/cas.json
    python -m gan.cas ckpt=last.ckpt n=10000 epochs=5 seed=1 out=cas_seed1.json
    python -m gan.cas ckpt=last.ckpt ema=false                  # G itself, not its EMA

CAS (Ravuri & Vinyals 2019, https://arxiv.org/abs/1905.10887) asks whether a conditional
G's images carry their class: a classifier that learns only from G's digits and their
requested labels is scored on real held-out digits. It is read beside the same classifier
trained the same way on real digits (`cas_real`, the cached classifier of
`python -m gan.classifier`, whose held-out accuracy it is): CAS near `cas_real` means G's
classes are as learnable as the data's; a G that collapses a class, or draws the wrong one,
loses that class's share (the per-class CAS shows which).

Options (key=value, Hydra style; an unknown key is an error):
    ckpt         a conditional checkpoint written by `python -m gan.train`, its run folder,
                 or a folder written by `python -m gan.export format=safetensors` (required)
    n            generated digits to train on (null: as many as the real classifier's
                 training set holds, e.g. 8,000 for data.split=test), class-balanced
    epochs       training epochs (null: the real classifier's default, 5); its batch size
                 and learning rate are the real classifier's defaults too
    seed         seed of the latents, the labels' order and the training (0)
    ema          true: the EMA weights (an error if the run kept none); false: G itself;
                 null (the default): the EMA weights when the checkpoint has them
    data_root    the folder holding MNIST/raw/ (null: the run's data.root); split and
                 data set are the run's
    out          where to write the scores (<run>/cas.json)
    overwrite    true: replace an existing `out` (false: refuse, before loading)
    trust_code   true: build a network outside the project's registry, which imports the
                 code the checkpoint names; only for a model you trained yourself (false)

Digits are drawn in chunks of 1,000, mapped to [0, 1] as the scores map fakes
(`to_unit_range`), resized to 28x28 and stored as uint8 like the real ones, so the
classifier sees them through the same data path (60,000 digits: 47 MB). It prints a table
of CAS and the real-trained accuracy per class and writes a JSON file (`cas`, `cas_real`,
`per_class`, `per_class_real` and the settings) through a temp file and a rename;
`gan.report` shows `cas` and `cas_real` for a run folder holding cas.json. An
unconditional checkpoint is refused. Errors print one `error: ...` line and exit with
status 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from gan.tools.sample import MAX_SEED, available_memory, check_ema, check_memory, run_folder
from gan.training.checkpoints import check_ckpt, load_gan
from gan.utils.errors import GanError
from gan.utils.files import check_writable
from gan.utils.options import command, parse_options

if TYPE_CHECKING:  # torch and lightning load only once the arguments are fine
    from torch import Tensor

    from gan.metrics.classifier import MNISTClassifier
    from gan.training.module import GAN

log = logging.getLogger("gan.cas")
CHUNK = 1000  # digits drawn (and converted to uint8) at a time
NAME = "cas.json"


@dataclass
class CasConfig:
    """The options of `python -m gan.cas`; see the module docstring."""

    ckpt: str = MISSING
    n: int | None = None  # None: the real classifier's training-set size
    epochs: int | None = None  # None: the real classifier's default (EPOCHS)
    seed: int = 0
    ema: bool | None = None
    data_root: str | None = None  # None: the run's data.root
    out: str | None = None  # None: <run>/cas.json
    overwrite: bool = False
    trust_code: bool = False


# ---- arguments -------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> DictConfig:
    """key=value arguments -> a typed, checked CasConfig node (GanError on any mistake)."""
    cfg, _ = parse_options(argv, CasConfig, "python -m gan.cas ckpt=<run>")
    if cfg.n is not None and cfg.n < 1:
        raise GanError(f"n={cfg.n} is invalid: it must be >= 1 (or null for the real set's size).")
    if cfg.epochs is not None and cfg.epochs < 1:
        raise GanError(f"epochs={cfg.epochs} is invalid: it must be >= 1 (or null for 5).")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise GanError(f"seed={cfg.seed} is out of range: it must be within 0..{MAX_SEED}.")
    if cfg.out and Path(cfg.out).suffix.lower() != ".json":
        raise GanError(f"out={cfg.out} does not end in .json: name the scores file e.g. cas.json.")
    return cfg


def check_out(out: Path, overwrite: bool) -> None:
    """Fail early (before loading anything) when `out` cannot, or may not, be written."""
    if out.is_dir():
        raise GanError(f"out={out} is a folder: pass a file name, e.g. out={out / NAME}.")
    check_writable(out.parent, key="out")
    if not overwrite and os.path.lexists(out):
        raise GanError(
            f"out={out} already exists. Pass overwrite=true to replace it, or another out=...."
        )


# ---- the score -------------------------------------------------------------------------


def balanced_labels(n: int, num_classes: int, seed: int) -> Tensor:
    """n labels (n,) int64, each class ceil or floor of n / num_classes times, shuffled by `seed`."""
    import torch

    labels = torch.arange(n) % num_classes  # (n,)
    return labels[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]


def draw_digits(module: GAN, labels: Tensor, seed: int, ema: bool | None) -> Tensor:
    """G's digits for `labels` (n,) as the classifier's training data: uint8 (n, 28, 28).

    CHUNK at a time: each is mapped to [0, 1] as the scores map fakes (`to_unit_range`),
    resized to 28x28 as the classifier resizes its input (`to_28`) and rounded to uint8,
    the real digits' type, so only n x 784 bytes stay alive.
    """
    import torch

    from gan.core.ranges import to_unit_range
    from gan.core.sampling import generate
    from gan.metrics.classifier import to_28

    n, output = len(labels), module.cfg.model.output
    z = module.sample_z(n, generator=torch.Generator().manual_seed(seed))  # (n, D)
    digits = torch.empty(n, 28, 28, dtype=torch.uint8)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        images = generate(module, z[start:stop], labels[start:stop], ema=ema)  # (b, 1, S, S)
        unit = to_28(to_unit_range(images, output).cpu())  # (b, 1, 28, 28) in [0, 1]
        digits[start:stop] = unit[:, 0].mul(255).round().to(torch.uint8)  # (b, 28, 28)
    return digits


def per_class_accuracy(clf: MNISTClassifier, held_out: tuple[Tensor, Tensor], k: int) -> Tensor:
    """Share of each class's held-out digits that `clf` names right: (k,) float64.

    held_out: images uint8 (N, 28, 28), labels int64 (N,); a class without digits gets NaN.
    """
    import torch

    images, labels = held_out
    was_training = clf.training
    clf.eval()
    try:
        with torch.no_grad():
            preds = torch.cat(
                [clf(x.unsqueeze(1).float().div(255)).argmax(1) for x in images.split(CHUNK)]
            )  # (N,)
    finally:
        clf.train(was_training)
    right = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, (preds == labels).double())
    count = torch.zeros(k, dtype=torch.float64).index_add_(
        0, labels, torch.ones(len(labels)).double()
    )
    return right / count  # (k,)


def shares(per_class: Tensor) -> list[float | None]:
    """(k,) accuracies as JSON numbers, 6 decimals; NaN (a class without digits) as null."""
    return [None if math.isnan(x) else round(x, 6) for x in per_class.tolist()]


def cas(cfg: DictConfig) -> tuple[dict[str, Any], Path]:
    """Load, draw, train on the fakes, test on the real held-out digits; write the JSON file.
    Returns the scores and the path written."""
    ckpt = check_ckpt(Path(cfg.ckpt).expanduser())  # both before loading anything: fail fast
    out = Path(cfg.out).expanduser() if cfg.out else run_folder(ckpt) / NAME
    check_out(out, cfg.overwrite)
    module = load_gan(ckpt, cfg.trust_code)
    check_ema(module, ckpt, cfg.ema)
    k, data = module.num_classes, module.cfg.metrics  # the run's data.root, split, dataset
    if not k:
        raise GanError(
            f"{ckpt} is unconditional (trained with condition=none): CAS trains a classifier on "
            f"G's digits and their labels, so it needs a class-conditional G (condition="
            f"projection, concat, acgan or tacgan)."
        )
    if module.cfg.model.channels != 1:
        raise GanError(
            f"{ckpt} draws {module.cfg.model.channels}-channel images (data.dataset="
            f"{data.dataset}): CAS uses the project's one-channel classifier, so it scores "
            f"one-channel data sets only."
        )

    from gan.data.mnist import spec
    from gan.metrics.classifier import (
        BATCH_SIZE,
        EPOCHS,
        LR,
        fit_classifier,
        load_or_train,
        training_data,
    )

    for name in ("lightning.pytorch", "lightning.fabric"):  # no GPU/TPU banner per fit
        logging.getLogger(name).setLevel(logging.WARNING)  # (set when lightning is imported)
    if k != spec(data.dataset).num_classes:
        raise GanError(
            f"{ckpt} has {k} classes but data.dataset={data.dataset} has "
            f"{spec(data.dataset).num_classes}: its labels cannot be scored against that data."
        )
    root = str(cfg.data_root or data.root)
    train, held_out, held_name, _ = training_data(root, data.split, False, data.dataset)
    real = load_or_train(root, data.split, False, dataset=data.dataset, progress_bar=False)
    info = real.info
    assert info is not None
    n, epochs = cfg.n or len(train[0]), cfg.epochs or EPOCHS
    settings = dict(max_epochs=epochs, batch_size=BATCH_SIZE, lr=LR)
    theirs = dict(max_epochs=info.max_epochs, batch_size=info.batch_size, lr=info.lr)
    known = {key: v for key, v in theirs.items() if v is not None}  # None: an older cache file
    differ = [f"{key}={v} (CAS: {settings[key]})" for key, v in known.items() if v != settings[key]]
    if differ:
        log.warning(
            "the cached real classifier %s was trained with %s: cas_real is not the same "
            "recipe (retrain it with `python -m gan.classifier retrain=true`)",
            info.path,
            ", ".join(differ),
        )

    check_memory(n, (1, 28, 28), f"n={n}", available_memory())
    start = time.perf_counter()
    ema = module.ema_generator is not None if cfg.ema is None else bool(cfg.ema)
    labels = balanced_labels(n, k, cfg.seed)  # (n,)
    print(f"drawing {n:,} digits from {ckpt} ({'EMA weights' if ema else 'G itself'}) ...")
    digits = draw_digits(module, labels, cfg.seed, ema)  # (n, 28, 28) uint8
    print(f"training the classifier on them for {epochs} epoch{'s' if epochs > 1 else ''} ...")
    clf, accuracy = fit_classifier(
        (digits, labels), held_out, k, epochs, BATCH_SIZE, LR, cfg.seed, progress_bar=False
    )
    per_class = per_class_accuracy(clf, held_out, k)  # (k,)
    per_class_real = per_class_accuracy(real, held_out, k)  # (k,)
    scores: dict[str, Any] = {
        "cas": accuracy,
        "cas_real": info.accuracy,
        "per_class": shares(per_class),
        "per_class_real": shares(per_class_real),
        "ckpt": str(ckpt),
        "ema": ema,
        "n": n,
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "seed": cfg.seed,
        "data": {"root": root, "split": data.split, "dataset": data.dataset},
        "held_out": held_name,
        "num_held_out": len(held_out[0]),
        "real_classifier": {"path": str(info.path), "num_train": info.num_train, **theirs},
        "same_recipe": False if differ else (True if len(known) == len(theirs) else None),
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out, scores)
    return scores, out


def write_json(out: Path, scores: dict[str, Any]) -> None:
    """The scores as JSON, through a temp file and a rename (GanError when it cannot)."""
    from gan.utils.files import atomic_write

    text = json.dumps(scores, indent=2) + "\n"
    try:
        atomic_write(out, lambda tmp: tmp.write_text(text))
    except OSError as e:
        raise GanError(f"cannot write {out} ({e.strerror or e}): pick another out=...") from None


def table(scores: dict[str, Any]) -> str:
    """The console's table: CAS and the real-trained accuracy, per class and overall."""

    def cell(x: float | None) -> str:
        return "  -  " if x is None or math.isnan(x) else f"{x:.3f}"

    lines = ["class    CAS  real"]
    for c, (a, b) in enumerate(zip(scores["per_class"], scores["per_class_real"])):
        lines.append(f"{c:>5}  {cell(a)}  {cell(b)}")
    lines.append(f"{'all':>5}  {cell(scores['cas'])}  {cell(scores['cas_real'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The command line: parse key=value arguments, score; GanError -> `error: ...`, exit 1."""

    def run(args: list[str]) -> dict[str, Any]:
        scores, out = cas(parse(args))
        print(table(scores))
        print(
            f"CAS {scores['cas']:.4f} (trained on {scores['n']:,} generated digits) vs "
            f"{scores['cas_real']:.4f} trained on real ones; tested on {scores['held_out']}"
        )
        print(f"wrote {out}")
        return scores

    return command(argv, __doc__, run)
