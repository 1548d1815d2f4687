"""Where backends keep state, and the names that become paths there.

Every name a user hands in that becomes a file or directory (cluster, node, profile) is a
DNS-1123 label, checked before anything is created or deleted, as Kubernetes and kind check
theirs; and state paths are proven to lie inside the state root before they are touched."""

from __future__ import annotations

import os
import re
from pathlib import Path

MARKER = ".dra-harness-cluster"  # written first into a cluster's state dir; cleanup needs it
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
    """The state root, private (0700): it holds keys, kubeconfigs and sockets.

    Created 0700 when absent. An existing directory is used only if it is already ours and
    private: its mode is never changed, since DRA_HARNESS_STATE may name a shared directory
    (/tmp, a team's scratch) whose mode other users depend on (reliability-probe-2.md rows
    105-106). Every problem is one line naming the root."""
    root = root or state_root()
    try:
        root.mkdir(mode=0o700, parents=True)
        os.chmod(root, 0o700)  # mkdir's mode is filtered by the umask; this directory is ours
        return root
    except FileExistsError:
        pass
    except OSError as e:
        raise BadName(f"state root {root}: cannot create it: {e.strerror}") from None
    return check_root(root)


def check_root(root: Path | None = None) -> Path:
    """An existing state root, refused (one line) unless it is a private directory of ours;
    touches nothing, so read-only commands can use it."""
    root = root or state_root()
    if root.is_symlink() or not root.is_dir():
        raise BadName(f"state root {root} is not a directory")
    st = root.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o7077:
        raise BadName(f"state root {root} exists with mode {st.st_mode & 0o7777:04o} and owner uid {st.st_uid}; "
                      "dra-harness keeps keys there and will not change a directory it did not create: point "
                      "DRA_HARNESS_STATE at a path that does not exist yet (or chmod 700 one of your own)")
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


def remove_marked(root: Path) -> bool:
    """Delete a cluster's state directory, which must carry the marker `up` wrote first; the
    marker goes last, so a removal cut short can be finished later and never loses the proof.
    Returns False (and touches nothing) when the marker is absent."""
    import shutil

    marker = root / MARKER
    if root.is_symlink() or not marker.is_file():
        return False
    for entry in list(root.iterdir()):
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if any(e.name != MARKER for e in root.iterdir()):
        return True  # something resisted; the marker stays for the next cleanup
    marker.unlink()
    root.rmdir()
    return True
