"""Reports: the failure bundle (objects, events, truths, logs, pictures) and the SVG picture of a
node's topology with each claim's devices highlighted."""

from __future__ import annotations

import html
import json
from pathlib import Path

import yaml
from fakedev import Truth, TruthDevice

from .identity import allocations

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]


def owners(claims: list[dict], node: str) -> dict[str, str]:
    """truth id -> claim (namespace/name) for the devices allocated on `node`."""
    return {tid: name for name, _, r, tid in allocations(claims) if r["pool"] == node and tid}


def svg(node: str, truth: Truth, claims: list[dict]) -> str:
    """Neuron devices on their torus (or in index order), EFAs below grouped by root complex;
    a device's fill is its claim's colour, grey when free, hatched-red when not usable."""
    own = owners(claims, node)
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(set(own.values())))}
    neurons = truth.of_kind("neuron")
    efas = truth.of_kind("efa")
    W, H, pad = 96, 46, 12
    cols = 4 if any(d.torus for d in neurons) else min(max(len(neurons), 1), 8)
    rows_n = (len(neurons) + cols - 1) // cols
    efa_cols = min(max(len(efas), 1), 8)
    height = 60 + rows_n * (H + pad) + 40 + ((len(efas) + efa_cols - 1) // efa_cols) * (H + pad) + 24 * (len(colors) + 1)
    width = max(cols, efa_cols) * (W + pad) + 2 * pad
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">',
           '<defs><pattern id="bad" width="6" height="6" patternUnits="userSpaceOnUse"><path d="M0,6 L6,0" stroke="#c00"/></pattern></defs>',
           f'<text x="{pad}" y="20" font-size="14" font-weight="bold">{html.escape(node)} — {html.escape(truth.instance_type)}</text>']

    def box(x: int, y: int, d: TruthDevice, label: str, sub: str) -> None:
        fill = colors.get(own.get(d.id), "#eeeeee") if d.usable else "url(#bad)"
        title = html.escape(f"{d.id} {d.bdf} root {d.root} numa {d.numa_node}"
                            + (f" claim {own[d.id]}" if d.id in own else ""))
        out.append(f'<g><title>{title}</title><rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6" fill="{fill}" '
                   f'stroke="#333"/><text x="{x + 6}" y="{y + 17}">{html.escape(label)}</text>'
                   f'<text x="{x + 6}" y="{y + 33}" font-size="9">{html.escape(sub)}</text></g>')

    y0 = 40
    out.append(f'<text x="{pad}" y="{y0 - 6}">Neuron devices{" (4x4 torus: row = devicegroup4)" if cols == 4 else ""}</text>')
    for i, d in enumerate(sorted(neurons, key=lambda d: d.torus or (d.index // cols, d.index % cols))):
        r, c = d.torus if d.torus else (i // cols, i % cols)
        box(pad + c * (W + pad), y0 + r * (H + pad), d, d.id, f"{d.root[3:]} n{d.numa_node}")
    y1 = y0 + rows_n * (H + pad) + 30
    if efas:
        out.append(f'<text x="{pad}" y="{y1 - 6}">EFA (serves Neuron)</text>')
        for i, d in enumerate(sorted(efas, key=lambda d: d.bdf)):
            box(pad + (i % efa_cols) * (W + pad), y1 + (i // efa_cols) * (H + pad), d, d.rdma or d.id,
                f"-> {','.join(map(str, d.serves)) or '-'} n{d.numa_node}")
    yl = y1 + ((len(efas) + efa_cols - 1) // efa_cols) * (H + pad) + 16
    for i, (c, col) in enumerate(colors.items()):
        out.append(f'<rect x="{pad}" y="{yl + i * 20}" width="14" height="14" fill="{col}"/>'
                   f'<text x="{pad + 20}" y="{yl + i * 20 + 11}">{html.escape(c)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bundle(out: Path, kube, truths: dict[str, Truth], namespace: str | None, log_dir: Path | None,
           notes: str = "") -> Path:
    """Everything needed to understand a failure, in one directory."""
    out.mkdir(parents=True, exist_ok=True)
    claims = json.loads(kube.res.list_resource_claim_for_all_namespaces(_preload_content=False).data)["items"]
    slices, _ = kube.list("ResourceSlice")
    _dump(out / "resourceslices.yaml", slices)
    _dump(out / "resourceclaims.yaml", claims)
    if namespace:
        pods, _ = kube.list("Pod", namespace=namespace)
        events, _ = kube.list("Event", namespace=namespace)
        _dump(out / "pods.yaml", pods)
        _dump(out / "events.yaml", events)
    for node, truth in truths.items():
        (out / f"truth-{node}.json").write_text(json.dumps(truth.to_dict(), indent=2))
        (out / f"topology-{node}.svg").write_text(svg(node, truth, claims))
    if log_dir and log_dir.is_dir():
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for f in log_dir.glob("*.log"):
            data = f.read_bytes()[-2_000_000:]  # the tail: enough to read the failure, bounded in size
            (logs / f.name).write_bytes(data)
    if notes:
        (out / "notes.txt").write_text(notes)
    return out


def _dump(path: Path, items: list[dict]) -> None:
    for i in items:
        (i.get("metadata") or {}).pop("managedFields", None)
    path.write_text(yaml.safe_dump_all(items, sort_keys=False) if items else "")
