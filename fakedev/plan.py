"""A rendering plan: every file, symlink, device node and directory of a tree, grouped by the
device that owns it (so a mutation can add or remove one device's entries). Planning is pure;
writer.py puts a plan on disk."""

from __future__ import annotations

from dataclasses import dataclass, field

from .layout import rel

NODE = "node"  # owner of machine-wide entries


@dataclass
class Group:
    """Entries one owner contributes. Paths are relative to the tree root."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, tuple[int, int]] = field(default_factory=dict)  # char devices
    dirs: set[str] = field(default_factory=set)  # directories the owner creates (removed with it)


class Plan:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self._g: Group = self.group(NODE)

    def group(self, owner: str) -> Group:
        self._g = self.groups.setdefault(owner, Group())
        return self._g

    def file(self, path: str, content: str | bytes, mode: int = 0o444) -> None:
        self._g.files[path] = (content.encode() if isinstance(content, str) else content, mode)

    def link(self, path: str, target: str) -> None:
        """A symlink at `path` pointing at tree-relative `target`, stored relative like sysfs does."""
        self._g.links[path] = rel(path, target)

    def raw_link(self, path: str, target: str) -> None:
        """A symlink with its target text exactly as given (shapes the kernel writes by hand)."""
        self._g.links[path] = target

    def devnode(self, path: str, major: int, minor: int) -> None:
        self._g.nodes[path] = (major, minor)

    def owns_dir(self, path: str) -> None:
        self._g.dirs.add(path)
