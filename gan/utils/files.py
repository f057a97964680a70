"""Small file utilities, each stated once: atomic writes, the writable-folder check, and
where a run keeps its checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gan.utils.errors import GanError

if TYPE_CHECKING:
    pass


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], durable: bool = False
) -> Path:
    """Write `path` through `write(tmp)` on a temporary file beside it, then rename.

    A reader (or a crash) sees the old file or the new one, never half of one: that
    matters for checkpoints and for images rewritten every epoch such as `loss.png`. Any
    failure, an interrupt included, removes the temporary file and leaves `path` as it was.
    `durable` also fsyncs the file and the folder, so the rename survives a power cut.

    The temporary file is made by `tempfile.mkstemp` (O_CREAT | O_EXCL, a random name
    `.<name>.<random>.tmp`): a file or symlink planted at a predictable name is never
    opened, so nothing can redirect the write elsewhere, and concurrent writers (a sweep's
    jobs filling the classifier cache) each get their own. It gets the mode a plain
    `open` would give (0666 less the umask), not mkstemp's 0600. The rename replaces
    `path` itself: a symlink at `path` is replaced, its target left alone.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        write(tmp)
        if not tmp.is_symlink():  # a writer that replaced the file (safetensors) made it 0600
            os.chmod(tmp, 0o666 & ~_umask())
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(folder)
        _remove_stale_temps(path)
    return path


def _umask() -> int:
    """This process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _remove_stale_temps(path: Path) -> None:
    """Remove the temporary files of `path` that killed saves left (durable writes only).

    A durable file (a checkpoint) has one writer, so any other `.<name>.<random>.tmp` is
    a leftover of a save that a SIGKILL cut short; `.<name>.tmp` is the fixed name older
    versions used. Only entries of exactly these names go; unlink removes a symlink itself.
    """
    own = re.compile(rf"\.{re.escape(path.name)}(\.[A-Za-z0-9_]{{8}})?\.tmp")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if own.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


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


RUN_FILES = ("config.yaml", "result.json", "checkpoints")  # what shows a run wrote a folder


def run_files(folder: str | os.PathLike[str]) -> list[str]:
    """The entries of RUN_FILES in `folder`: a run of `gan.train` wrote there (or is writing)."""
    return [n for n in RUN_FILES if os.path.lexists(Path(folder) / n)]
