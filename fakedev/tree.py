"""A rendered tree on disk: generate it atomically and safely, load its model and state back.

Layout of DIR: sys/ and dev/ (what drivers see), etc/ and run/ (vendor answers, see render),
fakedev/ (the model and mutation state: what the harness knows and drivers must not read),
and a marker file proving fakedev created DIR.
"""

from __future__ import annotations

import contextlib
import errno
import ctypes
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import spec as specmod
from .layout import MARKER, META_DIR
from .model import Topology
from .render import build_plan
from .writer import TreeWriter, devnode_kind
from .state import TreeState


class TreeError(Exception):
    """A refusal or failure concerning a tree directory; str() is the user-facing line."""


@dataclass
class GenerateResult:
    path: Path
    files: int
    devnodes: str  # "char" or "file"
    fallbacks: list[str]


FORBIDDEN = [Path("/"), Path("/sys"), Path("/dev"), Path("/proc"), Path("/etc"), Path("/run"), Path("/usr")]
# Trees never go inside these (a tree holds character devices and thousands of files).
SYSTEM_DIRS = [Path(p) for p in ("/etc", "/usr", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                                 "/var/lib", "/var/log", "/var/cache")]
MAX_TREE_FILES = 250_000  # trn2u.48xlarge renders ~22k; checked before anything is written
STAGE_INFIX = ".fakedev-"


@contextmanager
def tree_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on one tree (its fakedev/lock file), across processes."""
    meta = Path(root) / META_DIR
    try:
        fd = os.open(meta / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        raise TreeError(f"{root} is not a fakedev tree (no {META_DIR}/)") from None
    except OSError as e:  # a read-only or foreign file system (reliability-probe-2.md row 94)
        raise TreeError(f"{root}: cannot lock the tree to change it: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_target(out: Path) -> Path:
    """Refuse destinations that could hurt the host, symlinks (never silently replaced), and
    directories fakedev did not create."""
    # Resolve as the kernel would (a `..` after a symlink climbs from the link's target), except
    # the last component, which must not be a symlink itself.
    raw = out if out.is_absolute() else Path.cwd() / out
    out = Path(os.path.realpath(raw)) if raw.name in ("", ".", "..") else Path(os.path.realpath(raw.parent)) / raw.name
    if out.is_symlink():
        raise TreeError(f"refusing to render into {out}: it is a symbolic link (to {os.readlink(out)}); "
                        "pass the real directory")
    real = Path(os.path.realpath(out))
    for bad in FORBIDDEN:
        if real == bad or out == bad:
            raise TreeError(f"refusing to render into {out}: it is a system directory")
    in_dev = real.is_relative_to("/dev") and not real.is_relative_to("/dev/shm")  # /dev/shm is a plain tmpfs
    if real.is_relative_to("/sys") or real.is_relative_to("/proc") or in_dev:
        raise TreeError(f"refusing to render into {out}: it is inside a kernel filesystem")
    for sysdir in SYSTEM_DIRS:
        if real.is_relative_to(sysdir):
            raise TreeError(f"refusing to render into {out}: it is inside the system directory {sysdir}")
    if out.exists() and not out.is_dir():
        raise TreeError(f"refusing to render into {out}: it exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise TreeError(f"refusing to render into {out}: it is not empty and was not created by fakedev "
                        f"(no {MARKER}); pass an empty or new directory")
    return out


def generate(topo: Topology, out: str | os.PathLike, devnodes: str | None = None) -> GenerateResult:
    """Render `topo` into `out`. The tree is built aside and swapped in with one rename, so
    readers see either the old tree or the new one; rendering again replaces the tree."""
    out = check_target(Path(out))
    plan = build_plan(topo, TreeState())
    files = sum(len(g.files) + len(g.links) + len(g.nodes) for g in plan.groups.values())
    if files > MAX_TREE_FILES:
        raise TreeError(f"refusing to render {files} files (limit {MAX_TREE_FILES}): the topology is too large")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stages(out)
        kind = devnodes or devnode_kind()
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGE_INFIX}{os.getpid()}-", dir=out.parent))
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TreeError(out_of_room(out.parent, f"rendering {out}", files)) from None
        raise TreeError(f"cannot render into {out}: {e.strerror}") from None
    try:
        writer = TreeWriter(str(stage), kind)
        for g in plan.groups.values():
            writer.write(g)
        save_meta(stage, topo, TreeState())
        os.close(os.open(stage / META_DIR / "lock", os.O_CREAT | os.O_WRONLY, 0o600))  # tree_lock's file, made once
        (stage / MARKER).write_text(f"fakedev tree; device nodes: {kind}\n")
        os.chmod(stage, 0o755)
        if out.exists():
            with tree_lock(out) if is_tree(out) else contextlib.nullcontext():  # not under a mutator's feet
                _exchange(stage, out)  # stage now holds the previous tree
            shutil.rmtree(stage)
        else:
            os.rename(stage, out)
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TreeError(out_of_room(out.parent, f"rendering {out}", files)) from None
        if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise TreeError(f"cannot render into {out}: {e.strerror}") from None
        raise
    return GenerateResult(out, files, kind, writer.fallbacks)


def out_of_room(where: Path, doing: str, files: int) -> str:
    """One line for a full filesystem: what ran out there and what a tree needs (on a tmpfs a
    file of a few bytes still takes a page, and every file and directory an inode)."""
    try:
        st = os.statvfs(where)
        free = f"{st.f_bavail * st.f_frsize // 1024} KiB and {st.f_favail} inodes free"
        ran_out = "inodes" if st.f_favail == 0 or (st.f_files and st.f_favail < files) else "space"
    except OSError:
        free, ran_out = "unknown free space", "space or inodes"
    return (f"out of room {doing}: the filesystem at {where} ran out of {ran_out} ({free}); this tree needs "
            f"about {files * 4 // 1024 + 1} MiB and {files} inodes (nothing was left half-written)")


def _sweep_stages(out: Path) -> None:
    """Remove staging directories of renders of `out` whose process is gone (killed mid-render)."""
    for stage in out.parent.glob(f".{out.name}{STAGE_INFIX}*"):
        pid = stage.name[len(out.name) + len(STAGE_INFIX) + 1:].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}") and stage.is_dir() and not stage.is_symlink():
            shutil.rmtree(stage, ignore_errors=True)


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two directories (renameat2 RENAME_EXCHANGE); fall back to two renames."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if hasattr(libc, "renameat2") and libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return
    tmp = a.with_name(a.name + ".old")
    os.rename(b, tmp)
    os.rename(a, b)
    os.rename(tmp, a)


def meta_files(root: Path, topo: Topology, state: TreeState) -> dict[Path, bytes]:
    """The saved model and mutation state as file contents (a mutation writes them with the tree)."""
    meta = root / META_DIR
    return {meta / "topology.yaml": yaml.safe_dump(specmod.dump(topo), sort_keys=False).encode(),
            meta / "state.json": state.to_json().encode()}


def save_meta(root: Path, topo: Topology, state: TreeState) -> None:
    (root / META_DIR).mkdir(exist_ok=True)
    for path, data in meta_files(root, topo, state).items():
        _atomic_write(path, data.decode())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def is_tree(root: str | os.PathLike) -> bool:
    return (Path(root) / MARKER).exists() and (Path(root) / META_DIR / "topology.yaml").exists()


def load(root: str | os.PathLike) -> tuple[Topology, TreeState]:
    """The model and mutation state saved beside a rendered tree."""
    root = Path(root)
    if not is_tree(root):
        raise TreeError(f"{root} is not a fakedev tree (no {MARKER} or {META_DIR}/topology.yaml); "
                        f"render one with: fakedev generate --preset NAME --out {root}")
    try:
        topo = specmod.load_file(root / META_DIR / "topology.yaml")
    except specmod.SpecError as e:
        raise TreeError(f"{root / META_DIR / 'topology.yaml'}: corrupt tree model ({e}); render the tree again") from None
    path = root / META_DIR / "state.json"
    try:
        state = TreeState.from_json(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as e:
        raise TreeError(f"{path}: corrupt tree state ({e.__class__.__name__}); "
                        f"`fakedev mutate {root} reset` cannot help, render the tree again") from None
    return topo, state


def devnode_kind_of(root: str | os.PathLike) -> str:
    text = (Path(root) / MARKER).read_text()
    return "char" if "char" in text else "file"
