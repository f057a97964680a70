"""What a run prints: quiet by default, and one short table at the end.

`quiet()` keeps the console to what a user acts on: no Lightning tips or machine lines, no
third-party deprecation warnings, no warnings about short runs, and W&B without its
banners. `verbose=true` (or HYDRA's `hydra.verbose=true`) keeps all of it.

`summary()` is the end-of-run table: the final and best `val/fid` against its floor,
precision, recall, coverage (and label accuracy, or modes and KL, where the run has them),
seconds, the run folder, and the next commands.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import warnings
from collections.abc import Mapping
from pathlib import Path

# Warnings that say nothing a user of this project can act on (message regexes).
NOISE = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning on newer torch
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"Checkpoint directory .* exists and is not empty",  # a resume into its own folder
    r"Experiment logs directory .* exists and is not empty",
)
# Lightning's INFO lines: GPU/TPU available, tips, "Seed set to", "`Trainer.fit` stopped".
CHATTY = ("lightning.pytorch", "lightning.fabric", "lightning")


def quiet(verbose: bool = False) -> None:
    """Silence the lines above, unless `verbose`."""
    if verbose:
        return
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("WANDB_SILENT", "true")  # no banners; the scores are in our table


def _num(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def summary(
    out: Path,
    status: str,
    seconds: float,
    final: Mapping[str, float],
    best: tuple[float, int] | None = None,
) -> str:
    """The end-of-run table (plain text, a few lines) from the scores in result.json."""
    fid, floor = final.get("val/fid"), final.get("val/fid_floor")
    lines = [f"run {status} in {seconds:.0f} s: {out}"]
    if fid is not None:
        ratio = f" = {fid / floor:.2g}x the floor" if floor and floor > 0 else ""
        where = f"; best {_num(best[0])} at epoch {best[1]}" if best else ""
        floor_text = f"floor {_num(floor)}{ratio}" if floor is not None else "no floor"
        lines.append(f"  val/fid     {_num(fid):>8}   ({floor_text}{where})")
        scores = [
            ("precision", final.get("val/precision")),
            ("recall", final.get("val/recall")),
        ]
        text = "   ".join(f"{k} {_num(v)}" for k, v in scores if v is not None)
        if final.get("val/coverage") is not None:
            text += f"   classes covered {final['val/coverage']:.0f}"
        lines.append("  " + text)
        extra = [  # what a conditional or Stacked MNIST run is judged by
            f"{name} {_num(final[key], spec)}"
            for key, name, spec in (
                ("val/label_accuracy", "label accuracy", ".3f"),
                ("val/modes", "modes", ".0f"),
                ("val/kl", "KL", ".3f"),
            )
            if final.get(key) is not None
        ]
        if extra:
            lines.append("  " + "   ".join(extra))
    else:
        lines.append("  no scores (metrics.enabled=false, or no validation ran)")
    run = shlex.quote(str(out))
    lines += [
        "next:",
        f"  python -m gan.sample ckpt={run}      # a grid of samples beside the checkpoint",
        f"  python -m gan.app ckpt={run}         # explore it in the browser",
    ]
    return "\n".join(lines)
