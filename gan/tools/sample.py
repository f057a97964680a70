"""Draw images from a trained generator, rebuilt from its checkpoint alone.

    python -m gan.sample ckpt=outputs/2024-05-01/12-00-00/checkpoints/last.ckpt
    python -m gan.sample ckpt=last.ckpt n=16 nrow=4 seed=3 out=digits.png
    python -m gan.sample ckpt=last.ckpt format=png out=digits/        # digits/000.png, ...
    python -m gan.sample ckpt=last.ckpt format=pt n=10000 out=fakes.pt  # (n, C, H, W) in [0, 1]
    python -m gan.sample ckpt=last.ckpt interpolate=true n=8 steps=12 spherical=true
    python -m gan.sample ckpt=last.ckpt label=7 n=64 out=sevens.png    # a conditional GAN
    python -m gan.sample ckpt=last.ckpt per_class=8                     # one row per class
    python -m gan.sample ckpt=last.ckpt truncation=0.7                  # typical, less varied

Options (key=value, Hydra style; an unknown key is an error):
    ckpt         a checkpoint written by `python -m gan.train`, its run folder, or a folder
                 written by `python -m gan.export format=safetensors` (required)
    n            images to draw, or walks with interpolate=true (64)
    out          where to write: a .png file (format=grid), a folder (png) or a .pt file (pt);
                 by default a new name in `samples/` beside the checkpoint, e.g.
                 <run>/samples/grid_seed0.png (walk_seed0.png, png_seed0/, samples_seed0.pt)
    format       grid: one PNG grid | png: one PNG per image in the folder `out` |
                 pt: a tensor file of the images, float32 (N, C, H, W) in [0, 1]
    nrow         images per grid row (ceil(sqrt(n)); `steps` with interpolate=true)
    seed         seed of the latent vectors: the same seed gives the same images (0)
    interpolate  true: `n` rows of `steps` images walking from one latent point to another
    steps        images per walk (10)
    spherical    true: walk along the sphere (slerp) instead of the straight line
    truncation   the truncation trick's ψ >= 0, in every mode: each latent G sees becomes
                 mean + ψ (z - mean) (gan.core.sampling.truncate; the mean is 0 for both
                 noises). 1: off; below 1: more typical images, less variety; 0: every
                 image is G(mean). Default 1.0, or the ψ recorded by a folder written by
                 `gan.export format=safetensors truncation=...`. See docs/truncation.md
    ema          true: the EMA weights (an error if the run kept none); false: G itself;
                 null (the default): the EMA weights when the checkpoint has them
    label        conditional checkpoints: draw this class only
    labels       conditional checkpoints: cycle through these classes, e.g. labels=[0,1,2]
    per_class    conditional checkpoints: this many images of every class, one row each
                 (n is then classes x per_class); without any of the three, random classes
    trust_code   true: build a network outside the project's registry, which imports the
                 code the checkpoint names; only for a model you trained yourself (false)
    overwrite    true: replace an existing `out` file; format=png: write into a folder that
                 is not empty, removing the numbered PNGs (000.png, ...) of an earlier
                 draw that this one does not rewrite (false: refuse, before loading)

The config is read from the checkpoint's hyperparameters; nothing else is needed, and
nothing in the file runs (gan.training.checkpoints). Images
are written through a temp file of a random name and a rename, so a reader never sees
half a file and nothing planted beside `out` can redirect the write. `seed` must be within
0..2**63-1; the images must fit in memory (n is capped by the RAM available). Errors print
one `error: ...` line and exit with status 1.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from gan.training.checkpoints import check_ckpt, load_gan
from gan.training.hub import recorded_truncation
from gan.utils.errors import GanError
from gan.utils.files import check_writable
from gan.utils.options import CKPT_HINT, check_truncation, command, parse_options

if TYPE_CHECKING:  # torch and lightning load only once the arguments are fine
    from torch import Tensor

    from gan.training.module import GAN

FORMATS = ("grid", "png", "pt")
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes an int64
NUMBERED_PNG = re.compile(r"\d+\.png")  # what format=png writes: 000.png, 001.png, ...
COPIES = 3  # float32 copies of the images alive at once while drawing and writing
UNKNOWN_BUDGET = 8 * 10**9  # bytes a draw may take where the free memory cannot be read
SUFFIXES = {"grid": (".png",), "png": ("",), "pt": (".pt", ".pth")}  # what `out` ends in
HINT = CKPT_HINT


@dataclass
class SampleConfig:
    """The options of `python -m gan.sample`; see the module docstring."""

    ckpt: str = MISSING
    n: int = 64
    out: str | None = None  # None: a new name beside the checkpoint (default_out)
    format: str = "grid"
    nrow: int | None = None
    seed: int = 0
    interpolate: bool = False
    steps: int = 10
    spherical: bool = False
    truncation: Any = None  # ψ >= 0, or None: check_truncation reads it and names the fix
    ema: bool | None = None
    label: int | None = None
    labels: list[int] | None = None
    per_class: int | None = None
    trust_code: bool = False
    overwrite: bool = False


OPTIONS = tuple(SampleConfig.__dataclass_fields__)


# ---- arguments -------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> DictConfig:
    """key=value arguments -> a typed, checked SampleConfig node (GanError on any mistake)."""
    cfg, given = parse_options(argv, SampleConfig, "python -m gan.sample ckpt=last.ckpt n=16")
    if cfg.format not in FORMATS:
        raise GanError(f"format={cfg.format!r} is unknown: use one of {', '.join(FORMATS)}.")
    if cfg.n < 1:
        raise GanError(f"n={cfg.n} is invalid: it must be >= 1.")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise GanError(
            f"seed={cfg.seed} is out of range: it must be within 0..{MAX_SEED} (2**63 - 1, "
            f"what torch.Generator takes). Fix it with seed=<a smaller number>, e.g. seed=0."
        )
    if cfg.nrow is not None and cfg.nrow < 1:
        raise GanError(f"nrow={cfg.nrow} is invalid: it must be >= 1 (or null for the default).")
    if cfg.steps < 2:
        raise GanError(f"steps={cfg.steps} is invalid: a walk needs >= 2 images.")
    if not cfg.interpolate and ({"steps", "spherical"} & given):
        raise GanError("steps= and spherical= shape a latent walk: add interpolate=true.")
    picked = [k for k in ("label", "labels", "per_class") if k in given]
    if len(picked) > 1:
        raise GanError(f"{' and '.join(picked)} both pick classes: give one of them.")
    if cfg.per_class is not None and cfg.per_class < 1:
        raise GanError(f"per_class={cfg.per_class} is invalid: it must be >= 1.")
    if cfg.labels is not None and not cfg.labels:
        raise GanError("labels=[] is empty: give one class or more, e.g. labels=[0,1,2].")
    if cfg.truncation is not None:
        cfg.truncation = check_truncation(cfg.truncation)
    if cfg.out:
        check_suffix(Path(cfg.out), cfg.format)
    else:
        cfg.out = None  # a new name beside the checkpoint: default_out, once it is found
    return cfg


def check_suffix(out: Path, fmt: str) -> None:
    """GanError when `out`'s extension says another format than `fmt` writes."""
    want = SUFFIXES[fmt]
    if out.suffix.lower() in want or (fmt != "png" and out.is_dir()):
        return  # a folder for one file: check_out says so
    if fmt == "png":
        raise GanError(
            f"format=png writes a folder of PNGs, but out={out} ends in {out.suffix}: pass a "
            f"folder, e.g. out={out.with_suffix('')}/, or format=grid for one PNG grid."
        )
    kind = {"grid": "one PNG grid", "pt": "a torch tensor file"}[fmt]
    other = {".png": "format=grid", ".pt": "format=pt", ".pth": "format=pt"}.get(out.suffix.lower())
    also = f", or {other} for that" if other else ""
    raise GanError(
        f"format={fmt} writes {kind}, but out={out} ends in {out.suffix or 'no extension'}: "
        f"name it {out.with_suffix(want[0]).name}{also}."
    )


def run_folder(ckpt: Path) -> Path:
    """The folder a checkpoint's outputs go beside: its run folder for
    `<run>/checkpoints/*.ckpt`, the folder itself for a safetensors folder, else its parent."""
    if ckpt.is_dir():
        return ckpt
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def check_ema(module: GAN, ckpt: Path, ema: bool | None) -> None:
    """GanError when ema=true asks for EMA weights that the checkpoint does not hold."""
    if ema and module.ema_generator is None:
        raise GanError(
            f"ema=true but {ckpt} has no EMA weights (trained with ema.enabled=false): "
            f"drop ema=true, or train with ema.enabled=true."
        )


def default_out(ckpt: Path, fmt: str, seed: int, interpolate: bool) -> Path:
    """A new name in `samples/` beside the checkpoint (in a run folder: `<run>/samples/`),
    after what is drawn: grid_seed0.png, walk_seed0.png, png_seed0/, samples_seed0.pt; an
    existing one gets a number (grid_seed0_1.png)."""
    folder = run_folder(ckpt) / "samples"
    stem = {"grid": "walk" if interpolate else "grid", "png": "png", "pt": "samples"}[fmt]
    stem, ext = f"{stem}_seed{seed}", SUFFIXES[fmt][0]
    out, k = folder / f"{stem}{ext}", 0
    while os.path.lexists(out):
        k += 1
        out = folder / f"{stem}_{k}{ext}"
    return out


def check_out(out: Path, fmt: str, overwrite: bool = False) -> None:
    """Fail early (before loading anything) when `out` cannot, or may not, be written.

    Without `overwrite`, an existing file `out` (format grid or pt) or a folder `out` that is
    not empty (format png) is refused: nothing is replaced without consent.
    """
    if fmt == "png" and out.is_file():
        raise GanError(
            f"out={out} is a file, but format=png writes a folder of PNGs: pass a folder, "
            f"e.g. out={out.with_suffix('')}/."
        )
    if fmt != "png" and out.is_dir():
        raise GanError(
            f"out={out} is a folder, but format={fmt} writes one file: pass a file name, "
            f"e.g. out={out / ('samples' + SUFFIXES[fmt][0])}."
        )
    check_writable(out if fmt == "png" else out.parent, key="out")
    if overwrite:
        return
    if fmt == "png" and out.is_dir() and any(out.iterdir()):
        raise GanError(
            f"out={out} is a folder that is not empty: format=png would mix these images with "
            f"what is there. Pass overwrite=true to write into it (numbered PNGs of an earlier "
            f"draw are replaced), or another out=... folder."
        )
    if fmt != "png" and os.path.lexists(out):
        raise GanError(
            f"out={out} already exists. Pass overwrite=true to replace it, or another out=...."
        )


def available_memory() -> int | None:
    """Bytes of RAM this process can still take: /proc/meminfo's MemAvailable, less where a
    cgroup (a container) allows less; sysconf's free pages elsewhere; None if unknown."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(max(0, int(limit) - int(used)))
    except OSError:
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(found)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def check_memory(count: int, shape: Sequence[int], what: str, available: int | None) -> None:
    """GanError when `count` float32 images of `shape` (C, H, W) cannot fit in `available`
    bytes (COPIES of them are alive at once); the message names the cap and the need."""
    per_image = 4 * math.prod(shape) * COPIES
    budget = available if available is not None else UNKNOWN_BUDGET
    if count * per_image <= budget:
        return
    cap = budget // per_image
    size = "x".join(map(str, shape))
    have = (
        f"{_size(budget)} is available"
        if available is not None
        else f"the free memory is unknown here, so a draw is capped at {_size(budget)}"
    )
    raise GanError(
        f"{what} asks for {count:,} images of {size}, which would need "
        f"{_size(count * per_image)} of memory (float32, {COPIES} copies while drawing and "
        f"writing), but {have}: the most this machine can draw at once is {cap:,} images. "
        f"Draw fewer, or several batches with different seed=."
    )


# ---- sampling --------------------------------------------------------------------------


def classes(module: GAN, cfg: DictConfig, n: int) -> Tensor | None:
    """The class of each of the n images (n,), None for an unconditional checkpoint."""
    import torch

    k = module.num_classes
    asked = [cfg.label] if cfg.label is not None else list(cfg.labels or [])
    if not k:
        if asked or cfg.per_class is not None:
            raise GanError(
                f"{cfg.ckpt} is unconditional (trained with condition=none): it has no classes "
                f"to pick. Drop label=, labels= and per_class=, or train with "
                f"condition=projection (or concat, acgan, tacgan)."
            )
        return None
    bad = [c for c in asked if not 0 <= c < k]
    if bad:
        raise GanError(f"label {bad[0]} is outside this checkpoint's classes: use 0 to {k - 1}.")
    if cfg.per_class is not None:
        return torch.arange(k).repeat_interleave(cfg.per_class)  # one row per class
    if asked:
        return torch.tensor(asked).repeat(math.ceil(n / len(asked)))[:n]
    return module.sample_labels(n, generator=torch.Generator().manual_seed(cfg.seed + 1)).cpu()


def draw(module: GAN, cfg: DictConfig) -> Tensor:
    """The images, float32 (N, C, H, W) in [0, 1]: n samples, or n walks of `steps` images."""
    import torch

    from gan.core.ranges import to_unit_range
    from gan.core.sampling import generate, truncate, walk

    n = module.num_classes * cfg.per_class if cfg.per_class is not None else cfg.n
    labels = classes(module, cfg, n)  # (n,) or None
    gen = torch.Generator().manual_seed(cfg.seed)
    z = module.sample_z(n, generator=gen)  # (n, D)
    if cfg.interpolate:  # n walks, each at its own class
        z = walk(z, module.sample_z(n, generator=gen), cfg.steps, cfg.spherical)  # (n * steps, D)
        labels = labels.repeat_interleave(cfg.steps) if labels is not None else None
    psi = 1.0 if cfg.truncation is None else cfg.truncation
    z = truncate(z, psi, module.cfg.noise.dist)  # every latent G sees, walks' too
    images = generate(module, z, labels, ema=cfg.ema)  # (N, C, H, W) in G's range
    return to_unit_range(images, module.cfg.model.output).cpu()


def write(images: Tensor, cfg: DictConfig) -> Path:
    """Write images (N, C, H, W) in [0, 1] as cfg.format says; returns what was written."""
    import torch
    from torchvision.utils import make_grid

    from gan.training.callbacks import save_png
    from gan.utils.files import atomic_write

    out = Path(cfg.out).expanduser()
    try:
        if cfg.format == "grid":
            walk_or_class = cfg.steps if cfg.interpolate else cfg.per_class
            nrow = cfg.nrow or walk_or_class or math.ceil(math.sqrt(len(images)))
            save_png(make_grid(images, nrow=nrow), out)  # padding 2, as make_grid's default
        elif cfg.format == "png":
            out.mkdir(parents=True, exist_ok=True)
            width = max(3, len(str(len(images) - 1)))
            names = {f"{i:0{width}d}.png" for i in range(len(images))}
            for i, image in enumerate(images):
                save_png(image, out / f"{i:0{width}d}.png")
            for old in sorted(out.iterdir()):  # overwrite=true: an earlier draw's extra images
                if NUMBERED_PNG.fullmatch(old.name) and old.name not in names:
                    old.unlink()
        else:
            atomic_write(out, lambda tmp: torch.save(images.contiguous(), tmp))
    except OSError as e:
        raise GanError(f"cannot write {out} ({e.strerror or e}): pick another out=...") from None
    return out


def sample(cfg: DictConfig) -> tuple[Path, int]:
    """Load the checkpoint, draw, write; returns the path written and the image count."""
    ckpt = check_ckpt(Path(cfg.ckpt).expanduser())  # both before loading anything: fail fast
    if cfg.out is None:
        cfg.out = str(default_out(ckpt, cfg.format, cfg.seed, cfg.interpolate))
    out = Path(cfg.out).expanduser()
    check_out(out, cfg.format, cfg.overwrite)
    module = load_gan(ckpt, cfg.trust_code)
    if cfg.truncation is None:  # a shared folder's recorded ψ (1.0 for a checkpoint)
        cfg.truncation = recorded_truncation(ckpt)
    check_ema(module, ckpt, cfg.ema)
    n = module.num_classes * cfg.per_class if cfg.per_class is not None else cfg.n
    what = f"per_class={cfg.per_class}" if cfg.per_class is not None else f"n={cfg.n}"
    if cfg.interpolate:
        n, what = n * cfg.steps, f"{what} with steps={cfg.steps}"
    shape = (module.cfg.model.channels, module.cfg.model.img_size, module.cfg.model.img_size)
    check_memory(n, shape, what, available_memory())
    images = draw(module, cfg)
    return write(images, cfg), len(images)


def main(argv: Sequence[str] | None = None) -> Path | None:
    """The command line: parse key=value arguments, sample; GanError -> `error: ...`, exit 1."""

    def run(args: list[str]) -> Path:
        path, count = sample(parse(args))
        print(f"wrote {count} images to {path}")
        return path

    return command(argv, __doc__, run)
