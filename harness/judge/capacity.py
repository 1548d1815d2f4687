"""Stranded capacity, the number platform teams ask for: free Neuron devices that no aligned
request of size 4, 8 or 16 can use any more (their group is partly taken)."""

from __future__ import annotations

from dataclasses import dataclass

from fakedev import Truth

from .identity import holders


@dataclass
class Stranded:
    node: str
    instance_type: str
    neuron: int  # usable Neuron devices
    free: int
    stranded: dict[int, int | None]  # group size -> free devices no aligned request of that size can use


def stranded(truths: dict[str, Truth], claims: list[dict]) -> list[Stranded]:
    busy = holders(claims)
    rows = []
    for node, truth in sorted(truths.items()):
        held = busy.get(node, {})
        neurons = truth.of_kind("neuron", usable_only=True)
        free = [d for d in neurons if d.id not in held]
        row = Stranded(node, truth.instance_type, len(neurons), len(free), {})
        for k in (4, 8, 16):
            groups: dict[int, list] = {}
            for d in neurons:
                groups.setdefault(d.index // k, []).append(d)
            usable = sum(len(g) for g in groups.values() if len(g) == k and all(d.id not in held for d in g))
            row.stranded[k] = len(free) - usable if len(neurons) >= k else None
        rows.append(row)
    return rows
