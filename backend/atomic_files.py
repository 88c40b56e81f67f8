"""Files written under a temporary name and renamed into place.

A reader that finds a file under its final name may trust it is whole: an interrupted write (a
full disk, a killed process, an exception while serialising) leaves at most a `*.partial` file
beside it, never a truncated file under the real name. `os.replace` is atomic on one file system,
and the temporary file sits in the same folder as its target so it is on the same one.

Plain Python, so the JSON files that need no torch (vocabulary.json) can use it too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

PARTIAL_SUFFIX = ".partial"


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary_path)`, then move the result onto `path`; on failure remove it."""
    path = Path(path)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda partial: partial.write_text(text))


def copy_atomically(source: Path, path: Path) -> Path:
    return write_atomically(path, lambda partial: shutil.copyfile(source, partial))
