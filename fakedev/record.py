"""Record a machine's (or a fake tree's) sysfs back into a spec, so a user on a real Trainium
node can attach their topology to a bug report and anyone can render it again.

What sysfs cannot tell is taken from vendor answers when present: the BDF of each neuronN
(`neuron-ls --json-output`, NE §1.2) and the Neuron->EFA table (connected-device-maps).
Torus coordinates are not in sysfs; the generation's defaults apply on replay.
"""

from __future__ import annotations

import os
from collections import Counter

from .model import GENERATIONS, parse_bdf
from .read import TreeView, read_tree

EFA_IDS = {0xEFA0, 0xEFA1, 0xEFA2, 0xEFA3, 0xEFA4}


class RecordError(Exception):
    pass


def record(root: str | os.PathLike) -> tuple[dict, list[str]]:
    """Returns (spec dict, warnings about what could not be recorded)."""
    v = read_tree(root)
    warnings: list[str] = list(v.warnings)
    if not v.product_name:
        raise RecordError(f"{root}: no DMI product_name (sys/devices/virtual/dmi/id/product_name); not a node tree?")
    spec: dict = {"instance_type": v.product_name}
    gen_by_id = {g.pci_device: g.name for g in GENERATIONS.values()}
    neuron_fns = {b: f for b, f in v.pci.items() if f.vendor == 0x1D0F and f.device in gen_by_id}
    if neuron_fns:
        spec["neuron_generation"] = gen_by_id[next(iter(neuron_fns.values())).device]
    if v.module_version:
        spec["neuron_driver_version"] = v.module_version
    packages = sorted({p for _, p, _ in v.cpus})
    cores = sorted({c for _, p, c in v.cpus if p == packages[0]}) if packages else [0]
    sockets = max(1, len(packages))
    threads = max(1, len(v.cpus) // (sockets * len(cores))) if v.cpus else 1
    spec["cpu"] = {"sockets": sockets, "cores_per_socket": len(cores), "threads_per_core": threads}
    from .model import format_cpulist

    spec["numa_nodes"] = [{"id": nid, "cpus": format_cpulist(n["cpus"]), "distances": n["distances"],
                           "memory_gib": n["memory_kb"] // (1024 * 1024)} for nid, n in v.numa.items()]
    spec["memory_gib"] = max(1, sum(n["memory_gib"] for n in spec["numa_nodes"]))

    root_numa = _root_numa(v)
    spec["pci_roots"] = [{"name": r, "numa_node": root_numa[r]} for r in sorted({f.root for f in v.pci.values()})]
    switch_of: dict[str, str] = {}  # upstream port bdf -> name
    switches = []
    for f in sorted(v.pci.values(), key=lambda f: f.bdf):
        if len(f.chain) >= 3 and f.chain[1] not in switch_of and f.class_code >> 8 != 0x0604:
            name = f"sw{len(switch_of)}"
            switch_of[f.chain[1]] = name
            switches.append({"name": name, "root": f.root, "upstream_bus": f"{parse_bdf(f.chain[1])[1]:02x}",
                             "downstream_bus": f"{parse_bdf(f.chain[2])[1]:02x}"})
    if switches:
        spec["pcie_switches"] = switches

    def parent(f) -> str:
        if len(f.chain) >= 3:
            return switch_of[f.chain[1]]
        if f.chain:
            warnings.append(f"{f.bdf}: behind a bridge that is not a switch; recorded on its root {f.root}")
        return f.root

    def numa_override(f, entry: dict) -> dict:
        if f.numa_node is not None and f.numa_node != root_numa[f.root]:
            entry["numa_node"] = f.numa_node
        return entry

    neuron = []
    seen_bdfs = set()
    recordable = {i for i in v.neuron if v.neuron_bdf.get(i) in v.pci}
    for idx, n in sorted(v.neuron.items()):
        bdf = v.neuron_bdf.get(idx)
        if not bdf or bdf not in v.pci:
            warnings.append(f"neuron{idx}: PCI address unknown (no neuron-ls answer); device not recorded")
            continue
        seen_bdfs.add(bdf)
        f = v.pci[bdf]
        gone = [c for c in n["connected"] if c not in recordable]
        if gone:  # a neighbour removed or not recordable: the spec's loader would refuse the link (row 88)
            warnings.append(f"neuron{idx}: neighbour(s) {', '.join(map(str, gone))} not recorded; link(s) dropped")
        entry = {"index": idx, "bdf": bdf, "parent": parent(f), "connected": [c for c in n["connected"] if c in recordable],
                 "serial": n["serial"]}
        if idx in v.efa_map:
            entry["efa"] = v.efa_map[idx]
        neuron.append(numa_override(f, entry))
        if n["dev"]:
            spec.setdefault("devfs", {})["neuron_major"] = _major(n["dev"], f"neuron{idx}/dev")
    for bdf in sorted(set(neuron_fns) - seen_bdfs):
        warnings.append(f"{bdf}: Neuron PCI function without a neuronN device (unbound or failed probe); not recorded")
    if neuron:
        spec["neuron_devices"] = neuron
    efa = []
    for bdf, f in sorted(v.pci.items()):
        if f.vendor == 0x1D0F and f.device in EFA_IDS:
            r = v.rdma.get(bdf)
            entry = {"bdf": bdf, "parent": parent(f), "pci_device": f"{f.device:04x}"}
            if r:
                entry.update(uverbs=r["uverbs"], node_guid=r["node_guid"], rate=r["rate"])
                if r.get("dev"):
                    spec.setdefault("devfs", {})["uverbs_major"] = _major(r["dev"], f"uverbs{r['uverbs']}/dev")
            else:
                warnings.append(f"{bdf}: EFA without an RDMA device (unbound?); identity defaults apply")
            efa.append(numa_override(f, entry))
    if efa:
        spec["efa_devices"] = efa
    ena = [numa_override(f, {"bdf": b, "parent": parent(f)}) for b, f in sorted(v.pci.items())
           if f.vendor == 0x1D0F and f.device == 0xEC20]
    if ena:
        spec["ena_devices"] = ena
    if v.ultraserver.get("node_id_4", "-1") != "-1":
        spec["ultraserver"] = {"node_id_4": int(v.ultraserver["node_id_4"]), "server_id": v.ultraserver["server_id_4"],
                               "modes": v.ultraserver.get("ultraserver_mode", "1,2,3,4")}
    return spec, warnings


def _major(dev: str, where: str) -> int:
    major, sep, minor = dev.partition(":")
    if not (sep and major.isdigit() and minor.isdigit()):
        raise RecordError(f"{where}: {dev[:40]!r} is not MAJOR:MINOR")
    return int(major)


def _root_numa(v: TreeView) -> dict[str, int]:
    """A root's NUMA node: the most common numa_node among the functions below it."""
    votes: dict[str, Counter] = {}
    for f in v.pci.values():
        votes.setdefault(f.root, Counter())
        if f.numa_node is not None and f.numa_node >= 0:
            votes[f.root][f.numa_node] += 1
    return {r: (c.most_common(1)[0][0] if c else -1) for r, c in votes.items()}
