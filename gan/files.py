"""Small file utilities, each stated once: atomic writes, the writable-folder check, and
where a run keeps its checkpoints.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gan.errors import GanError

if TYPE_CHECKING:
    import lightning as L


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], durable: bool = False
) -> Path:
    """Write `path` through `write(tmp)` on a temporary file beside it, then rename.

    A reader (or a crash) sees the old file or the new one, never half of one: that
    matters for checkpoints and for images rewritten every epoch such as `loss.png`. Any
    failure, an interrupt included, removes the temporary file and leaves `path` as it was.
    `durable` also fsyncs the file and the folder, so the rename survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Checkpoints have one writer (rank 0): a fixed name, so the temp file a SIGKILL
    # leaves behind is overwritten by the next save. Other files may have several
    # writers at once (a sweep's jobs filling the classifier cache): one name each.
    tmp = path.with_name(f".{path.name}.tmp" if durable else f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported on this file system: the rename is still atomic
    finally:
        os.close(fd)


def check_writable(folder: str | os.PathLike[str], key: str = "hydra.run.dir") -> None:
    """GanError unless `folder` is, or can be created as, a folder this process can write.

    Tries it for real (a probe folder, removed at once) in the deepest existing parent, so
    every way of failing counts: a file in the way, permissions, a read-only file system,
    or a place where no folder can be made at all (/proc). Nothing is left behind. `key`
    is the setting that chooses the folder, named in the message as the fix.
    """
    path = Path(folder).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folders we would create start below this one
    fix = f"Pick another folder: {key}=/path/to/writable/folder."
    if not existing.is_dir():
        raise GanError(
            f"cannot create the output folder {path}: {existing} is a file, not a folder. {fix}"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gan-probe-", dir=existing))
    except OSError as e:
        why = (
            "is not writable (permissions, or a read-only file system)"
            if isinstance(e, PermissionError) or e.errno == 30  # EROFS
            else f"does not accept new folders ({e.strerror or e})"
        )
        raise GanError(f"cannot write the output folder {path}: {existing} {why}. {fix}") from None


LIGHTNING_NAMES = ("last", "best", "hpc", "registry")  # checkpoints Lightning finds itself


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint path as given, or a run folder's `checkpoints/last.ckpt`.

    `<run>` and `<run>/checkpoints` both resolve to `<run>/checkpoints/last.ckpt` when it
    exists; anything else is returned as is, for the caller's own checks.
    """
    path = Path(path).expanduser()
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if path.is_dir() and candidate.is_file():
            return candidate
    return path


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where this run's checkpoints go: ModelCheckpoint's folder, else `<run>/checkpoints`."""
    cb = trainer.checkpoint_callback
    if cb is not None and getattr(cb, "dirpath", None):
        return Path(cb.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"
