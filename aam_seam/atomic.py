"""Files written whole or not at all, on both sides of the seam.

The new content goes to a temporary file in the target's folder (so the final rename stays on
one filesystem and is atomic), is flushed to disk, and only then replaces the target: a full
disk, a size limit or a killed process leaves the earlier file as it was, and no half-written
file ever carries the real name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

PARTIAL_SUFFIX = ".part"  # what an interrupted write may leave beside its target, never under its name


def _umask() -> int:
    mask = os.umask(0o022)  # reading the mask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike, write: Callable[[object], object],
                     mode: str = "wb") -> Path:
    """Call `write(file)` on a temporary file opened with `mode`, then move it onto `path`."""
    def through_file(partial: Path) -> None:
        with open(partial, mode, encoding=None if "b" in mode else "utf-8") as fh:
            write(fh)

    return write_through_path(path, through_file)


def write_through_path(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary_path)` (for writers that only take a path, such as safetensors'),
    then move the result onto `path`."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    os.close(fd)
    partial = Path(name)
    try:
        # mkstemp makes files private (0600); results are shared (render nodes, other artists),
        # so they get the permissions any new file of this user gets
        os.chmod(partial, 0o666 & ~_umask())
        write(partial)
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomically(path, lambda fh: fh.write(data))


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    return write_atomically(path, lambda fh: fh.write(text), mode="w")
