"""Run an unmodified program against a tree: a private mount namespace in which the tree's
paths replace the real ones (PCI bus and devices, Neuron and InfiniBand classes, DMI, NUMA
nodes, kernel modules, device nodes, vendor answers).

Why mounts and not LD_PRELOAD: Go reads /sys with raw syscalls, which preload libraries never
see (DESIGN.md). Why a namespace: the host's /sys and mount table must never change. The
namespace is made private (no propagation) before anything is mounted, and it dies with the
program, so nothing is left to clean up.

Where a real directory must keep its other entries (/sys/devices, /sys/class, /dev, /run...),
it is rebuilt as a *composite*: a tmpfs holding bind mounts of every real entry plus the fake
ones. Real entries are reached through a file descriptor opened before the tmpfs covers them.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import os
import sys
import stat
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18

# Tree paths that replace the host's, relative to both roots. Globs expand over the tree.
REPLACED = [
    "sys/bus/pci",
    "sys/devices/pci*",
    "sys/devices/virtual/neuron_device",
    "sys/devices/virtual/dmi",
    "sys/devices/system/node",
    "sys/devices/system/cpu",
    "sys/devices/virtual/net",
    "sys/class/net",
    "sys/class/neuron_device",
    "sys/class/infiniband",
    "sys/class/infiniband_verbs",
    "sys/class/dmi",
    "sys/class/pci_bus",
    "sys/module/neuron",
    "sys/module/efa",
    "sys/module/ena",
    "sys/dev/char/*",
    "dev/neuron*",
    "dev/infiniband",
    "run/aws-neuron",
    "etc/aws-neuron",
]


class NsError(Exception):
    pass


_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise NsError(f"{what}: {os.strerror(e)}" + (" (needs root / CAP_SYS_ADMIN)" if e == errno.EPERM else ""))


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src.encode() if src else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {src or fstype} on {target}")


def plan_mounts(tree: Path, host: Path = Path("/")) -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    """Which tree paths replace which host paths.

    Returns (direct binds [(tree_path, host_path)], composites {host_dir: {name: tree_path}}):
    a direct bind where the host path exists as the same kind of directory, a composite of the
    parent directory where the host lacks the entry (sysfs and devtmpfs cannot grow entries).
    """
    direct: list[tuple[str, str]] = []
    composites: dict[str, dict[str, str]] = {}
    for pattern in REPLACED:
        parent_rel, _, glob = pattern.rpartition("/")
        parent = tree / parent_rel
        if not parent.is_dir():
            continue
        for name in sorted(os.listdir(parent)):
            if not fnmatch.fnmatchcase(name, glob):
                continue
            src = parent / name
            dst = host / parent_rel / name
            if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink() and dst.exists():
                direct.append((str(src), str(dst)))
            else:
                composites.setdefault(str(host / parent_rel), {})[name] = str(src)
    return direct, composites


def check_binds(tree: Path, binds: list[tuple[str, str]]) -> None:
    """Refuse, before any namespace exists, the binds that cannot do what they say
    (reliability-probe-2.md rows 74-77): over `/`; a new entry directly in `/` (a composite of
    the root cannot be built); onto, above or below a path the fake tree itself replaces (the
    tree would hide the bind, or the bind the tree)."""
    direct, composites = plan_mounts(Path(tree).resolve())
    replaced = [dst for _, dst in direct] + [os.path.join(d, n) for d, names in composites.items() for n in names]
    for src, dst in binds:
        where = f"--bind {src}:{dst}"
        if not os.path.isdir(src):
            raise NsError(f"{where}: {src} is not a directory")
        real = os.path.realpath(dst)
        if real == "/":
            raise NsError(f"{where}: cannot bind over /")
        parent = os.path.dirname(real)
        if not os.path.isdir(real) and parent == "/":
            raise NsError(f"{where}: {real} does not exist and cannot be made in /; bind onto an existing directory "
                          "or below one")
        if not os.path.isdir(real) and not os.path.isdir(parent):
            raise NsError(f"{where}: {parent} does not exist")
        for r in replaced:
            if real == r or real.startswith(r + "/") or r.startswith(real + "/"):
                raise NsError(f"{where}: {real} overlaps {r}, which the fake tree provides; bind elsewhere")


def enter(tree: str | os.PathLike, binds: list[tuple[str, str]] = ()) -> None:
    """Move this (single-threaded) process into a private mount namespace showing `tree`, plus
    `binds` (host directory, path it appears at): e.g. a fake node's NRI socket directory at
    /var/run/nri."""
    tree = Path(tree).resolve()
    if not (tree / "sys").is_dir():
        raise NsError(f"{tree} has no sys/ directory; is it a fakedev tree?")
    check_binds(tree, list(binds))
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount may propagate to the host
    direct, composites = plan_mounts(tree)
    # Composites of outer directories first, so inner binds land on the rebuilt view.
    for host_dir in sorted(composites, key=lambda p: p.count("/")):
        _composite(host_dir, composites[host_dir])
    for src, dst in direct:
        _mount(src, dst, None, MS_BIND | MS_REC)
    for src, dst in binds:
        if not os.path.isdir(src):
            raise NsError(f"--bind {src}:{dst}: {src} is not a directory")
        dst = os.path.realpath(dst)  # /var/run -> /run
        if os.path.isdir(dst):
            _mount(src, dst, None, MS_BIND | MS_REC)
        else:
            parent = os.path.dirname(dst)
            if not os.path.isdir(parent):
                raise NsError(f"--bind {src}:{dst}: {parent} does not exist")
            _composite(parent, {os.path.basename(dst): src})


def _composite(host_dir: str, fake: dict[str, str]) -> None:
    """Cover host_dir with a tmpfs holding its real entries (bound) plus the fake ones."""
    fd = os.open(host_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        real = {}
        for name in os.listdir(host_dir):
            try:
                real[name] = os.lstat(os.path.join(host_dir, name))
            except OSError:
                continue
        mode = stat.S_IMODE(os.stat(host_dir).st_mode)
        _mount("fakedev", host_dir, "tmpfs", 0, f"mode={mode:o}")
        for name, st in real.items():
            if name in fake:
                continue
            _place(f"/proc/self/fd/{fd}/{name}", os.path.join(host_dir, name), st)
        for name, src in fake.items():
            _place(src, os.path.join(host_dir, name), os.lstat(src))
    finally:
        os.close(fd)


def _place(src: str, dst: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        return
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst)
    else:
        os.close(os.open(dst, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    try:
        _mount(src, dst, None, MS_BIND | MS_REC)
    except NsError:
        # Entries that vanish or cannot be bound (e.g. a socket gone) are left as placeholders.
        pass


UMOCKDEV_PRELOAD = [f"/usr/lib/{arch}/libumockdev-preload.so.0" for arch in
                    ("x86_64-linux-gnu", "aarch64-linux-gnu")] + ["/usr/lib64/libumockdev-preload.so.0"]


def umockdev_preload() -> str | None:
    return next((p for p in UMOCKDEV_PRELOAD if os.path.exists(p)), None)


def run(tree: str | os.PathLike, argv: list[str], libudev_shim: bool = True,
        binds: list[tuple[str, str]] = ()) -> None:
    """Enter the namespace and exec argv (does not return).

    systemd's libudev also checks that device directories live on sysfs (fstatfs magic), which
    no bind mount can satisfy. With `libudev_shim`, the program also runs under umockdev's
    preload library pointed at the same tree, which answers that check for libc/libudev
    consumers; raw-syscall readers (Go) rely on the mounts alone.
    """
    root = str(Path(tree).resolve())
    enter(root, binds)
    os.environ["FAKEDEV_TREE"] = root
    lib = umockdev_preload() if libudev_shim else None
    if lib:
        os.environ["UMOCKDEV_DIR"] = root
        os.environ["LD_PRELOAD"] = " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))
    try:
        os.execvp(argv[0], argv)
    except OSError as e:  # as a shell says it: the command named, 127 not found, 126 not runnable (row 79)
        print(f"fakedev: {argv[0][:200]}: {e.strerror}", file=sys.stderr)
        os._exit(127 if isinstance(e, FileNotFoundError) else 126)
