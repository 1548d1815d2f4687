"""Where backends keep state, and the names that become paths there.

Every name a user hands in that becomes a file or directory (cluster, node, profile) is a
DNS-1123 label, checked before anything is created or deleted, as Kubernetes and kind check
theirs; and state paths are proven to lie inside the state root before they are touched."""

from __future__ import annotations

import os
import re
from pathlib import Path

LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


class BadName(ValueError):
    """A user-given name that cannot be used (one line, says the rule)."""


def check_name(name: object, what: str = "name", max_len: int = 63) -> str:
    """`name` if it is a DNS-1123 label of at most `max_len` characters, else a one-line error."""
    if not isinstance(name, str) or len(name) > max_len or not LABEL_RE.match(name):
        shown = repr(name)[:70]
        raise BadName(f"{what} {shown} is not a DNS-1123 label (lower-case letters, digits and '-', starting "
                         f"and ending with a letter or digit, at most {max_len} characters)")
    return name


def state_root() -> Path:
    """A tmpfs when there is one: trees are tens of thousands of small files, and file creation
    on a virtual disk can cost 30x more than in memory. DRA_HARNESS_STATE overrides."""
    if os.environ.get("DRA_HARNESS_STATE"):
        return Path(os.environ["DRA_HARNESS_STATE"]).absolute()
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path("/tmp")
    return base / f"dra-harness-{os.getuid()}"


def ensure_root(root: Path | None = None) -> Path:
    """The state root, created private (0700): it holds keys, kubeconfigs and sockets."""
    root = root or state_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.is_symlink() or not root.is_dir():
        raise BadName(f"state root {root} is not a directory")
    os.chmod(root, 0o700)
    return root


def inside(root: Path, *parts: str) -> Path:
    """root/parts..., refusing anything that would resolve outside root (or be root itself)."""
    p = root.joinpath(*parts)
    rp, rr = os.path.realpath(p), os.path.realpath(root)
    if rp == rr or not rp.startswith(rr + os.sep):
        raise BadName(f"{p} is not inside the state root {root}")
    return p


def write_private(path: Path, data: bytes | str) -> None:
    """Create (or replace) a file readable by its owner only, never briefly wider."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
