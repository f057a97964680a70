"""User-facing errors, and the checkpoint reader that the entries share.

A `GanError` carries a message that names the problem and the fix. The command-line
entries catch it and print the message alone, with no traceback (set
`HYDRA_FULL_ERROR=1` to see one).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any


class GanError(Exception):
    """A problem with the user's input or environment, explained in plain words."""


def first_line(err: BaseException) -> str:
    """`Type: first line of the message`, cut to 100 characters: enough to name the cause."""
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 100 else line[:100].rstrip() + "…"
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def read_checkpoint(
    path: Path, label: str, hint: str, corrupt_hint: str | None = None
) -> dict[str, Any]:
    """The dict in a Lightning checkpoint of this project's GAN; GanError otherwise.

    `label` names the file in messages (`ckpt_path=<path>`), `hint` says what to pass
    instead and `corrupt_hint` what to do about a truncated file (default: `hint`).
    Checks, in order: the file can be read; torch.save wrote it; torch.load reads it with
    weights_only (a checkpoint is data: nothing in it runs code); it holds
    `state_dict` and `hyper_parameters.model`. The caller checks that the path exists.
    """
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise GanError(f"cannot read {label} ({e.strerror or e}). {hint}.") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip, or a legacy pickle
        raise GanError(
            f"{label} is not a checkpoint: it is not a file written by torch.save "
            f"(a text file?). {hint}."
        )
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a pickle of objects beyond tensors and plain values
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" such as {found.group(1)}" if found else ""
        raise GanError(
            f"{label} is not a checkpoint of this project: it holds Python objects{what}, "
            f"which are not loaded (unpickling them could run code). {hint}."
        ) from None
    except Exception as e:  # truncated or corrupt: all the same to the user
        raise GanError(
            f"{label} is not a readable checkpoint: torch.load failed ({first_line(e)}): the "
            f"file is truncated or corrupt (a copy cut short?). {corrupt_hint or hint}."
        ) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if (
        isinstance(ckpt, dict)
        and "state_dict" in ckpt
        and isinstance(hparams, dict)
        and isinstance(hparams.get("model"), dict)
    ):
        return ckpt
    if not isinstance(ckpt, dict):
        what = f"a {type(ckpt).__name__}"
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        what = "a plain state_dict (weights without the config to build the model)"
    elif "state_dict" in ckpt:
        what = "a Lightning checkpoint of another module (no hyper_parameters.model)"
    else:
        keys = ", ".join(map(str, list(ckpt)[:4])) or "nothing"
        what = f"a dict with keys {keys}, not a Lightning checkpoint"
    raise GanError(f"{label} is not a checkpoint of this project: it is {what}. {hint}.")
