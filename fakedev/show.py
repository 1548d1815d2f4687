"""`fakedev show`: a readable summary of a tree as its sysfs shows it, beside the model."""

from __future__ import annotations

import os

from . import tree as treemod
from .model import format_cpulist
from .read import read_tree
from .truth import truth


def summary(root: str | os.PathLike) -> str:
    topo, state = treemod.load(root)
    view = read_tree(root)
    t = truth(topo, state)
    lines = [
        f"tree      {os.path.abspath(root)}",
        f"instance  {view.product_name} (model: {topo.instance_type}, {topo.generation or 'no Neuron'}, "
        f"driver {view.module_version or '-'})",
        f"cpus      {len(view.cpus)} in {topo.sockets} socket(s); NUMA "
        + "; ".join(f"node{i}: {format_cpulist(n['cpus'])}" for i, n in view.numa.items()),
        f"pci       {len(view.pci)} functions under {len(topo.roots)} root complexes, {len(topo.switches)} PCIe switches",
        f"devnodes  {treemod.devnode_kind_of(root)}",
        "",
    ]
    header = ("DEVICE", "KIND", "BDF", "ROOT", "SWITCH", "NUMA", "TORUS", "EFA/SERVES", "SYSFS", "FAULTS")
    rows = [header]
    for d in t.devices:
        fn = view.pci.get(d.bdf)
        shown = "absent" if fn is None else f"numa={fn.numa_node} drv={fn.driver or '-'}"
        link = d.efa or (",".join(map(str, d.serves)) if d.kind == "efa" else "")
        torus = ",".join(map(str, d.torus)) if d.torus else ""
        rows.append((d.rdma if d.kind == "efa" else d.id, d.kind, d.bdf, d.root, d.switch or "-",
                     str(d.numa_node), torus, link or "-", shown, ";".join(d.faults) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if state.history:
        lines += ["", "mutations: " + "; ".join(state.history)]
    return "\n".join(lines) + "\n"

