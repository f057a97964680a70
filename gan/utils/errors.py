"""User-facing errors, and the checkpoint reader that the entries share.

A `GanError` carries a message that names the problem and the fix. The command-line
entries catch it and print the message alone, with no traceback (set
`HYDRA_FULL_ERROR=1` to see one).
"""

from __future__ import annotations


class GanError(Exception):
    """A problem with the user's input or environment, explained in plain words."""


def first_line(err: BaseException) -> str:
    """`Type: first line of the message`, cut to 100 characters: enough to name the cause."""
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 100 else line[:100].rstrip() + "…"
    return f"{type(err).__name__}: {line}" if line else type(err).__name__
