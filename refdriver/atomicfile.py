"""Atomic file writes relative to a directory descriptor.

Why not `Path.write_text` + `os.replace`: under umockdev's preload (`--sysfs-root`) every open of a
path below /dev is taken for a device node, and umockdev leaks a socket on each such open that is
not one. The harness keeps its state in /dev/shm, so a driver writing CDI specs and checkpoints
there by absolute path lost one descriptor per prepare. Names relative to a directory descriptor
(opened once per directory) are left alone by umockdev.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_dirs: dict[Path, int] = {}
_lock = threading.Lock()


def _dir_fd(directory: Path) -> int:
    with _lock:
        fd = _dirs.get(directory)
        if fd is None:
            directory.mkdir(parents=True, exist_ok=True)
            fd = _dirs[directory] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return fd


def write(path: Path, text: str) -> None:
    """Write `path` atomically (a hidden temporary beside it, then rename)."""
    d = _dir_fd(path.parent)
    tmp = f".{path.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=d)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    os.replace(tmp, path.name, src_dir_fd=d, dst_dir_fd=d)


def remove(path: Path) -> None:
    try:
        os.unlink(path.name, dir_fd=_dir_fd(path.parent))
    except FileNotFoundError:
        pass
