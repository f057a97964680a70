"""A picture file read safely and prepared as MNIST's digits are: what projection searches for.

Reading (`read_picture`: PIL alone, in FORMATS, within MAX_BYTES and MAX_SIDE), grey
(`grey`), MNIST's centring (`to_mnist`) and a generator's size (`to_generator_size`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from gan.utils.errors import GanError, first_line

if TYPE_CHECKING:  # torch loads only when a picture is read
    from torch import Tensor

MAX_BYTES = 20 * 10**6  # a picture file larger than this is refused before it is opened
MAX_SIDE = 4096  # pixels along either side, read from the header before decoding
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # what PIL may decode: all in-process
MNIST_SIZE, MNIST_BOX = 28, 20  # MNIST's digits: a 20 x 20 box in a 28 x 28 image
INK = 0.1  # a pixel this far (in [0, 1]) from the background belongs to the digit
MIN_CONTRAST = 0.1  # a picture whose brightest ink is nearer the background than this is blank
MIN_INK_PIXELS = 3  # fewer pixels of ink than this (at 28 x 28 scale) is nothing drawn


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
