"""Writing a plan to disk: files with their modes, relative symlinks, and device nodes that are
real character devices only where the host kernel serves nothing at that number."""

from __future__ import annotations

import os
import stat

from .plan import Group


def devnode_kind() -> str:
    """Device nodes are real (harmless) character devices as root, regular files otherwise."""
    return "char" if os.geteuid() == 0 else "file"


class TreeWriter:
    """Writes plan groups under a root directory; creates parents on demand."""

    def __init__(self, root: str, devnodes: str) -> None:
        self.root = root
        self.devnodes = devnodes
        self.made: set[str] = set()
        self.fallbacks: list[str] = []

    def _dir(self, rel_dir: str) -> None:
        if rel_dir in self.made or not rel_dir:
            return
        os.makedirs(os.path.join(self.root, rel_dir), exist_ok=True)
        while rel_dir and rel_dir not in self.made:
            self.made.add(rel_dir)
            rel_dir = os.path.dirname(rel_dir)

    def write(self, g: Group) -> None:
        root = self.root
        for d in sorted(g.dirs):
            self._dir(d)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        for path, (data, mode) in g.files.items():
            self._dir(os.path.dirname(path))
            full = os.path.join(root, path)
            fd = os.open(full, flags, mode)
            try:
                if data:
                    os.write(fd, data)
            finally:
                os.close(fd)
            if mode != 0o644:  # umask may have masked the mode
                os.chmod(full, mode)
        for path, target in g.links.items():
            self._dir(os.path.dirname(path))
            full = os.path.join(root, path)
            if os.path.lexists(full):
                os.unlink(full)
            os.symlink(target, full)
        for path, (major, minor) in g.nodes.items():
            self._dir(os.path.dirname(path))
            self.devnode(path, major, minor)

    def devnode(self, path: str, major: int, minor: int) -> None:
        full = os.path.join(self.root, path)
        if os.path.lexists(full):
            os.unlink(full)
        if self.devnodes == "char" and not host_devnum_in_use(major, minor):
            os.mknod(full, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        else:
            if self.devnodes == "char":
                self.fallbacks.append(f"{path} ({major}:{minor} is a live device on this host)")
            fd = os.open(full, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, f"{major}:{minor}\n".encode())
            os.close(fd)


def host_devnum_in_use(major: int, minor: int) -> bool:
    """A fake node must never reach real hardware: refuse numbers the host kernel serves.
    Any minor of a registered major counts as live, except for misc (10), whose minors are
    registered one by one."""
    if os.path.exists(f"/sys/dev/char/{major}:{minor}"):
        return True
    return major != 10 and major in _registered_char_majors()


def _registered_char_majors() -> set[int]:
    try:
        text = open("/proc/devices").read()
    except OSError:
        return set()
    block = text.split("Block devices:")[0]
    return {int(line.split()[0]) for line in block.splitlines()[1:] if line.strip() and line.split()[0].isdigit()}
