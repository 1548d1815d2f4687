"""A rendered tree on disk: generate it atomically and safely, load its model and state back.

Layout of DIR: sys/ and dev/ (what drivers see), etc/ and run/ (vendor answers, see render),
fakedev/ (the model and mutation state: what the harness knows and drivers must not read),
and a marker file proving fakedev created DIR.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import spec as specmod
from .layout import MARKER, META_DIR
from .model import Topology
from .render import TreeWriter, build_plan, devnode_kind
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


def check_target(out: Path) -> Path:
    """Refuse destinations that could hurt the host, and directories fakedev did not create."""
    out = Path(os.path.abspath(out))
    real = Path(os.path.realpath(out))
    for bad in FORBIDDEN:
        if real == bad or out == bad:
            raise TreeError(f"refusing to render into {out}: it is a system directory")
    in_dev = real.is_relative_to("/dev") and not real.is_relative_to("/dev/shm")  # /dev/shm is a plain tmpfs
    if real.is_relative_to("/sys") or real.is_relative_to("/proc") or in_dev:
        raise TreeError(f"refusing to render into {out}: it is inside a kernel filesystem")
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
    out.parent.mkdir(parents=True, exist_ok=True)
    kind = devnodes or devnode_kind()
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.fakedev-", dir=out.parent))
    try:
        writer = TreeWriter(str(stage), kind)
        plan = build_plan(topo, TreeState())
        files = 0
        for g in plan.groups.values():
            writer.write(g)
            files += len(g.files) + len(g.links) + len(g.nodes)
        save_meta(stage, topo, TreeState())
        (stage / MARKER).write_text(f"fakedev tree; device nodes: {kind}\n")
        os.chmod(stage, 0o755)
        if out.exists():
            _exchange(stage, out)  # stage now holds the previous tree
            shutil.rmtree(stage)
        else:
            os.rename(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return GenerateResult(out, files, kind, writer.fallbacks)


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


def save_meta(root: Path, topo: Topology, state: TreeState) -> None:
    meta = root / META_DIR
    meta.mkdir(exist_ok=True)
    _atomic_write(meta / "topology.yaml", yaml.safe_dump(specmod.dump(topo), sort_keys=False))
    _atomic_write(meta / "state.json", state.to_json())


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
    topo = specmod.load_file(root / META_DIR / "topology.yaml")
    state = TreeState.from_json((root / META_DIR / "state.json").read_text())
    return topo, state


def devnode_kind_of(root: str | os.PathLike) -> str:
    text = (Path(root) / MARKER).read_text()
    return "char" if "char" in text else "file"
