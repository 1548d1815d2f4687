"""Ground truth of a tree: what is *really* aligned, from the model, never from sysfs.

The oracle reads this. Each device lists the alignment groups it truly belongs to, as sets of
group keys, so "these devices share group X" is a non-empty intersection:

- devicegroup1/4/8/16: AWS's EFA groups (connected-device-maps lookup.go): group k of Neuron
  device N is N // k, among devices that have an EFA partner; an EFA belongs to the groups of
  the Neuron devices it serves; devicegroup1 is the EFA's PCI address.
- pcieRoot, pcieSwitch, numaNode: the root complex, PCIe switch and NUMA node it really sits on.

`aws_ids` gives the attribute values AWS's algorithm yields (sha256 over the sorted, unique EFA
addresses of the group, first 16 hex digits), so slices can be diffed against expectations.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .layout import Layout, device_id
from .model import EfaDevice, Topology, format_cpulist
from .state import TreeState

GROUP_SIZES = (4, 8, 16)


def aws_group_hash(efa_bdfs: list[str]) -> str:
    return hashlib.sha256(",".join(sorted(set(efa_bdfs))).encode()).hexdigest()[:16]


def aws_ids(t: Topology) -> dict[str, dict[str, str]]:
    """Per device id: the devicegroup attribute values AWS's lookup library computes."""
    n2e = {n.index: n.efa for n in t.neuron if n.efa}
    out: dict[str, dict[str, str]] = {}
    for n in t.neuron:
        if not n.efa:
            continue
        ids = {"devicegroup1_id": n.efa}
        for k in GROUP_SIZES:
            g = n.index // k
            bdfs = [n2e[i] for i in range(g * k, (g + 1) * k) if i in n2e]
            ids[f"devicegroup{k}_id"] = aws_group_hash(bdfs)
        out[device_id(n)] = ids
    # An EFA takes the ids of the Neuron device the reverse map names: the last one listed
    # for it, as Go's map build in lookup/mappings.go overwrites earlier entries [INF].
    for n in sorted(t.neuron, key=lambda n: n.index):
        if n.efa:
            out[n.efa] = {**out[device_id(n)], "devicegroup1_id": n.efa}
    return out


def truth(t: Topology, state: TreeState | None = None) -> dict[str, Any]:
    state = state or TreeState()
    lay = Layout(t)
    serves: dict[str, list[int]] = {}
    for n in t.neuron:
        if n.efa:
            serves.setdefault(n.efa, []).append(n.index)
    ids = aws_ids(t)
    devices = []
    for dev in t.functions():
        did = device_id(dev)
        root = t.root_of(dev.parent)
        switch = dev.parent if dev.parent in t.switches_by_name else None
        numa = t.numa_of(dev)
        align: dict[str, list[str]] = {
            "pcieRoot": [root.name],
            "pcieSwitch": [switch] if switch else [],
            "numaNode": [str(numa)] if numa >= 0 else [],
        }
        entry: dict[str, Any] = {"id": did, "bdf": dev.bdf, "root": root.name, "switch": switch, "numa_node": numa}
        if isinstance(dev, EfaDevice):
            idx = serves.get(dev.bdf, [])
            entry.update(kind="efa", rdma=dev.rdma, uverbs=dev.uverbs, serves=idx)
            align["devicegroup1"] = [dev.bdf] if idx else []
            for k in GROUP_SIZES:
                align[f"devicegroup{k}"] = sorted({str(i // k) for i in idx})
        elif did.startswith("neuron"):
            entry.update(kind="neuron", index=dev.index, torus=list(dev.torus) if dev.torus else None,
                         connected=dev.connected, efa=dev.efa, serial=dev.serial)
            align["devicegroup1"] = [dev.efa] if dev.efa else []
            for k in GROUP_SIZES:
                align[f"devicegroup{k}"] = [str(dev.index // k)] if dev.efa else []
        else:
            entry.update(kind="ena")
        faults = [f for f, on in (("removed", did in state.removed), ("unbound", did in state.unbound),
                                  ("duplicate-routing-id", did in state.dup_routing),
                                  ("numa_node=-1", did in state.numa_none)) if on]
        faults += [f"{a['action']} {a['attr']}" for a in state.attrs if a["device"] == did]
        entry.update(present=did not in state.removed, usable=did not in state.removed and state.bound(did),
                     faults=faults, align=align, aws_ids=ids.get(did, {}), sysfs=lay.pci_paths[dev.bdf])
        devices.append(entry)
    return {
        "instance_type": t.instance_type,
        "dmi_product_name": state.product_name or t.instance_type,
        "generation": t.generation,
        "cpus": t.nr_cpus,
        "numa_nodes": [{"id": n.id, "cpus": format_cpulist(n.cpus), "distances": n.distances} for n in t.numa_nodes],
        "roots": [{"name": r.name, "numa_node": r.numa_node} for r in t.roots],
        "switches": [{"name": s.name, "root": s.root, "devices": t.switch_endpoints(s.name)} for s in t.switches],
        "efa_enabled": any(n.efa for n in t.neuron),
        "devices": devices,
        "history": list(state.history),
    }
