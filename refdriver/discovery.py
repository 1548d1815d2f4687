"""Discover Neuron and EFA devices with pyudev: one code path for real and fake hardware.

The driver always reads /sys and /dev. A fake tree reaches it either through `fakedev run`
(mount namespace) or through `--sysfs-root DIR`, which re-executes the driver under umockdev's
preload library pointed at DIR (see refdriver.cli). Nothing here knows which.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pyudev

from fakedev.layout import CDM_MAP
from fakedev.read import neuron_ls_text, parse_neuron_ls

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


def _pci(dev: pyudev.Device) -> PciInfo:
    a = dev.attributes

    def hexattr(name: str) -> int:
        v = a.get(name)
        return _int(v.decode() if v else None, 0, 16)

    numa = a.get("numa_node")
    return PciInfo(
        bdf=dev.sys_name, vendor=hexattr("vendor"), device=hexattr("device"),
        subsystem_vendor=hexattr("subsystem_vendor"), subsystem_device=hexattr("subsystem_device"),
        numa_node=_int(numa.decode() if numa else None, -1), pcie_root=pcie_root(dev.sys_path), sys_path=dev.sys_path,
    )


def discover(ctx: pyudev.Context | None = None, vendor_root: Path = Path("/")) -> Node:
    """`vendor_root` holds etc/ and run/ vendor answers (the tree itself under --sysfs-root)."""
    ctx = ctx or pyudev.Context()
    node = Node(
        instance_type=(_read(SYS / "devices/virtual/dmi/id/product_name") or "").strip(),
        neuron_driver_version=(_read(SYS / "module/neuron/version") or "").strip(),
    )
    neuron_bdf = _neuron_ls(vendor_root)
    wanted = set(neuron_bdf.values())
    pci_by_bdf: dict[str, PciInfo] = {}
    efa_fns: list[PciInfo] = []
    for dev in ctx.list_devices(subsystem="pci"):  # attributes only of functions we publish
        is_efa = dev.driver == "efa"
        if is_efa or dev.sys_name in wanted:
            info = _pci(dev)
            pci_by_bdf[info.bdf] = info
            if is_efa:
                efa_fns.append(info)
    for dev in ctx.list_devices(subsystem="neuron_device"):
        name = dev.sys_name
        if not name.startswith("neuron") or not name[6:].isdigit():
            continue
        idx = int(name[6:])
        a = dev.attributes
        connected = (a.get("connected_devices") or b"").decode().strip()
        try:
            neighbours = [int(x) for x in connected.split(", ")] if connected else []
        except ValueError:
            node.problems.append(f"{name}: unreadable connected_devices {connected!r}")
            neighbours = []
        bdf = neuron_bdf.get(idx)
        node.neuron.append(NeuronInfo(
            index=idx, core_count=_int((a.get("core_count") or b"").decode(), 0), connected=neighbours,
            serial=(a.get("info/serial_number") or b"").decode().strip(), dev=(a.get("dev") or b"").decode().strip(),
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
    node.device_map = _device_map(node, vendor_root)
    return node


def _neuron_ls(vendor_root: Path) -> dict[int, str]:
    """Neuron index -> PCI address. sysfs has no link from neuronN to its PCI function; real tools
    ask the driver by ioctl (neuron-ls). A fake tree answers in the same JSON shape."""
    try:
        return parse_neuron_ls(neuron_ls_text(vendor_root, timeout=30) or "[]")
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return {}


def _device_map(node: Node, vendor_root: Path) -> dict[int, str]:
    """The Neuron->EFA table (connected-device-maps format). Absent: not an EFA-enabled
    instance, so no devicegroup attributes, as AWS's lookup library behaves."""
    path = Path(os.environ.get("NEURON_DEVICE_MAP") or vendor_root / CDM_MAP)
    text = _read(path)
    if text is None:
        return {}
    try:
        return {int(k): v for k, v in json.loads(text).items()}
    except (ValueError, AttributeError):
        node.problems.append(f"{path}: not a connected-device map; devicegroup attributes omitted")
        return {}
