"""Discover Neuron and EFA devices with pyudev: one code path for real and fake hardware.

The driver always reads /sys and /dev. A fake tree reaches it either through `fakedev run`
(mount namespace) or through `--sysfs-root DIR`, which re-executes the driver under umockdev's
preload library pointed at DIR (see refdriver.cli). Nothing here knows which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyudev

from . import vendorfiles

SYS = Path("/sys")


@dataclass
class PciInfo:
    bdf: str
    vendor: int
    device: int
    subsystem_vendor: int
    subsystem_device: int
    numa_node: int  # -1 when firmware reports none
    pcie_root: str | None  # pciDDDD:BB, computed as k8s.io/dynamic-resource-allocation/deviceattribute does
    sys_path: str


@dataclass
class NeuronInfo:
    index: int
    core_count: int
    connected: list[int]
    serial: str
    dev: str  # MAJ:MIN
    pci: PciInfo | None  # known only through the neuron-ls answer


@dataclass
class EfaInfo:
    pci: PciInfo
    rdma: str | None
    uverbs: int | None
    uverbs_dev: str | None = None  # MAJ:MIN of /dev/infiniband/uverbsN
    rate: str | None = None  # ports/1/rate, "100 Gb/sec (4X EDR)"


@dataclass
class Node:
    instance_type: str
    neuron_driver_version: str
    neuron: list[NeuronInfo] = field(default_factory=list)
    efa: list[EfaInfo] = field(default_factory=list)
    device_map: dict[int, str] = field(default_factory=dict)  # Neuron index -> EFA BDF
    problems: list[str] = field(default_factory=list)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def pcie_root(sys_path: str) -> str | None:
    """First path component below /sys/devices, when it names a PCI root (deviceattribute's rule)."""
    parts = Path(sys_path).parts
    if len(parts) > 3 and parts[1] == "sys" and parts[2] == "devices" and parts[3].startswith("pci"):
        return parts[3]
    return None


def _int(text: str | None, default: int = -1, base: int = 10) -> int:
    try:
        return int((text or "").strip(), base)
    except ValueError:
        return default


MAX_NUMA = 1023  # the kernel's MAX_NUMNODES ceiling (CONFIG_NODES_SHIFT <= 10)


def _attr(dev: pyudev.Device, name: str) -> str | None:
    v = dev.attributes.get(name)
    try:
        return v.decode().strip() if v is not None else None
    except UnicodeDecodeError:
        return "\ufffd"


def numa_of(dev: pyudev.Device, problems: list[str]) -> int:
    """numa_node as the kernel writes it (-1 when firmware gives none). Anything else is a
    fault: reported, and treated as "no NUMA node" (the attribute is omitted for that device)."""
    text = _attr(dev, "numa_node")
    if text is None:
        return -1
    try:
        numa = int(text, 10)
    except ValueError:
        numa = None
    if numa is None or not -1 <= numa <= MAX_NUMA:
        problems.append(f"{dev.sys_path}/numa_node: {text[:40]!r} is not a NUMA node (-1..{MAX_NUMA}); "
                        "numaNode omitted for this device")
        return -1
    return numa


def _pci(dev: pyudev.Device, problems: list[str]) -> PciInfo:
    def hexattr(name: str) -> int:
        return _int(_attr(dev, name), 0, 16)

    return PciInfo(
        bdf=dev.sys_name, vendor=hexattr("vendor"), device=hexattr("device"),
        subsystem_vendor=hexattr("subsystem_vendor"), subsystem_device=hexattr("subsystem_device"),
        numa_node=numa_of(dev, problems), pcie_root=pcie_root(dev.sys_path), sys_path=dev.sys_path,
    )


def connected_of(dev: pyudev.Device, index: int, problems: list[str]) -> list[int]:
    """`connected_devices` (`a, b, c, d`): torus neighbours. Unreadable or impossible values are
    reported and dropped, never published."""
    text = _attr(dev, "connected_devices") or ""
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        n = int(item) if item.isdigit() and len(item) < 6 else None
        if n is None or n == index or n > vendorfiles.MAX_INDEX:
            problems.append(f"{dev.sys_path}/connected_devices: {item[:20]!r} is not a neighbour device index; "
                            "dropped")
            continue
        out.append(n)
    return out


def discover(ctx: pyudev.Context | None = None, vendor_root: Path = Path("/")) -> Node:
    """`vendor_root` holds etc/ and run/ vendor answers (the tree itself under --sysfs-root)."""
    ctx = ctx or pyudev.Context()
    node = Node(
        instance_type=(_read(SYS / "devices/virtual/dmi/id/product_name") or "").strip(),
        neuron_driver_version=(_read(SYS / "module/neuron/version") or "").strip(),
    )
    neuron_bdf = vendorfiles.neuron_ls(vendor_root, node.problems)
    wanted = set(neuron_bdf.values())
    pci_by_bdf: dict[str, PciInfo] = {}
    efa_fns: list[PciInfo] = []
    for dev in ctx.list_devices(subsystem="pci"):  # attributes only of functions we publish
        is_efa = dev.driver == "efa"
        if is_efa or dev.sys_name in wanted:
            info = _pci(dev, node.problems)
            pci_by_bdf[info.bdf] = info
            if is_efa:
                efa_fns.append(info)
    for dev in ctx.list_devices(subsystem="neuron_device"):
        name = dev.sys_name
        if not name.startswith("neuron") or not name[6:].isdigit():
            continue
        idx = int(name[6:])
        bdf = neuron_bdf.get(idx)
        if neuron_bdf and bdf is None:
            node.problems.append(f"{name}: not in the neuron-ls answer; pcieRoot and numaNode omitted for it")
        node.neuron.append(NeuronInfo(
            index=idx, core_count=_int(_attr(dev, "core_count"), 0), connected=connected_of(dev, idx, node.problems),
            serial=_attr(dev, "info/serial_number") or "", dev=_attr(dev, "dev") or "",
            pci=pci_by_bdf.get(bdf) if bdf else None,
        ))
    node.neuron.sort(key=lambda n: n.index)
    rdma_of: dict[str, str] = {}
    for dev in ctx.list_devices(subsystem="infiniband"):
        parent = dev.find_parent("pci")
        if parent is not None:
            rdma_of[parent.sys_name] = dev.sys_name
    uverbs_of: dict[str, tuple[int, str]] = {}
    for dev in ctx.list_devices(subsystem="infiniband_verbs"):
        parent = dev.find_parent("pci")
        if parent is not None and dev.sys_name[6:].isdigit():
            uverbs_of[parent.sys_name] = (int(dev.sys_name[6:]), (dev.attributes.get("dev") or b"").decode().strip())
    node.efa = [EfaInfo(p, rdma_of.get(p.bdf), *uverbs_of.get(p.bdf, (None, None)))
                for p in sorted(efa_fns, key=lambda p: p.bdf)]
    for e in node.efa:
        if e.rdma:
            e.rate = (_read(SYS / "class/infiniband" / e.rdma / "ports/1/rate") or "").strip() or None
    node.device_map = _device_map(node, vendor_root)
    return node


def _device_map(node: Node, vendor_root: Path) -> dict[int, str]:
    path = Path(os.environ.get("NEURON_DEVICE_MAP") or vendor_root / vendorfiles.CDM_MAP)
    return vendorfiles.device_map(path, node.problems)
