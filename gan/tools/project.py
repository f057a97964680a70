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
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from gan.tools.explore import (
    PER_ROW,
    class_labels,
    classifier_file,
    generate_images,
    latents,
    num_classes,
    to_picture,
)
from gan.utils.errors import GanError, first_line
from gan.utils.options import command, parse_options

if TYPE_CHECKING:  # torch loads only once the arguments are fine
    import numpy as np
    from torch import Tensor

    from gan.training.module import GAN

MAX_BYTES = 20 * 10**6  # a picture file larger than this is refused before it is opened
MAX_SIDE = 4096  # pixels along either side, read from the header before decoding
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # what PIL may decode: all in-process
MNIST_SIZE, MNIST_BOX = 28, 20  # MNIST's digits: a 20 x 20 box in a 28 x 28 image
INK = 0.1  # a pixel this far (in [0, 1]) from the background belongs to the digit
MIN_CONTRAST = 0.1  # a picture whose brightest ink is nearer the background than this is blank
MIN_INK_PIXELS = 3  # fewer pixels of ink than this (at 28 x 28 scale) is nothing drawn
MAX_STEPS, MAX_RESTARTS = 5000, 256  # bounds of the command line's search
EXPECTED_SQ = {"normal": 1.0, "uniform": 1.0 / 3.0}  # E[z_i^2] of each latent distribution
# The spread of |z| (its standard deviation, ~ independent of the size): 1/sqrt(2) for a
# Gaussian's (the chi distribution's), sqrt(1/15) for U[-1, 1]'s.
NORM_STD = {"normal": math.sqrt(0.5), "uniform": math.sqrt(1 / 15)}


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


# ---- the picture -------------------------------------------------------------------------


def read_picture(path: str | os.PathLike[str]) -> Tensor:
    """A picture file -> grey float32 (H, W) in [0, 1], as drawn (not yet inverted or centred).

    GanError, one line naming the problem and the fix, for a missing file, a file over
    MAX_BYTES, one PIL cannot read in FORMATS, one larger than MAX_SIDE on a side (checked
    from the header, before decoding) or a decompression bomb.
    """
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    fix = "pass image=<a PNG or JPEG of a digit>"
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise GanError(f"image={path} {what}: {fix}.")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise GanError(
            f"image={path} is {size / 1e6:.1f} MB, over the {MAX_BYTES // 10**6} MB limit: "
            f"a digit needs no more than a small PNG; shrink it or crop it to the digit."
        )
    try:
        with warnings.catch_warnings():  # PIL warns of a likely decompression bomb: refuse it
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width > MAX_SIDE or height > MAX_SIDE:
                    raise GanError(
                        f"image={path} is {width} x {height} pixels, over the {MAX_SIDE} x "
                        f"{MAX_SIDE} limit: scale it down or crop it to the digit."
                    )
                if width < 1 or height < 1:
                    raise GanError(f"image={path} has no pixels: {fix}.")
                image.seek(0)  # an animation: its first frame
                pixels = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255  # (H, W, 4)
    except GanError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise GanError(
            f"image={path} would decode to too many pixels ({first_line(e)}): "
            f"scale it down or crop it to the digit."
        ) from None
    except UnidentifiedImageError:
        raise GanError(
            f"image={path} is not an image PIL can read as {', '.join(FORMATS)}: {fix}."
        ) from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt files
        raise GanError(
            f"image={path} cannot be decoded ({first_line(e)}): the file is truncated or "
            f"corrupt; save it again as PNG."
        ) from None
    return grey(torch.from_numpy(pixels))


def grey(rgba: Tensor) -> Tensor:
    """RGBA float (H, W, 4) in [0, 1] -> grey (H, W) in [0, 1] (ITU-R 601 luma, as PIL's "L").

    Transparent pixels are the background: a drawing on a transparent canvas (a sketchpad
    layer) is composited onto the shade opposite to its strokes', so it reads as strokes on
    a plain background whatever their colour.
    """
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    luma = rgb @ rgb.new_tensor([0.299, 0.587, 0.114])  # (H, W)
    if bool((alpha < 1).any()):
        solid = alpha > 0.5
        strokes_dark = bool(solid.any()) and float(luma[solid].mean()) < 0.5
        background = 1.0 if strokes_dark else 0.0
        luma = alpha * luma + (1 - alpha) * background
    return luma.clamp(0, 1)


def border(image: Tensor) -> Tensor:
    """The outermost ring of pixels of (H, W): (2H + 2W - 4,) (every pixel when that thin)."""
    import torch

    if min(image.shape) <= 2:
        return image.flatten()
    return torch.cat([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def to_mnist(picture: Tensor) -> Tensor:
    """A grey picture (H, W) in [0, 1] -> an MNIST-style digit (28, 28) in [0, 1]: white ink on
    black, its bounding box scaled to fit 20 x 20 keeping its aspect, placed in 28 x 28 with
    its centre of mass at the centre (how MNIST's digits were made).

    A light background (the median of the border is above one half) is inverted. GanError
    when nothing is drawn: no pixel stands out from the background.
    """
    import torch
    import torch.nn.functional as F

    x = picture.float()
    if float(border(x).median()) > 0.5:  # dark ink on a light background: invert
        x = 1 - x
    background = float(border(x).median())
    ink = ((x - background) / max(1 - background, 1e-6)).clamp(0, 1)  # (H, W), 0 = background
    if float(ink.max()) < MIN_CONTRAST:
        raise GanError(
            "the picture is blank: nothing stands out from its background. Draw a digit "
            "(a dark stroke on a light background, or a light one on a dark background)."
        )
    ink = ink / ink.max()  # the strongest stroke is white, as MNIST's are
    rows = torch.nonzero((ink > INK).any(dim=1)).flatten()
    cols = torch.nonzero((ink > INK).any(dim=0)).flatten()
    box = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w): the digit's bounding box
    h, w = box.shape
    scale = MNIST_BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # Antialiased area-like resampling: a thin stroke in a large picture keeps its grey level.
    small = F.interpolate(
        box[None, None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
    )[0, 0].clamp(0, 1)  # (nh, nw)
    if int((small > INK).sum()) < MIN_INK_PIXELS and max(h, w) > MNIST_BOX:
        raise GanError(
            "the picture is nearly blank: only a speck stands out from its background. "
            "Draw a digit with a thicker stroke."
        )
    total = float(small.sum())
    ys = torch.arange(nh, dtype=torch.float32)
    xs = torch.arange(nw, dtype=torch.float32)
    cy = float((small.sum(dim=1) * ys).sum()) / total  # the centre of mass in the box
    cx = float((small.sum(dim=0) * xs).sum()) / total
    # Shift so that the centre of mass lands on the image's centre, (13.5, 13.5) in pixel
    # indices; rounded to whole pixels (MNIST's own centring moved whole pixels too).
    top = round((MNIST_SIZE - 1) / 2 - cy)
    left = round((MNIST_SIZE - 1) / 2 - cx)
    out = torch.zeros(MNIST_SIZE, MNIST_SIZE)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + nh, MNIST_SIZE), min(left + nw, MNIST_SIZE)
    out[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def to_generator_size(digit: Tensor, size: int) -> Tensor:
    """A digit (28, 28) in [0, 1] -> (1, 1, size, size), resized as the data module resizes
    MNIST for 64 px generators (bilinear, no antialias, uint8 pixels)."""
    import torch.nn.functional as F

    pixels = (digit * 255).round() / 255  # the data are uint8: the same quantisation
    x = pixels[None, None]  # (1, 1, 28, 28)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=False, align_corners=False)
    return x.clamp(0, 1)


def prepare(path: str | os.PathLike[str], size: int = MNIST_SIZE) -> Tensor:
    """`read_picture`, `to_mnist` and `to_generator_size`: (1, 1, size, size) in [0, 1]."""
    return to_generator_size(to_mnist(read_picture(path)), size)


# ---- the search --------------------------------------------------------------------------


@dataclass
class Projection:
    """What `search` found, per target: z (T, D), labels (T,) or None, the match's images
    (T, C, H, W) in [0, 1], its pixel MSE (T,), the objective (T,) and, when frames were
    recorded, the path of the kept candidate's latents (T, F, D) from its start."""

    z: Tensor
    labels: Tensor | None
    images: Tensor
    mse: Tensor
    loss: Tensor
    path: Tensor | None


def expected_norm(dist: str, dim: int) -> float:
    """E|z| of the latent distribution, ~ sqrt(dim * E[z_i^2])."""
    return math.sqrt(dim * EXPECTED_SQ.get(dist, 1.0))


def norm_penalty(z: Tensor, dist: str) -> Tensor:
    """The prior's penalty per latent (N,): (|r - 1| - tol)^2 beyond tol, 0 within, where
    r = |z| / E|z| and tol is two standard deviations of r (where ~95% of G's latents lie).

    A penalty on any deviation, (r - 1)^2, pulls hard on few latents (with the default's 8,
    |z| itself varies by +-25%): it would pull a latent G was trained on off its image.
    """
    dim = z.shape[1]
    norm = expected_norm(dist, dim)
    tol = 2 * NORM_STD.get(dist, NORM_STD["normal"]) / norm
    return ((z.norm(dim=1) / norm - 1).abs() - tol).clamp_min(0).pow(2)


def feature_distance(clf: Any, a: Tensor, b_features: Tensor) -> Tensor:
    """|f(a) - f_b|^2 / |f_b|^2 per image: (N,); a (N, 1, H, W) in [0, 1], b_features (N, F).
    Relative, so that its weight means the same whatever the classifier's feature scale."""
    fa = clf.features(a)  # (N, F)
    return (fa - b_features).pow(2).sum(1) / b_features.pow(2).sum(1).clamp_min(1e-6)


def search(
    module: GAN,
    targets: Tensor,
    *,
    steps: int = 300,
    restarts: int = 8,
    seed: int = 0,
    lr: float = 0.1,
    perceptual: float = 0.1,
    prior: float = 1.0,
    classifier: Any = None,
    labels: Sequence[int] | None = None,
    ema: bool | None = None,
    frames: int = 0,
) -> Projection:
    """For each target image (T, C, H, W) in [0, 1], the latent (and class) of G whose image
    is nearest: Adam on `restarts` random latents per target (per class, for a conditional
    G: every class, or those in `labels`), all in one batch; the best by the objective
    (pixel MSE + perceptual x feature distance) is kept.

    `classifier`: the frozen feature network of the perceptual term (None: pixel loss alone).
    `frames` > 0 records that many points of each kept candidate's path (from its start).
    G is used in eval mode and left as it was; its weights get no gradients.
    """
    import torch

    from gan.core.ranges import to_unit_range

    g = module.sampling_generator(ema)
    device = module.device
    output, dist = module.cfg.model.output, str(module.cfg.noise.dist)
    k = int(module.num_classes or 0)
    classes = list(labels) if labels is not None else list(range(k))
    per_target = restarts * max(1, len(classes) if k else 1)  # candidates per target
    t = len(targets)
    targets = targets.to(device).float()  # (T, C, H, W)
    gen = torch.Generator().manual_seed(int(seed))
    z0 = module.sample_z(t * per_target, generator=gen).to(device)  # (T * P, D)
    cand_labels = None
    if k:
        # (T * P,): for each target, `restarts` candidates of each class in turn
        cand_labels = torch.tensor(classes, device=device).repeat_interleave(restarts).repeat(t)
    z = z0.clone().requires_grad_(True)
    target_rep = targets.repeat_interleave(per_target, dim=0)  # (T * P, C, H, W)
    use_features = classifier is not None and perceptual > 0 and targets.shape[1] == 1
    if use_features:
        classifier = classifier.to(device)
        with torch.no_grad():
            target_features = classifier.features(target_rep)  # (T * P, F)
    opt = torch.optim.Adam([z], lr=lr)
    record = (
        sorted({round(i * steps / max(frames - 1, 1)) for i in range(frames)}) if frames else []
    )
    path: list[Tensor] = []

    def objective(images: Tensor) -> tuple[Tensor, Tensor]:
        """images (N, C, H, W) in [0, 1] -> (objective (N,), pixel MSE (N,))."""
        mse = (images - target_rep).pow(2).flatten(1).mean(1)  # (N,)
        if not use_features:
            return mse, mse
        return mse + perceptual * feature_distance(classifier, images, target_features), mse

    was_training = g.training
    grads = [p.requires_grad for p in g.parameters()]
    g.eval()
    g.requires_grad_(False)  # gradients reach z alone
    try:
        for step in range(steps + 1):
            if step in record:
                path.append(z.detach().clone())
            if step == steps:
                break
            # A cosine decay to 1% of lr: large moves first, then settling into the minimum.
            for group in opt.param_groups:
                group["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            raw = g(z, cand_labels) if k else g(z)  # (N, C, H, W) in G's range
            loss, _ = objective(to_unit_range(raw.float(), output))
            if prior > 0:  # keeps z at the norms G's latents have: off them, G was never trained
                loss = loss + prior * norm_penalty(z, dist)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # each candidate's loss depends on its own z alone
            opt.step()
            if dist == "uniform":
                with torch.no_grad():
                    z.clamp_(-1, 1)  # U[-1, 1]'s support
        with torch.no_grad():
            zf = z.detach()
            raw = g(zf, cand_labels) if k else g(zf)  # (T * P, C, H, W): one batch, as searched
            images = to_unit_range(raw.float(), output)
            score, mse = objective(images)
    finally:
        g.train(was_training)
        for p, r in zip(g.parameters(), grads):
            p.requires_grad_(r)
    best = score.view(t, per_target).argmin(dim=1)  # (T,)
    pick = torch.arange(t, device=device) * per_target + best  # (T,) into the candidates
    return Projection(
        z=zf[pick].cpu(),
        labels=cand_labels[pick].cpu() if k else None,
        images=images[pick].cpu(),
        mse=mse[pick].cpu(),
        loss=score[pick].cpu(),
        path=torch.stack([p[pick] for p in path], dim=1).cpu() if path else None,  # (T, F, D)
    )


def render_path(module: GAN, found: Projection, ema: bool | None = None) -> Tensor:
    """The images along the first target's recorded path: (F, C, H, W) in [0, 1]."""
    if found.path is None:
        raise ValueError("the search recorded no path: pass frames > 0")
    z = found.path[0]  # (F, D)
    labels = None if found.labels is None else found.labels[:1].repeat(len(z))  # (F,)
    return generate_images(module, z, labels, ema)


# ---- the classifier ----------------------------------------------------------------------


def load_classifier(module: GAN) -> tuple[Any, str | None]:
    """The project classifier of the checkpoint's data (its metrics.root, split and data set),
    when it is cached; else (None, a one-line note saying the search is pixel-only and how to
    make one). Never trains one: that takes minutes and the data."""
    from gan.metrics.classifier import load_or_train

    m = module.cfg.metrics
    root, split = str(m.root), str(m.split)
    dataset = str(getattr(m, "dataset", "mnist") or "mnist")
    how = f"python -m gan.classifier data.root={root} data.split={split}"
    how += "" if dataset == "mnist" else f" data.dataset={dataset}"
    pixel_only = "the search uses the pixel loss alone and no labels are reported"
    if int(module.cfg.model.channels) != 1:
        return None, f"note: the classifier scores one-channel images; {pixel_only}."
    try:
        path = classifier_file(root, split, dataset)
    except GanError:
        return None, (
            f"note: the checkpoint's data ({dataset}, split {split}, root {root}) is not on "
            f"disk here, so no classifier: {pixel_only}."
        )
    if not path.is_file():
        return None, f"note: no cached classifier for the checkpoint's data ({how}): {pixel_only}."
    try:
        return load_or_train(root, split, False, dataset=dataset, progress_bar=False), None
    except (GanError, OSError, RuntimeError) as e:
        return None, f"note: the classifier did not load ({first_line(e)}): {pixel_only}."


def classify(clf: Any, images: Tensor) -> list[int]:
    """The classifier's label of each image (N, 1, H, W) in [0, 1]."""
    import torch

    with torch.no_grad():
        return clf(images.to(clf.device)).argmax(dim=1).tolist()


# ---- pictures of the result --------------------------------------------------------------


def side_by_side(target: Tensor, match: Tensor, scale: int = 4) -> Tensor:
    """target (1, H, W) and match (C, H, W) in [0, 1] -> one picture (3, H', W') in [0, 1]:
    the two side by side on a grey frame, upscaled `scale` times (28 px is tiny on screen)."""
    import torch
    from torchvision.utils import make_grid

    pair = torch.stack([target.expand_as(match), match])  # (2, C, H, W)
    grid = make_grid(pair, nrow=2, padding=2, pad_value=0.5)  # (3, H', W')
    return grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def write_gif(target: Tensor, frames: Tensor, path: Path, ms_per_frame: int = 120) -> None:
    """A GIF of the search: each frame (C, H, W) beside the target, the last one held longer."""
    from PIL import Image

    from gan.utils.files import atomic_write

    pictures = []
    for frame in frames:
        grid = side_by_side(target, frame, scale=3)  # (3, H', W') in [0, 1]
        pixels = (grid * 255).round().byte().permute(1, 2, 0).numpy()
        pictures.append(Image.fromarray(pixels).convert("P"))
    durations = [ms_per_frame] * (len(pictures) - 1) + [1500]
    atomic_write(
        path,
        lambda tmp: pictures[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=durations,
            loop=0,
        ),
    )


# ---- the explorer's Project tab -----------------------------------------------------------


class Projector:
    """The explorer's projection: a drawn (or uploaded) digit -> the nearest image G draws,
    the search's path, and the latent found. The classifier of the perceptual term loads on
    first use and is kept (None, with a note, when the checkpoint's data has none cached)."""

    def __init__(self, module: GAN, ema: bool | None = None) -> None:
        self.module, self.ema = module, ema
        self.lock = threading.Lock()  # gradio serves requests on several threads
        self.loaded = False
        self.classifier: Any = None
        self.note: str | None = None

    def _classifier(self) -> Any:
        with self.lock:
            if not self.loaded:
                self.classifier, self.note = load_classifier(self.module)
                self.loaded = True
        return self.classifier

    def find(
        self,
        picture: Tensor,
        steps: int,
        restarts: int,
        choice: str | None = None,
        seed: int = 0,
        frames: int = 12,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], str]:
        """Search G for `picture` (grey (H, W) in [0, 1], as drawn); returns the prepared
        digit beside the match (a picture), the strip of the search from its random start
        to the found z, the found {"z": [...], "label": class or -1} and a Markdown line."""
        import torch

        module = self.module
        if int(module.cfg.model.channels) != 1:
            raise GanError("projection finds one-channel digits; this G draws colour images.")
        target = to_generator_size(to_mnist(picture), int(module.cfg.model.img_size))
        clf = self._classifier()
        k = num_classes(module)
        labels = [int(choice)] if k and choice not in (None, PER_ROW) else None
        found = search(
            module,
            target,
            steps=steps,
            restarts=restarts,
            seed=seed,
            classifier=clf,
            labels=labels,
            ema=self.ema,
            frames=frames,
        )
        pair = to_picture(torch.cat([target.expand_as(found.images), found.images]), 2)
        walk = to_picture(render_path(module, found, self.ema), frames)
        label = int(found.labels[0]) if found.labels is not None else -1
        line = f"Pixel error (MSE, images in [0, 1]): **{float(found.mse[0]):.4f}**."
        if label >= 0:
            line += f" G's class: **{label}**."
        if clf is not None:
            drawn, matched = classify(clf, target)[0], classify(clf, found.images)[0]
            line += f" The classifier reads your digit as **{drawn}**, the match as **{matched}**."
        elif self.note:
            line += " " + self.note
        return pair, walk, {"z": found.z[0].tolist(), "label": label}, line


def found_latent(module: GAN, found: Any) -> tuple[Tensor, int | None]:
    """The latent (1, D) and class (None: unconditional) of a projection's result, checked;
    GanError when there is none yet or it does not fit this G."""
    import torch

    if not isinstance(found, dict) or not isinstance(found.get("z"), list):
        raise GanError("nothing found yet: draw a digit and press *find it in G* first.")
    z = torch.tensor(found["z"], dtype=torch.float32)[None]  # (1, D)
    if z.shape[1] != int(module.cfg.noise.dim) or not bool(torch.isfinite(z).all()):
        raise GanError("the found latent does not fit this generator: find the digit again.")
    label = found.get("label")
    k = num_classes(module)
    return z, (int(label) if k and isinstance(label, int) and 0 <= label < k else None)


def grid_with_found(
    module: GAN, found: Any, seed: int, side: int, ema: bool | None = None
) -> np.ndarray:
    """The sample grid of `seed` with G(found z) in its first cell (its class, for a
    conditional G; the other cells one row per class)."""
    import torch

    z0, label = found_latent(module, found)
    side = int(side)
    n = side * side
    z = torch.cat([z0, latents(module, seed, n)[1:]])  # (n, D)
    labels = class_labels(module, PER_ROW, n, side)
    if labels is not None and label is not None:
        labels[0] = label
    return to_picture(generate_images(module, z, labels, ema), side)


def walk_from_found(
    module: GAN,
    found: Any,
    seed_b: int,
    steps: int,
    spherical: bool,
    position: float,
    ema: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`interpolation`, starting from the found latent (in its class) instead of a seed's."""
    import torch

    from gan.core.sampling import lerp, slerp, walk

    z0, label = found_latent(module, found)
    z1 = latents(module, seed_b, 1)  # (1, D)
    steps = int(steps)
    z = walk(z0, z1, steps, spherical)  # (steps, D)
    here = (slerp if spherical else lerp)(z0, z1, torch.tensor([float(position)])).flatten(0, 1)
    labels = None if label is None else torch.full((steps + 1,), label, dtype=torch.long)
    images = generate_images(module, torch.cat([z, here]), labels, ema)  # (steps + 1, C, H, W)
    return to_picture(images[:steps], steps), to_picture(images[steps:], 1)


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
