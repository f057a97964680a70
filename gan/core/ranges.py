"""The image value range, stated once: G's output range for `model.output`, and the
conversions to and from it.

    tanh     images in [-1, 1] (the DCGAN convention)
    sigmoid  images in [0, 1] (the Keras tutorial's)

The data are handed to D in G's range (`from_uint8`), the metrics and image files take
[0, 1] (`to_unit_range`).
"""

from __future__ import annotations

from torch import Tensor

RANGES: dict[str, tuple[float, float]] = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}


def value_range(output: str) -> tuple[float, float]:
    """G's image range for `model.output` ("tanh" or "sigmoid")."""
    if output not in RANGES:
        raise ValueError(f"output={output!r}: expected one of {', '.join(RANGES)}")
    return RANGES[output]


def to_unit_range(images: Tensor, output: str) -> Tensor:
    """Images in G's output range -> [0, 1], clamped."""
    lo, hi = value_range(output)
    return ((images - lo) / (hi - lo)).clamp(0, 1)


def from_uint8(images: Tensor, output: str) -> Tensor:
    """uint8 pixels -> float32 in G's output range (a new tensor)."""
    lo, hi = value_range(output)
    return images.float().div_(255.0 / (hi - lo)).add_(lo)  # tanh: x / 127.5 - 1
