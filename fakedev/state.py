"""Mutation state of a rendered tree: what was unplugged, unbound or corrupted since rendering.

The topology stays the truth of the hardware; the state says how the tree deviates from it.
Both are saved beside the tree (fakedev/), so truth, show and later mutations see the same thing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .model import EfaDevice, EnaDevice, NeuronDevice, Topology


@dataclass
class TreeState:
    removed: list[str] = field(default_factory=list)  # hot-removed devices
    unbound: list[str] = field(default_factory=list)  # unbound from their driver
    dup_routing: list[str] = field(default_factory=list)  # probe failed on a duplicate routing id
    numa_none: list[str] = field(default_factory=list)  # firmware reports numa_node = -1
    attrs: list[dict] = field(default_factory=list)  # {device, attr, path, action: drop|corrupt, value}
    # error counters the kernel drivers keep, {device: {counter: value}}: a fault the hardware
    # reports through a counter rather than by vanishing (ECC, EFA admin commands lost)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    product_name: str | None = None  # DMI product_name override
    history: list[str] = field(default_factory=list)

    def bound(self, dev_id: str) -> bool:
        return dev_id not in self.unbound and dev_id not in self.dup_routing

    def counter(self, dev_id: str, name: str) -> int:
        return self.counters.get(dev_id, {}).get(name, 0)

    def numa(self, t: Topology, dev: NeuronDevice | EfaDevice | EnaDevice) -> int | None:
        """NUMA node as sysfs shows it; None renders as -1."""
        if dev.id in self.numa_none:
            return None
        n = t.numa_of(dev)
        return n if n >= 0 else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "TreeState":
        """Raises ValueError/TypeError on anything that is not a state this module wrote."""
        data = json.loads(text)
        st = cls(**data)
        for name in ("removed", "unbound", "dup_routing", "numa_none", "history"):
            v = getattr(st, name)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise TypeError(f"{name} must be a list of strings")
        keys = {"device", "attr", "path", "action", "value"}
        if not isinstance(st.attrs, list) or not all(isinstance(a, dict) and set(a) == keys for a in st.attrs):
            raise TypeError("attrs must be a list of attribute faults")
        if not isinstance(st.counters, dict) or not all(
                isinstance(d, str) and isinstance(c, dict) and all(isinstance(k, str) and type(v) is int and v >= 0
                                                                  for k, v in c.items())
                for d, c in st.counters.items()):
            raise TypeError("counters must map devices to {counter: non-negative int}")
        if st.product_name is not None and not isinstance(st.product_name, str):
            raise TypeError("product_name must be a string")
        return st
