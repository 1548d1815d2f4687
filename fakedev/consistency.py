"""Cross-field consistency of a topology: unique addresses, parents that exist, devices on the
buses their parents own, symmetric torus links between adjacent coordinates, free bridge buses.
Defaults that depend on other fields are resolved before (`resolve_defaults`), so checking is
a pure read."""

from __future__ import annotations

from dataclasses import replace

from .fields import SpecError, join, short
from .model import Topology, parse_bdf


def resolve_defaults(t: Topology) -> Topology:
    """Fill in the bridge buses of switches that did not set them: the two buses below the
    switch's lowest device bus. Returns a new topology; the input is untouched."""
    switches = []
    for s in t.switches:
        ends = t.switch_endpoints(s.name)
        low = min((parse_bdf(b)[1] for b in ends), default=0)
        switches.append(replace(s, upstream_bus=s.upstream_bus if s.upstream_bus >= 0 else low - 2,
                                downstream_bus=s.downstream_bus if s.downstream_bus >= 0 else low - 1))
    return replace(t, switches=switches)



def check(t: Topology) -> None:
    """Every rule that relates fields to each other; reads the topology, never changes it."""
    parents = set(t.roots_by_name) | set(t.switches_by_name)
    seen_bdf: dict[str, str] = {}
    sections = [("neuron_devices", t.neuron), ("efa_devices", t.efa), ("ena_devices", t.ena)]
    for section, devs in sections:
        for i, f in enumerate(devs):
            p = join(section, i)
            if f.bdf in seen_bdf:
                raise SpecError(join(p, "bdf"), f"PCI address {f.bdf} is already used by {seen_bdf[f.bdf]}")
            seen_bdf[f.bdf] = p
            if f.parent not in parents:
                raise SpecError(join(p, "parent"), f"{short(f.parent)} is neither a root in pci_roots nor a switch in pcie_switches")
            domain, bus, _, _ = parse_bdf(f.bdf)
            root = t.root_of(f.parent)
            if domain != root.domain:
                raise SpecError(join(p, "bdf"), f"domain {domain:04x} differs from its root {root.name}")
            if f.parent in t.roots_by_name and bus != root.bus:
                raise SpecError(join(p, "bdf"), f"bus {bus:02x} is not the root bus of {root.name} (put it behind a switch)")
            if f.parent in t.switches_by_name and bus == root.bus:
                raise SpecError(join(p, "bdf"), f"a device behind switch {f.parent} cannot sit on the root bus {bus:02x}")
    _check_switch_buses(t, seen_bdf)
    _check_neuron_links(t)
    _check_uverbs(t)


def _check_neuron_links(t: Topology) -> None:
    idx = [n.index for n in t.neuron]
    by_index = {n.index: n for n in t.neuron}
    efa_bdfs = {e.bdf for e in t.efa}
    coords: dict[tuple[int, int], int] = {}
    for i, n in enumerate(t.neuron):
        p = join("neuron_devices", i)
        if idx.count(n.index) > 1:
            raise SpecError(join(p, "index"), f"duplicate Neuron device index {n.index}")
        if n.efa is not None and n.efa not in efa_bdfs:
            raise SpecError(join(p, "efa"), f"EFA {n.efa} is not in efa_devices")
        if n.torus is not None:
            if n.torus in coords:
                raise SpecError(join(p, "torus"), f"coordinates {list(n.torus)} are already taken by device {coords[n.torus]}")
            coords[n.torus] = n.index
    dims = (max((c[0] for c in coords), default=0) + 1, max((c[1] for c in coords), default=0) + 1)
    for i, n in enumerate(t.neuron):
        p = join(join("neuron_devices", i), "connected")
        for m in n.connected:
            if m == n.index:
                raise SpecError(p, f"device {n.index} cannot be connected to itself")
            if m not in by_index:
                raise SpecError(p, f"neighbour {m} is not a Neuron device index")
            if n.index not in by_index[m].connected:
                raise SpecError(p, f"link {n.index}->{m} is one-way: device {m} does not list {n.index}")
            a, b = n.torus, by_index[m].torus
            if a is not None and b is not None and not _torus_adjacent(a, b, dims):
                raise SpecError(p, f"neighbour {m} at {list(b)} is not adjacent to {list(a)} on a {dims[0]}x{dims[1]} torus")
        if len(n.connected) != len(set(n.connected)):
            raise SpecError(p, "a neighbour is listed twice")
        if len(", ".join(map(str, n.connected))) + 1 > 20:
            raise SpecError(p, "more neighbours than the driver's 20-character connected_devices buffer holds")


def _check_uverbs(t: Topology) -> None:
    uverbs = [e.uverbs for e in t.efa]
    for i, e in enumerate(t.efa):
        if uverbs.count(e.uverbs) > 1:
            raise SpecError(join(join("efa_devices", i), "uverbs"), f"duplicate uverbs index {e.uverbs}")


def _torus_adjacent(a: tuple[int, int], b: tuple[int, int], dims: tuple[int, int]) -> bool:
    dx = min((a[0] - b[0]) % dims[0], (b[0] - a[0]) % dims[0])
    dy = min((a[1] - b[1]) % dims[1], (b[1] - a[1]) % dims[1])
    return dx + dy == 1


def _check_switch_buses(t: Topology, seen_bdf: dict[str, str]) -> None:
    used = {r.bus for r in t.roots} | {parse_bdf(b)[1] for b in seen_bdf}
    bridge_buses: set[tuple[int, int]] = set()
    for i, s in enumerate(t.switches):
        p = join("pcie_switches", i)
        ends = t.switch_endpoints(s.name)
        if not ends:
            raise SpecError(p, f"switch {s.name} has no devices behind it")
        root = t.roots_by_name[s.root]
        for key, bus in (("upstream_bus", s.upstream_bus), ("downstream_bus", s.downstream_bus)):
            if bus <= root.bus:
                raise SpecError(join(p, key), f"bridge bus {bus:#04x} must be above the root bus {root.bus:02x} "
                                "(leave room below the lowest device bus, or set it explicitly)")
            if bus in used or (root.domain, bus) in bridge_buses:
                raise SpecError(join(p, key), f"bus {bus:02x} is already used")
            bridge_buses.add((root.domain, bus))
        if s.upstream_bus == s.downstream_bus:
            raise SpecError(p, "upstream_bus and downstream_bus must differ")
        buses = [parse_bdf(b)[1:3] for b in ends]
        slots_per_bus: dict[int, set[int]] = {}
        for bus, slot in buses:
            slots_per_bus.setdefault(bus, set()).add(slot)
            if bus <= s.downstream_bus:
                raise SpecError(p, f"device bus {bus:02x} must be above the switch's downstream bus {s.downstream_bus:02x}")
        for bus, slots in slots_per_bus.items():
            if len(slots) > 1:
                raise SpecError(p, f"bus {bus:02x} behind a switch port holds one device (slot 00), found slots {sorted(slots)}")
        if len(slots_per_bus) > 32:
            raise SpecError(p, "a switch has at most 32 downstream ports")
