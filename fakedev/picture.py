"""One topology picture of a node, for failure bundles, the HTML report and `fakedev show --svg`.

lstopo's structure, nested as it draws it: NUMA node -> PCI root complex -> PCIe switch ->
device (every PCI function of the truth, once). Then what lstopo cannot show: each Neuron
device's paired EFA (blue dashes), the torus links between Neuron devices (grey dots), each
claim's devices filled with its colour and named in a legend, faulty devices in red, removed
ones dashed, tainted ones in orange.

Hand-placed boxes do not scale to nested structure, so Graphviz lays it out (clusters, `dot`;
Debian's `graphviz` and the `graphviz` Python package), emitting SVG. Without the `dot` binary
the picture says so in one line instead."""

from __future__ import annotations

import html
import shutil

from .truth import Truth, TruthDevice

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]
KIND = {"neuron": "Neuron", "efa": "EFA", "ena": "ENA"}


def _q(text: str) -> str:
    """A DOT string; a label's line breaks are written as \\n by the caller, so a backslash stays."""
    return '"' + str(text).replace('"', "'") + '"'


def _rows(out: list[str], indent: str, devices: list[TruthDevice], per_row: int = 4) -> None:
    """Devices of one box in rows of `per_row` (invisible edges stack them), so a root complex
    with twelve devices is a block, not a line across the page."""
    for a, b in zip(devices, devices[per_row:]):
        out.append(f"{indent}{_q(a.id)} -> {_q(b.id)} [style=invis];")


def _label(d: TruthDevice) -> str:
    if d.kind == "neuron":
        pos = f" ({d.torus[0]},{d.torus[1]})" if d.torus else ""
        return f"{d.id}{pos}\\n{d.bdf}"
    if d.kind == "efa":
        return f"{d.rdma or 'EFA'}\\n{d.bdf}"
    return f"ENA\\n{d.bdf}"


def _node(d: TruthDevice, owner: str | None, colors: dict[str, str], tainted: bool) -> str:
    attrs = {"label": _label(d), "shape": "box", "style": "rounded,filled", "fillcolor": "#eeeeee",
             "fontname": "monospace", "fontsize": "10", "color": "#333333", "penwidth": "1"}
    if d.kind == "efa":
        attrs["shape"] = "box"
        attrs["fillcolor"] = "#f7f7f7"
    if owner:
        attrs["fillcolor"] = colors[owner]
        attrs["fontcolor"] = "#ffffff"
    if not d.present:
        attrs.update(style="rounded,dashed", color="#999999", label=attrs["label"] + "\\nremoved")
    elif not d.usable or d.health == "failed":
        attrs.update(color="#cc0000", penwidth="3", label=attrs["label"] + "\\nFAULT " + ",".join(d.faults or d.health_counts)[:40])
    if tainted:
        attrs.update(color="#ff8c00", penwidth="3", label=attrs["label"] + "\\ntainted")
    tip = f"{d.id} {d.bdf} root {d.root} numa {d.numa_node}" + (f" claim {owner}" if owner else "")
    attrs["tooltip"] = tip
    return f"{_q(d.id)} [{', '.join(f'{k}={_q(v)}' for k, v in attrs.items())}];"


def dot(truth: Truth, title: str, owners: dict[str, str] | None = None, tainted: set[str] = frozenset()) -> str:
    """The picture as DOT. `owners`: device id -> claim; `tainted`: device ids with a taint."""
    owners = owners or {}
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(set(owners.values())))}
    pci = [d for d in truth.devices if d.kind in KIND]
    numa_of_root = {r.name: r.numa_node for r in truth.roots}
    cpus = {n.id: n.cpus for n in truth.numa_nodes}
    out = ["digraph topology {", f"  label={_q(title)}; labelloc=t; fontname=monospace; fontsize=14;",
           "  compound=true; rankdir=LR; newrank=true; nodesep=0.12; ranksep=0.25;",
           "  node [fontname=monospace]; edge [arrowhead=none];"]
    for numa in sorted({numa_of_root.get(d.root, d.numa_node) for d in pci}):
        label = f"NUMA node {numa} (CPUs {cpus[numa]})" if numa in cpus else "no NUMA node"
        out.append(f"  subgraph {_q(f'cluster_numa{numa}')} {{ label={_q(label)}; style=filled; fillcolor=\"#fbf4e4\";")
        roots = sorted({d.root for d in pci if numa_of_root.get(d.root, d.numa_node) == numa})
        for root in roots:
            out.append(f"    subgraph {_q(f'cluster_root_{root}')} {{ label={_q('PCI root ' + root)}; style=filled; "
                       "fillcolor=\"#e8eef7\";")
            mine = [d for d in pci if d.root == root]
            for sw in sorted({d.switch for d in mine if d.switch}):
                out.append(f"      subgraph {_q(f'cluster_sw_{sw}')} {{ label={_q('switch ' + sw)}; style=filled; "
                           "fillcolor=\"#dde8d8\";")
                inside = [d for d in sorted(mine, key=lambda d: d.bdf) if d.switch == sw]
                out += [f"        {_node(d, owners.get(d.id), colors, d.id in tainted)}" for d in inside]
                _rows(out, "        ", inside)
                out.append("      }")
            loose = [d for d in sorted(mine, key=lambda d: d.bdf) if not d.switch]
            out += [f"      {_node(d, owners.get(d.id), colors, d.id in tainted)}" for d in loose]
            _rows(out, "      ", loose)
            out.append("    }")
        out.append("  }")
    numas = sorted({numa_of_root.get(d.root, d.numa_node) for d in pci})
    for a, b in zip(numas, numas[1:]):  # NUMA nodes side by side, in order; their root complexes stacked
        last = max((d for d in pci if numa_of_root.get(d.root, d.numa_node) == a), key=lambda d: d.bdf)
        first = min((d for d in pci if numa_of_root.get(d.root, d.numa_node) == b), key=lambda d: d.bdf)
        out.append(f"  {_q(last.id)} -> {_q(first.id)} [style=invis, weight=0, minlen=2];")
    by_bdf = {d.bdf: d for d in pci}
    neurons = {d.index: d for d in pci if d.kind == "neuron" and d.index is not None}
    for d in neurons.values():  # what lstopo cannot show: the pairing ...
        if d.efa and d.efa in by_bdf:
            out.append(f"  {_q(d.id)} -> {_q(by_bdf[d.efa].id)} [style=dashed, color=\"#1f77b4\", constraint=false, "
                       "tooltip=\"paired EFA (same PCIe switch)\"];")
    for i, d in sorted(neurons.items()):  # ... and the torus links
        for j in d.connected:
            if j > i and j in neurons:
                out.append(f"  {_q(d.id)} -> {_q(neurons[j].id)} [style=dotted, color=\"#999999\", constraint=false, "
                           "penwidth=0.6];")
    if colors or tainted or any(not d.usable for d in pci):
        out.append("  subgraph cluster_legend { label=\"legend\"; style=solid; color=\"#999999\";")
        for i, (c, col) in enumerate(colors.items()):
            out.append(f"    {_q(f'legend{i}')} [label={_q('claim ' + c)}, shape=box, style=filled, fillcolor={_q(col)}, "
                       "fontcolor=\"#ffffff\"];")
        if tainted:
            out.append("    legend_tainted [label=\"tainted\", shape=box, color=\"#ff8c00\", penwidth=3];")
        if any(not d.usable for d in pci):
            out.append("    legend_fault [label=\"faulty\", shape=box, color=\"#cc0000\", penwidth=3];")
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def svg(truth: Truth, title: str, owners: dict[str, str] | None = None, tainted: set[str] = frozenset()) -> str:
    """The picture as SVG (Graphviz `dot`); without it, an SVG that says what to install."""
    text = dot(truth, title, owners, tainted)
    if shutil.which("dot") is None:
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="640" height="40"><text x="10" y="24">'
                f'{html.escape(title)}: the topology picture needs Graphviz (apt install graphviz)</text></svg>')
    import graphviz

    return graphviz.Source(text).pipe(format="svg", engine="dot").decode()


def placements(svg_text: str) -> dict[str, list[dict]]:
    """What a rendered picture shows, read back from its SVG: device id -> every box drawn for it
    (its centre and the clusters whose box holds that centre). A device drawn twice has two
    entries, one never drawn none: the test that holds the picture to the truth reads this."""
    import re
    import xml.etree.ElementTree as ET

    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg_text)
    clusters = {}
    for g in root.iterfind(".//s:g[@class='cluster']", ns):
        title = g.findtext("s:title", default="", namespaces=ns)
        pts = [tuple(map(float, p.split(","))) for p in g.find("s:polygon", ns).get("points").split()]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        clusters[title] = (min(xs), min(ys), max(xs), max(ys))
    out: dict[str, list[dict]] = {}
    for g in root.iterfind(".//s:g[@class='node']", ns):
        title = g.findtext("s:title", default="", namespaces=ns)
        texts = [(float(t.get("x")), float(t.get("y"))) for t in g.iter("{http://www.w3.org/2000/svg}text")]
        if not texts or not re.match(r"neuron\d+$|[0-9a-f]{4}:", title):
            continue
        x, y = sum(t[0] for t in texts) / len(texts), sum(t[1] for t in texts) / len(texts)
        inside = sorted(c for c, (x0, y0, x1, y1) in clusters.items() if x0 <= x <= x1 and y0 <= y <= y1)
        out.setdefault(title, []).append({"x": x, "y": y, "clusters": inside})
    return out
