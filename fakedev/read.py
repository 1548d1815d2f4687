"""Read a sysfs tree (fake or real) back into plain facts: PCI functions with their bridge
chain, Neuron class devices, RDMA devices, NUMA and CPU layout, DMI, module version.

Used by `fakedev show` and `fakedev record`. It reads only what a real machine has, plus the
neuron-ls answer (the BDF of each neuronN, which sysfs does not give) when present.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .layout import CDM_MAP, NEURON_LS
from .model import parse_cpulist

ROOT_DIR_RE = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}\Z")


@dataclass
class PciFunction:
    bdf: str
    root: str
    chain: list[str]  # bridge BDFs from the root down to this function's parent
    vendor: int
    device: int
    class_code: int
    numa_node: int | None  # None: the file is missing
    driver: str | None


@dataclass
class TreeView:
    product_name: str | None
    module_version: str | None
    cpus: list[tuple[int, int, int]]  # (cpu, package, core)
    numa: dict[int, dict] = field(default_factory=dict)  # id -> {cpus, distances, memory_kb}
    pci: dict[str, PciFunction] = field(default_factory=dict)
    neuron: dict[int, dict] = field(default_factory=dict)  # index -> {core_count, connected, serial, ...}
    neuron_bdf: dict[int, str] = field(default_factory=dict)  # from neuron-ls, when available
    efa_map: dict[int, str] = field(default_factory=dict)  # CDM table, when available
    rdma: dict[str, dict] = field(default_factory=dict)  # bdf -> {name, uverbs, node_guid, rate}
    ultraserver: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # vendor answers that could not be read


MAX_ATTR = 64 << 10  # a sysfs attribute is at most a page; vendor JSON answers are small too
MAX_JSON = 4 << 20


class ReadError(ValueError):
    """A file of the tree that cannot be what the kernel or the vendor tools write (one line)."""


def _read(p: Path, limit: int = MAX_ATTR) -> str | None:
    """A regular file's text, at most `limit` bytes, never blocking: a FIFO, /dev/zero or any
    other non-regular file counts as absent (rows 80-81). O_NONBLOCK: opening a FIFO would wait."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise ReadError(f"{p}: larger than {limit // 1024} KiB; not a sysfs attribute")
        return data.decode()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def _int(p: Path, text: str, base: int = 10) -> int:
    try:
        return int(text.strip(), base)
    except ValueError:
        raise ReadError(f"{p}: {text.strip()[:40]!r} is not a number") from None


def _resolve(link: Path) -> Path:
    try:
        return link.resolve(strict=False)
    except (RuntimeError, OSError):  # a symlink loop
        raise ReadError(f"{link}: a symbolic link loop") from None


def read_tree(root: str | os.PathLike) -> TreeView:
    """`root` is the directory holding sys/ (a fake tree, or / on a real machine)."""
    root = Path(root)
    sys_ = root / "sys"
    view = TreeView(
        product_name=(_read(sys_ / "devices/virtual/dmi/id/product_name") or "").strip() or None,
        module_version=(_read(sys_ / "module/neuron/version") or "").strip() or None,
        cpus=_cpus(sys_),
    )
    nodes = [p for p in (sys_ / "devices/system/node").glob("node[0-9]*") if re.fullmatch(r"node\d{1,4}", p.name)]
    for node in sorted(nodes, key=lambda p: int(p.name[4:])):
        nid = int(node.name[4:])
        mem = re.search(r"MemTotal:\s+(\d+) kB", _read(node / "meminfo") or "")
        try:
            cpus = parse_cpulist(_read(node / "cpulist") or "")
        except ValueError as e:
            raise ReadError(f"{node / 'cpulist'}: {e}") from None
        view.numa[nid] = {
            "cpus": cpus,
            "distances": [_int(node / "distance", x) for x in (_read(node / "distance") or "").split()],
            "memory_kb": int(mem[1]) if mem else 0,
        }
    pci_dir = sys_ / "bus/pci/devices"
    for entry in sorted(pci_dir.iterdir()) if pci_dir.is_dir() else []:
        f = _pci_function(entry, sys_)
        if f:
            view.pci[f.bdf] = f
    cls = sys_ / "class/neuron_device"
    for link in sorted(cls.glob("neuron[0-9]*")) if cls.is_dir() else []:
        if not re.fullmatch(r"neuron\d{1,3}", link.name):
            continue
        d = _resolve(link)
        idx = int(link.name[6:])
        connected = (_read(d / "connected_devices") or "").strip()
        view.neuron[idx] = {
            "core_count": (_read(d / "core_count") or "").strip(),
            "connected": [_int(d / "connected_devices", x) for x in connected.split(",")] if connected else [],
            "serial": (_read(d / "info/serial_number") or "").strip(),
            "device_name": (_read(d / "info/architecture/device_name") or "").strip(),
            "dev": (_read(d / "dev") or "").strip(),
        }
    for k in ("node_id_4", "server_id_4", "ultraserver_mode"):
        v = _read(cls / k)
        if v is not None:
            view.ultraserver[k] = v.strip()
    ib = sys_ / "class/infiniband"
    uverbs_of: dict[str, int] = {}
    for uv in sorted((sys_ / "class/infiniband_verbs").glob("uverbs[0-9]*")):
        if not re.fullmatch(r"uverbs\d{1,4}", uv.name):
            continue
        name = (_read(uv / "ibdev") or "").strip()
        uverbs_of[name] = int(uv.name[6:])
    for link in sorted(ib.iterdir()) if ib.is_dir() else []:
        d = _resolve(link)
        bdf = os.path.basename(os.path.realpath(d / "device"))
        view.rdma[bdf] = {
            "name": link.name,
            "dev": (_read(sys_ / "class/infiniband_verbs" / f"uverbs{uverbs_of.get(link.name)}" / "dev") or "").strip(),
            "uverbs": uverbs_of.get(link.name),
            "node_guid": (_read(d / "node_guid") or "").strip(),
            "rate": (_read(d / "ports/1/rate") or "").strip(),
        }
    ls = neuron_ls_text(root, timeout=60)
    if ls:
        try:
            view.neuron_bdf = parse_neuron_ls(ls)
        except (ValueError, TypeError, KeyError, AttributeError):  # as the drivers do: warn and go on (row 85)
            view.warnings.append(f"{root / NEURON_LS}: not neuron-ls JSON; the Neuron devices' PCI addresses are unknown")
    cdm = _read(root / CDM_MAP, MAX_JSON)
    if cdm:
        try:
            view.efa_map = {int(k): str(v) for k, v in json.loads(cdm).items()}
        except (ValueError, TypeError, AttributeError):
            view.warnings.append(f"{root / CDM_MAP}: not a connected-device map; the Neuron-EFA pairing is not recorded")
    return view


def neuron_ls_text(root: Path, timeout: float) -> str | None:
    """What `neuron-ls --json-output` reports: the tree's answer file, or on a real machine
    (root /) the command itself. sysfs has no link from neuronN to its PCI function (NE §1.2)."""
    text = _read(root / NEURON_LS, MAX_JSON)
    if text is None and root == Path("/") and shutil.which("neuron-ls"):
        text = subprocess.run(["neuron-ls", "--json-output"], capture_output=True, text=True, timeout=timeout).stdout
    return text


def parse_neuron_ls(text: str) -> dict[int, str]:
    """Neuron index -> PCI address (domain included) from neuron-ls JSON."""
    return {int(r["neuron_device"]): r.get("domain_bdf") or f"0000:{r['bdf']}" for r in json.loads(text)}


def _cpus(sys_: Path) -> list[tuple[int, int, int]]:
    out = []
    for d in (sys_ / "devices/system/cpu").glob("cpu[0-9]*"):
        pkg = _read(d / "topology/physical_package_id")
        core = _read(d / "topology/core_id")
        if pkg is not None and core is not None and re.fullmatch(r"cpu\d{1,5}", d.name):
            out.append((int(d.name[3:]), _int(d / "topology/physical_package_id", pkg),
                        _int(d / "topology/core_id", core)))
    return sorted(out)


def _pci_function(entry: Path, sys_: Path) -> PciFunction | None:
    target = os.readlink(entry) if entry.is_symlink() else str(entry)
    real = os.path.normpath(os.path.join(entry.parent, target))
    parts = Path(real).relative_to(sys_ / "devices").parts if real.startswith(str(sys_ / "devices")) else ()
    if not parts or not ROOT_DIR_RE.match(parts[0]):
        return None
    d = Path(real)
    numa = _read(d / "numa_node")
    drv = d / "driver"
    return PciFunction(
        bdf=parts[-1], root=parts[0], chain=list(parts[1:-1]),
        vendor=_int(d / "vendor", _read(d / "vendor") or "0", 16),
        device=_int(d / "device", _read(d / "device") or "0", 16),
        class_code=_int(d / "class", _read(d / "class") or "0", 16),
        numa_node=int(numa.strip()) if numa and numa.strip().lstrip("-").isdigit() else None,
        driver=os.path.basename(os.readlink(drv)) if drv.is_symlink() else None,
    )
