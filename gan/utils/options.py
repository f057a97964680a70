"""key=value command-line options, checked against a dataclass schema: the one parser of
`gan.sample`, `gan.app`, `gan.export`, `gan.report` and `gan.bench` (Hydra style, without
Hydra's run folders), and the check of the truncation ψ that sample, export and the app share."""

from __future__ import annotations

import difflib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan.utils.errors import GanError

CKPT_HINT = "Pass ckpt=<run>/checkpoints/last.ckpt, a file written by `python -m gan.train`"


def parse_options(argv: Sequence[str], schema: type, example: str) -> tuple[DictConfig, set[str]]:
    """key=value arguments -> a typed node of the dataclass `schema` (GanError on a mistake).

    Unknown keys get a did-you-mean; `example` is a command line shown when an argument
    is not key=value. Returns the node and the keys given. Checks beyond the types are the
    caller's, but for a schema with `ckpt`, which must be given.
    """
    options = tuple(schema.__dataclass_fields__)
    given: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        try:  # a byte that is not UTF-8 arrives as a lone surrogate (surrogateescape)
            arg.encode("utf-8")
        except UnicodeEncodeError:
            try:
                data = os.fsencode(arg)  # the bytes as given: b"b\xff.png"
            except UnicodeEncodeError:  # a surrogate that no byte stands for
                data = arg.encode("utf-8", "backslashreplace")
            raw = data.decode("utf-8", "backslashreplace")  # b\xff.png
            raise GanError(
                f"{raw} is not valid UTF-8 (the bytes shown as \\x..): options are read as "
                f"UTF-8 text. Rename the file or folder to a UTF-8 name, and pass that."
            ) from None
        if not sep or not key:
            raise GanError(
                f"argument {arg!r} is not key=value: write e.g. `{example}` "
                f"(options: {', '.join(options)})."
            )
        if key not in options:
            close = difflib.get_close_matches(key, options, n=1)
            guess = f"did you mean {close[0]}=? " if close else ""
            raise GanError(f"unknown option {key!r}: {guess}the options are {', '.join(options)}.")
        given[key] = value
    cfg = OmegaConf.structured(schema)
    for key, value in given.items():
        try:  # one at a time, so the message names the culprit
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{key}={value}"]))
        except OmegaConfBaseException as e:
            kind = schema.__dataclass_fields__[key].type
            raise GanError(f"{key}={value!r} is invalid: it must be of type {kind}.") from e
    if "ckpt" in options and (OmegaConf.is_missing(cfg, "ckpt") or not cfg.ckpt):
        raise GanError(f"no checkpoint given (ckpt=...). {CKPT_HINT}.")
    return cfg, set(given)


def check_truncation(psi: object, key: str = "truncation") -> float:
    """The truncation trick's ψ (`truncation=`, gan.core.sampling.truncate) as a float: a
    finite number >= 0 (text such as "0.7" is read as one). Anything else is a GanError of
    one line naming `key` and the fix. Here, torch-free, so a bad ψ fails before torch loads."""
    value: object = psi
    if isinstance(psi, str):
        try:
            value = float(psi)
        except ValueError:
            value = None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value >= 0:  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    raise GanError(
        f"{key}={psi!r} is invalid: the truncation ψ must be a number >= 0 (1 leaves the "
        f"latents as drawn, 0 draws G(mean latent) for every one). Fix it with {key}=0.7, "
        f"or drop it for 1."
    )


T = TypeVar("T")


def command(argv: Sequence[str] | None, doc: str | None, run: Callable[[list[str]], T]) -> T | None:
    """The frame of a `python -m gan.<tool> key=value ...` entry: `--help` prints `doc`;
    `run(args)` does the work; a GanError prints one `error: ...` line and exits 1."""
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help", "help") for a in args):
        print(doc)
        return None
    try:
        return run(args)
    except GanError as err:
        raise SystemExit(f"error: {err}") from None
