"""User-facing errors.

A `GanError` carries a message that names the problem and the fix. The command-line
entries catch it and print the message alone, with no traceback (set
`HYDRA_FULL_ERROR=1` to see one).
"""


class GanError(Exception):
    """A problem with the user's input or environment, explained in plain words."""
