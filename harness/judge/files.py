"""Writing what the harness reports (pages, ledgers, traces): the file is written beside its
destination and renamed into place, so a planted symlink is replaced, never written through
(reliability-probe-2.md row 57), and a crash leaves the old file or the new one, not half of
either. Problems are one line naming the path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written; str() is one line."""


def check_target(path: str | Path) -> Path:
    """Refuse, before any work is done, a path write_file could not write: a directory, or a
    file in a directory that does not exist. Returns the parent directory."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        raise OutputError(f"{p} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {p}: the directory {parent} does not exist")
    return parent


def write_file(path: str | Path, data: str | bytes, mode: int = 0o644) -> Path:
    p = Path(path)
    parent = check_target(p)
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{p.name[:40]}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {p}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {p}: {e.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
