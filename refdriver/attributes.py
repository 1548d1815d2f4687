"""Turn discovered hardware into ResourceSlice devices with the attribute schemas of AWS's
drivers: `neuron.aws.com` (Neuron DRA driver) and `dra.net` (DRANET, AWS's EFA driver).
Facts: ../shared/research/neuron-efa.md §4 (NE), ../shared/research/dra-api.md §2 (DRA).
"""

from __future__ import annotations

import hashlib

from . import pciids
from .discovery import Node

NEURON_DRIVER = "neuron.aws.com"
EFA_DRIVER = "dra.net"
DRA_DRIVER_VERSION = "0.1.0"
GROUP = "resource.aws.com"
STD = "resource.kubernetes.io"


def _s(v: str) -> dict:
    return {"string": v}


def _i(v: int) -> dict:
    return {"int": v}


def group_hash(efa_bdfs: list[str]) -> str:
    """connected-device-maps lookup.go: sha256 over the sorted, de-duplicated EFA addresses of
    the group joined by commas, first 16 hex digits."""
    return hashlib.sha256(",".join(sorted(set(efa_bdfs))).encode()).hexdigest()[:16]


def device_groups(index: int, device_map: dict[int, str], bugs: list[str],
                  probe_order: list[int] | None = None) -> dict[str, str]:
    """resource.aws.com/devicegroup{1,4,8,16}_id of Neuron device `index` (NE §4.1).
    `probe_order` (Neuron indices by PCI address) is used only by the group-by-probe-order bug."""
    device_map = _as_read(device_map, bugs)
    if index not in device_map:
        return {}
    out = {f"{GROUP}/devicegroup1_id": device_map[index]}
    order = [i for i in (probe_order or sorted(device_map)) if i in device_map]
    for k in (4, 8, 16):
        if "group-by-probe-order" in bugs:
            pos = order.index(index)
            members = order[(pos // k) * k:(pos // k + 1) * k]
        else:
            members = [i for i in range((index // k) * k, (index // k + 1) * k) if i in device_map]
        out[f"{GROUP}/devicegroup{k}_id"] = group_hash([device_map[i] for i in members])
    return out


def _as_read(device_map: dict[int, str], bugs) -> dict[int, str]:
    """The Neuron->EFA map as the driver reads it: efa-shift gives neuron N the EFA of N+1."""
    if "efa-shift" not in bugs or not device_map:
        return device_map
    keys = sorted(device_map)
    return {k: device_map[keys[(i + 1) % len(keys)]] for i, k in enumerate(keys)}


def _numa(n: int, bugs: list[str]) -> int:
    return 1 - n if "swapped-numa" in bugs and n in (0, 1) else n


def neuron_devices(node: Node, extended: bool = False, bugs: list[str] = ()) -> list[dict]:
    """Devices as AWS's Neuron DRA driver publishes them: `neuron-device-N`, unqualified
    attributes in the driver's domain, devicegroup ids on EFA-enabled instances."""
    total = len(node.neuron)
    out = []
    roots = _shifted_roots([n.pci for n in node.neuron if n.pci], bugs)
    for n in node.neuron:
        attrs: dict[str, dict] = {
            "deviceId": _i(n.index),
            "instanceType": _s(node.instance_type),
            "neuronDriverVersion": _s(node.neuron_driver_version),
            "draDriverVersion": {"version": DRA_DRIVER_VERSION},
            "resourceType": _s("neuron_device"),
            "topology4_id": _i(n.index // 4),
        }
        if total > 1 and total % 16 == 0:  # 4x4 torus position (NE §4.1: topology_x = N/4, y = N%4)
            attrs["topology_x"] = _i((n.index % 16) // 4)
            attrs["topology_y"] = _i(n.index % 4)
        if total >= 8:
            attrs["topology8_id"] = _i(n.index // 8)
        attrs.update({k: _s(v) for k, v in device_groups(n.index, node.device_map, list(bugs), _probe_order(node)).items()})
        if extended and n.pci:
            root = roots.get(n.pci.bdf, n.pci.pcie_root)
            if root:
                attrs[f"{STD}/pcieRoot"] = _s(root)
            if n.pci.numa_node >= 0:
                attrs[f"{STD}/numaNode"] = _i(_numa(n.pci.numa_node, list(bugs)))
        out.append({"name": f"neuron-device-{n.index}", "attributes": attrs})
    return out


def efa_device_name(bdf: str) -> str:
    """DRANET's device name of a PCI function: 0000:10:1a.0 -> pci-0000-10-1a-0."""
    return "pci-" + bdf.replace(":", "-").replace(".", "-")


def efa_devices(node: Node, bugs: list[str] = ()) -> list[dict]:
    """Devices as DRANET publishes EFAs: `pci-DDDD-BB-SS-F`, `dra.net/*` attributes, the
    standard pcieRoot, and devicegroup ids through the reverse of the Neuron->EFA map."""
    reverse: dict[str, int] = {}
    for idx, bdf in sorted(node.device_map.items()):
        reverse[bdf] = idx  # the last Neuron device listed for an EFA wins, as in lookup/mappings.go
    if "efa-shift" in bugs:
        reverse = {bdf: idx for idx, bdf in sorted(_as_read(node.device_map, bugs).items())}
    roots = _shifted_roots([e.pci for e in node.efa], bugs)
    out = []
    for e in node.efa:
        p = e.pci
        attrs: dict[str, dict] = {
            "dra.net/pciAddress": _s(p.bdf),
            "dra.net/pciVendor": _s(pciids.vendor_name(p.vendor)[:64]),
            "dra.net/pciDevice": _s(pciids.device_name(p.vendor, p.device)[:64]),
            "dra.net/pciSubsystem": _s(pciids.subsystem_name(p.vendor, p.device, p.subsystem_vendor, p.subsystem_device)[:64]),
            "dra.net/rdma": {"bool": e.rdma is not None},
        }
        if e.rdma:
            attrs["dra.net/rdmaDevice"] = _s(e.rdma)
        if p.numa_node >= 0:  # omitted when sysfs says -1 (NE §4.2); the standard name lets
            attrs["dra.net/numaNode"] = _i(_numa(p.numa_node, list(bugs)))  # claims align across drivers
            attrs[f"{STD}/numaNode"] = _i(_numa(p.numa_node, list(bugs)))
        root = roots.get(p.bdf, p.pcie_root)
        if root:
            attrs[f"{STD}/pcieRoot"] = _s(root)
        if p.bdf in reverse:
            groups = device_groups(reverse[p.bdf], node.device_map, list(bugs), _probe_order(node))
            groups[f"{GROUP}/devicegroup1_id"] = p.bdf
            attrs.update({k: _s(v) for k, v in groups.items()})
        out.append({"name": efa_device_name(p.bdf), "attributes": attrs})
    return out


def _probe_order(node: Node) -> list[int]:
    """Neuron indices in PCI address order (probe order), where neuron-ls told the addresses."""
    return [n.index for n in sorted(node.neuron, key=lambda n: (n.pci.bdf if n.pci else "~", n.index))]


def _shifted_roots(pcis: list, bugs) -> dict[str, str]:
    """wrong-pcie-root: each device reports the root of the next device in PCI order."""
    if "wrong-pcie-root" not in bugs or not pcis:
        return {}
    ordered = sorted(pcis, key=lambda p: p.bdf)
    return {p.bdf: ordered[(i + 1) % len(ordered)].pcie_root for i, p in enumerate(ordered)}


