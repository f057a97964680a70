"""Find a drawn digit in a generator: the latent (and, for a class-conditional G, the class)
whose image best matches a picture, as StyleGAN2-ADA's projector.py does.

    python -m gan.project ckpt=outputs/<date>/<time> image=seven.png
    python -m gan.project ckpt=<run> image=seven.png steps=500 restarts=16 out=found/
    python -m gan.project ckpt=<run> image=seven.png label=7       # conditional: search class 7 only

Options (key=value; an unknown key is an error):
    ckpt         a checkpoint written by `python -m gan.train`, its run folder, or a folder
                 written by `python -m gan.export format=safetensors` (required)
    image        the picture to find (required): a PNG, JPEG, BMP, GIF, WebP or TIFF file of
                 at most 20 MB and 4096 x 4096 pixels; colour is turned grey, a dark digit on
                 a light background is inverted (MNIST is white on black), and the digit is
                 centred and scaled as MNIST's are (its bounding box fit into 20 x 20 keeping
                 its aspect, placed in 28 x 28 by its centre of mass; 64 px Gs get that
                 resized as their training data was)
    out          the folder to write into (default: <run>/projections/<image stem>/)
    steps        Adam steps of the search (300)
    restarts     random starting latents, searched at once as one batch (8); a conditional G
                 searches each class with that many (classes x restarts in one batch)
    seed         the starting latents' seed (0); the same seed, the same result
    lr           Adam's learning rate on z (0.1, lowered along a cosine to 1% of it)
    perceptual   weight of the perceptual term: the distance between the project
                 classifier's penultimate features of the match and of the picture, relative
                 to the picture's (0.1; 0: pixel loss alone)
    prior        weight of the penalty that keeps z where G was trained (1.0): (|r - 1| - tol)^2
                 for r = |z| / E|z| beyond tol, two standard deviations of r (0 within)
    label        a conditional G: search this class only (default: every class)
    ema          true: the EMA weights (an error if the run kept none); false: G itself;
                 null (the default): the EMA weights when the checkpoint has them
    gif_frames   frames of the optimisation's GIF (24)
    trust_code   true: build a network outside the project's registry, which imports the
                 code the checkpoint names; only for a model you trained yourself (false)
    overwrite    true: write into an `out` folder that is not empty (false: refuse, before
                 loading anything)

Writes three files into `out`: match.png (the prepared picture | the match, side by side),
z.pt (a plain dict of tensors and numbers, {"z": (1, noise.dim), "label": class or -1,
"mse": float}, readable by torch.load(weights_only=True); `python -m gan.sample` style
drawing: G(z, label)) and progress.gif (the search, the picture beside the best candidate).
Prints the match's pixel error (mean squared error of images in [0, 1]) and the project
classifier's label of the picture and of the match.

The loss is the pixel MSE in [0, 1] plus `perceptual` times the feature distance, plus
`prior` times the latent penalty. The classifier is the one the run's scores used (cached
by `python -m gan.classifier` for the run's metrics.root and split); where there is none,
the search uses the pixel loss alone and says so in one line, and no labels are reported.

The picture is data: only PIL decodes it, and only in the formats above (no format that
hands the file to another program, such as EPS). The checkpoint is read as
`python -m gan.sample` reads it. Errors print one `error: ...` line and exit with status 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig

from gan.data.pictures import read_picture, to_generator_size, to_mnist
from gan.tools.projector import (
    classify,
    load_classifier,
    render_path,
    search,
    side_by_side,
    write_gif,
)
from gan.utils.errors import GanError
from gan.utils.options import command, parse_options

MAX_STEPS, MAX_RESTARTS = 5000, 256  # bounds of the command line's search


@dataclass
class ProjectConfig:
    """The options of `python -m gan.project`; see the module docstring."""

    ckpt: str = MISSING
    image: str = MISSING
    out: str | None = None
    steps: int = 300
    restarts: int = 8
    seed: int = 0
    lr: float = 0.1
    perceptual: float = 0.1
    prior: float = 1.0
    label: int | None = None
    ema: bool | None = None
    gif_frames: int = 24
    trust_code: bool = False
    overwrite: bool = False


# ---- the command line --------------------------------------------------------------------


def parse(argv: Sequence[str]) -> DictConfig:
    """key=value arguments -> a checked ProjectConfig node (GanError on any mistake)."""
    from omegaconf import OmegaConf

    cfg, _ = parse_options(argv, ProjectConfig, "python -m gan.project ckpt=<run> image=digit.png")
    if OmegaConf.is_missing(cfg, "image") or not cfg.image:
        raise GanError("no picture given (image=...): pass image=<a PNG or JPEG of a digit>.")
    for name, value, low, high in (
        ("steps", cfg.steps, 1, MAX_STEPS),
        ("restarts", cfg.restarts, 1, MAX_RESTARTS),
        ("gif_frames", cfg.gif_frames, 2, 200),
    ):
        if not low <= value <= high:
            raise GanError(f"{name}={value} is out of range: it must be within {low}..{high}.")
    if not 0 <= cfg.seed <= 2**63 - 1:
        raise GanError(f"seed={cfg.seed} is out of range: it must be within 0..2**63 - 1.")
    for name in ("lr", "perceptual", "prior"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
            need = "> 0" if name == "lr" else ">= 0"
            raise GanError(f"{name}={value} is invalid: it must be a finite number {need}.")
    return cfg


def default_out(ckpt: Path, image: Path) -> Path:
    """`<run>/projections/<image stem>/` (a shared folder: inside it)."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return (ckpt if ckpt.is_dir() else run) / "projections" / (image.stem or "image")


def check_out(out: Path, overwrite: bool) -> None:
    """Fail before loading anything when `out` cannot, or may not, be written."""
    from gan.utils.files import check_writable

    if out.exists() and not out.is_dir():
        raise GanError(f"out={out} is a file: pass a folder, e.g. out={out.with_suffix('')}/.")
    check_writable(out, key="out")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise GanError(
            f"out={out} is a folder that is not empty (an earlier projection?). Pass "
            f"overwrite=true to replace its files, or another out=... folder."
        )


def project(cfg: DictConfig) -> dict[str, Any]:
    """What `python -m gan.project` does: prepare the picture, load G, search, write the
    three files; returns what it printed as a dict (out, mse, label, drawn, matched, note)."""
    import torch

    from gan.training.callbacks import save_png
    from gan.training.checkpoints import check_ckpt, load_gan
    from gan.utils.files import atomic_write

    ckpt = check_ckpt(Path(cfg.ckpt).expanduser())
    image_path = Path(cfg.image).expanduser()
    digit = to_mnist(read_picture(image_path))  # (28, 28): bad pictures fail before loading
    out = Path(cfg.out).expanduser() if cfg.out else default_out(ckpt, image_path)
    check_out(out, cfg.overwrite)
    module = load_gan(ckpt, cfg.trust_code)
    if cfg.ema and module.ema_generator is None:
        raise GanError(
            f"ema=true but {ckpt} has no EMA weights (trained with ema.enabled=false): "
            f"drop ema=true, or train with ema.enabled=true."
        )
    if int(module.cfg.model.channels) != 1:
        raise GanError(
            f"{ckpt}'s G draws {module.cfg.model.channels}-channel images (stacked_mnist): "
            f"projection finds one-channel digits; use a checkpoint of a one-channel data set."
        )
    k = int(module.num_classes or 0)
    if cfg.label is not None and not k:
        raise GanError(
            f"{ckpt} is unconditional (trained with condition=none): it has no classes. "
            f"Drop label=."
        )
    if cfg.label is not None and not 0 <= cfg.label < k:
        raise GanError(f"label={cfg.label} is outside this checkpoint's classes: use 0 to {k - 1}.")
    target = to_generator_size(digit, int(module.cfg.model.img_size))  # (1, 1, S, S)
    clf, note = load_classifier(module)
    if note and cfg.perceptual > 0:
        print(note)
    found = search(
        module,
        target,
        steps=cfg.steps,
        restarts=cfg.restarts,
        seed=cfg.seed,
        lr=cfg.lr,
        perceptual=cfg.perceptual,
        prior=cfg.prior,
        classifier=clf,
        labels=[cfg.label] if cfg.label is not None else None,
        ema=cfg.ema,
        frames=cfg.gif_frames,
    )
    label = int(found.labels[0]) if found.labels is not None else -1
    blob = {"z": found.z[:1].clone(), "label": label, "mse": float(found.mse[0])}  # z: (1, D)
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_png(side_by_side(target[0], found.images[0]), out / "match.png")
        atomic_write(out / "z.pt", lambda tmp: torch.save(blob, tmp))
        write_gif(target[0], render_path(module, found, cfg.ema), out / "progress.gif")
    except OSError as e:
        raise GanError(
            f"cannot write into {out} ({e.strerror or e}): pick another out=..."
        ) from None
    drawn = matched = None
    if clf is not None:
        drawn = classify(clf, target)[0]
        matched = classify(clf, found.images[:1])[0]
    return {
        "out": out,
        "mse": float(found.mse[0]),
        "label": label,
        "drawn": drawn,
        "matched": matched,
        "note": note,
    }


def report(result: dict[str, Any]) -> str:
    """The console lines of a projection."""
    lines = [f"pixel MSE of the match: {result['mse']:.4f} (images in [0, 1])"]
    if result["label"] >= 0:
        lines.append(f"G's class of the match: {result['label']}")
    if result["drawn"] is not None:
        lines.append(
            f"classifier's label: drawn digit {result['drawn']}, match {result['matched']}"
        )
    else:
        lines.append("classifier's label: unknown (no cached classifier)")
    out = result["out"]
    lines.append(f"wrote {out / 'match.png'}, {out / 'z.pt'}, {out / 'progress.gif'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The command line: parse, project, print; GanError -> `error: ...`, exit 1."""

    def run(args: list[str]) -> dict[str, Any]:
        result = project(parse(args))
        print(report(result))
        return result

    return command(argv, __doc__, run)
