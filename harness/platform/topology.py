"""The topology effect: how much collective bandwidth an allocation can reach, from the ground
truth, as a fraction of the best placement of the same request on the same node. A documented
model, not a measurement; it exists so that jobs that are "topology-incorrect but technically
green" show up in numbers.

The model, per allocation on one node:
  ring      Neuron devices all-reduce over a ring through the device-to-device links
            (`connected_devices`, the torus). The ring is only as fast as its slowest step, and
            a step of h hops shares h links: ring = 1 / (largest hop count between ring
            neighbours, in the best ring order). One device: 1.
  network   each Neuron device sends through an allocated EFA. Best is its paired EFA (same PCIe
            switch); an EFA behind the same root complex is as good (1.0); under another root on
            the same NUMA node the traffic crosses the host bridge (0.5); on another NUMA node it
            also crosses the socket interconnect (0.25). An EFA shared with k other claims gives
            each 1/(k+1). network = the worst device's figure. Requests without EFAs: 1.
  collective = min(ring, network); fraction = collective / collective of the best placement of
            the same numbers of devices and EFAs on that node (an aligned devicegroup with its
            paired EFAs, unshared), computed with the same model.
"""

from __future__ import annotations

from collections import deque

from fakedev import Truth, TruthDevice

SAME_ROOT, SAME_NUMA, OTHER_NUMA = 1.0, 0.5, 0.25


def _hops(neurons: dict[int, TruthDevice]) -> dict[tuple[int, int], int]:
    """All-pairs hop counts over the device links of the whole node."""
    out = {}
    for src in neurons:
        seen, q = {src: 0}, deque([src])
        while q:
            u = q.popleft()
            for v in neurons[u].connected:
                if v in neurons and v not in seen:
                    seen[v] = seen[u] + 1
                    q.append(v)
        for dst, h in seen.items():
            out[(src, dst)] = h
    return out


def _has_ring(nodes: list[int], ok, budget: list[int]) -> bool | None:
    """Is there a cycle through every node using only steps `ok` allows? (backtracking; None
    when the search budget ran out)."""
    first, n = nodes[0], len(nodes)
    path, used = [first], {first}

    def extend() -> bool | None:
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if len(path) == n:
            return ok(path[-1], first)
        for v in nodes:
            if v not in used and ok(path[-1], v):
                path.append(v)
                used.add(v)
                r = extend()
                if r is not False:
                    return r
                path.pop()
                used.remove(v)
        return False

    return extend()


def ring_factor(indices: list[int], hops: dict[tuple[int, int], int]) -> float:
    """1 / the smallest h such that a ring through the devices exists with every step at most h
    hops (exact for the sizes nodes have; a search that runs out of budget counts as no ring)."""
    if len(indices) <= 1:
        return 1.0
    if any((a, b) not in hops for a in indices for b in indices):
        return 0.0  # not connected
    if len(indices) == 2:
        return 1.0 / hops[(indices[0], indices[1])]
    for h in range(1, max(hops[(a, b)] for a in indices for b in indices) + 1):
        if _has_ring(sorted(indices), lambda a, b, h=h: hops[(a, b)] <= h, [200_000]):
            return 1.0 / h
    return 1.0 / max(hops[(a, b)] for a in indices for b in indices)


def _path_factor(neuron: TruthDevice, efa: TruthDevice) -> float:
    if neuron.index in efa.serves or efa.root == neuron.root:
        return SAME_ROOT
    if efa.numa_node == neuron.numa_node:
        return SAME_NUMA
    return OTHER_NUMA


def network_factor(neurons: list[TruthDevice], efas: list[TruthDevice], sharers: dict[str, int]) -> float:
    if not efas or not neurons:
        return 1.0
    return min(max(_path_factor(n, e) / (1 + sharers.get(e.id, 0)) for e in efas) for n in neurons)


def collective(truth: Truth, neuron_ids: list[str], efa_ids: list[str], sharers: dict[str, int] | None = None) -> float:
    by_id = {d.id: d for d in truth.devices}
    neurons_all = {d.index: d for d in truth.of_kind("neuron")}
    ns = [by_id[i] for i in neuron_ids if i in by_id]
    es = [by_id[i] for i in efa_ids if i in by_id]
    ring = ring_factor([d.index for d in ns], _hops(neurons_all))
    return min(ring, network_factor(ns, es, sharers or {}))


def best_collective(truth: Truth, n_neuron: int, n_efa: int) -> float:
    """The model's figure for the best placement: aligned blocks of n devices in index order
    (devicegroups are index blocks, research/neuron-efa.md) with the EFAs serving them."""
    neurons = sorted(truth.of_kind("neuron", usable_only=True), key=lambda d: d.index)
    efas = truth.of_kind("efa", usable_only=True)
    if n_neuron > len(neurons) or n_efa > len(efas):
        return 0.0
    best = 0.0
    for start in range(0, max(1, len(neurons) - n_neuron + 1), max(1, n_neuron)):
        block = neurons[start:start + n_neuron]
        idx = {d.index for d in block}
        paired = sorted(efas, key=lambda e: (not (set(e.serves) & idx), e.bdf))[:n_efa]
        best = max(best, collective(truth, [d.id for d in block], [e.id for e in paired]))
    return best


def fraction(truth: Truth, neuron_ids: list[str], efa_ids: list[str], sharers: dict[str, int] | None = None) -> float:
    """The allocation's collective bandwidth as a fraction of the best placement on its node."""
    best = best_collective(truth, len(neuron_ids), len(efa_ids))
    return round(collective(truth, neuron_ids, efa_ids, sharers) / best, 3) if best else 0.0
