"""report.png for `gan.report`: a score against the first swept value, with error bars."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from gan.tools.report_scores import number
from gan.utils.files import atomic_write

Point = tuple[str, str, float, float | None]  # x as swept, series, y, error bar (or None)


def natural(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def log_x(key: str, values: Sequence[float]) -> bool:
    """A log axis for a learning rate (`lr`, `optimizer.g.lr`) or positive values over a decade."""
    if not values or min(values) <= 0:
        return False
    return key.endswith("lr") or max(values) / min(values) > 10


def plot(path: Path, points: Sequence[Point], x_key: str, y_label: str, title: str) -> str | None:
    """y against the first swept value, a series per combination of the rest; the x scale."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    if not points:
        return None
    xs = [p[0] for p in points]
    numbers = [number(x) for x in xs]
    numeric = all(n is not None for n in numbers)
    order = list(dict.fromkeys(sorted(xs, key=natural)))
    if not numeric:  # categories, in natural order
        numbers = [float(order.index(x)) for x in xs]
    bars = any(p[3] is not None for p in points)
    series: dict[str, list[tuple[float, float, float]]] = {}
    for (_, label, y, err), x in zip(points, numbers):
        series.setdefault(label, []).append((x, y, err or 0.0))

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, xye in series.items():
        x, y, err = zip(*sorted(xye))
        style = "o-" if numeric else "o"
        ax.errorbar(x, y, yerr=err if bars else None, fmt=style, capsize=3, label=label or None)
    if numeric and log_x(x_key, numbers):
        ax.set_xscale("log")
    elif not numeric:
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small", title=title, title_fontsize="small")
    fmt = path.suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    return ax.get_xscale()
