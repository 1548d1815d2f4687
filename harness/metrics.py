"""Capacity metrics platform teams ask for: stranded capacity = free Neuron devices that no
aligned request of size 4, 8 or 16 can use any more (their group is partly taken)."""

from __future__ import annotations

from .oracle import allocations


def holders(claims: list[dict]) -> dict[str, dict[str, str]]:
    """node -> truth id -> the claim holding it (admin-access allocations do not take a device)."""
    out: dict[str, dict[str, str]] = {}
    for name, _, r, tid in allocations(claims):
        if tid and not r.get("adminAccess"):
            out.setdefault(r["pool"], {})[tid] = name
    return out


def stranded(truths: dict[str, dict], claims: list[dict]) -> list[dict]:
    busy = holders(claims)
    rows = []
    for node, truth in sorted(truths.items()):
        neurons = [d for d in truth["devices"] if d["kind"] == "neuron" and d["usable"]]
        free = [d for d in neurons if d["id"] not in busy.get(node, {})]
        row = {"node": node, "instance_type": truth["instance_type"], "neuron": len(neurons), "free": len(free),
               "stranded": {}}
        for k in (4, 8, 16):
            groups: dict[int, list[dict]] = {}
            for d in neurons:
                groups.setdefault(d["index"] // k, []).append(d)
            usable = sum(len(g) for g in groups.values()
                         if len(g) == k and all(d["id"] not in busy.get(node, {}) for d in g))
            row["stranded"][k] = len(free) - usable if len(neurons) >= k else None
        rows.append(row)
    return rows
