"""Ground truth of a tree: what is *really* aligned, from the model, never from sysfs.

The oracle, explanations, capacity metrics, reports, the kind backend and the CLI read these
types by attribute. Each device carries the alignment groups it truly belongs to, as sets of
group keys, so "these devices share group X" is a non-empty intersection:

- devicegroup1/4/8/16: AWS's EFA groups (connected-device-maps lookup.go): group k of Neuron
  device N is N // k, among devices that have an EFA partner; an EFA belongs to the groups of
  the Neuron devices it serves; devicegroup1 is the EFA's PCI address.
- pcieRoot, pcieSwitch, numaNode: the root complex, PCIe switch and NUMA node it really sits on.
- topology4, topology8: the torus row of 4 / block of 8 a Neuron device sits in (index // k).

`aws_ids` gives the attribute values AWS's algorithm yields (sha256 over the sorted, unique EFA
addresses of the group, first 16 hex digits), so slices can be diffed against expectations.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .health import classify
from .layout import RDMA_CM, Layout
from .model import EfaDevice, NeuronDevice, Topology, format_cpulist
from .state import TreeState

GROUP_SIZES = (4, 8, 16)


@dataclass(frozen=True)
class Alignment:
    """The groups a device really belongs to, per alignment kind (empty: none of that kind)."""

    pcieRoot: tuple[str, ...] = ()
    pcieSwitch: tuple[str, ...] = ()
    numaNode: tuple[str, ...] = ()
    devicegroup1: tuple[str, ...] = ()
    devicegroup4: tuple[str, ...] = ()
    devicegroup8: tuple[str, ...] = ()
    devicegroup16: tuple[str, ...] = ()
    topology4: tuple[str, ...] = ()
    topology8: tuple[str, ...] = ()

    KINDS = ("pcieRoot", "pcieSwitch", "numaNode", "devicegroup1", "devicegroup4", "devicegroup8",
             "devicegroup16", "topology4", "topology8")

    def of(self, kind: str) -> frozenset[str]:
        """Groups of one alignment kind; an unknown kind is a programming error."""
        if kind not in self.KINDS:
            raise KeyError(f"unknown alignment kind {kind!r} (known: {', '.join(self.KINDS)})")
        return frozenset(getattr(self, kind))


@dataclass(frozen=True)
class DevNode:
    """A character device node as the kernel driver creates it (path below /dev)."""

    path: str
    major: int
    minor: int


@dataclass(frozen=True)
class TruthDevice:
    id: str  # neuronN, or the PCI address of an EFA/ENA
    bdf: str
    kind: str  # "neuron" | "efa" | "ena"
    root: str
    switch: str | None
    numa_node: int  # the true NUMA node (-1: none), whatever sysfs is made to say
    present: bool
    usable: bool
    faults: tuple[str, ...]
    align: Alignment
    sysfs: str
    aws_ids: dict[str, str] = field(default_factory=dict)
    devnodes: tuple[DevNode, ...] = ()
    # what its error counters say (fakedev/health.py): ok, degraded (take no new work) or failed
    health: str = "ok"
    health_counts: tuple[str, ...] = ()
    # Neuron devices
    index: int | None = None
    torus: tuple[int, int] | None = None
    connected: tuple[int, ...] = ()
    efa: str | None = None
    serial: str | None = None
    core_count: int | None = None  # physical NeuronCores (sysfs core_count; partitions divide them)
    # EFA devices
    rdma: str | None = None
    uverbs: int | None = None
    serves: tuple[int, ...] = ()  # Neuron indices this EFA serves
    rate_gbps: int | None = None  # its port rate: what shares of its bandwidth may add up to


@dataclass(frozen=True)
class TruthNuma:
    id: int
    cpus: str
    distances: tuple[int, ...]


@dataclass(frozen=True)
class TruthRoot:
    name: str
    numa_node: int


@dataclass(frozen=True)
class TruthSwitch:
    name: str
    root: str
    devices: tuple[str, ...]


@dataclass(frozen=True)
class Truth:
    instance_type: str
    dmi_product_name: str
    generation: str | None
    cpus: int
    numa_nodes: tuple[TruthNuma, ...]
    roots: tuple[TruthRoot, ...]
    switches: tuple[TruthSwitch, ...]
    efa_enabled: bool
    devices: tuple[TruthDevice, ...]
    history: tuple[str, ...] = ()
    devnodes: tuple[DevNode, ...] = ()  # node-wide device nodes (rdma_cm where there are EFAs)

    def device(self, dev_id: str) -> TruthDevice | None:
        return next((d for d in self.devices if d.id == dev_id), None)

    def of_kind(self, kind: str, usable_only: bool = False) -> list[TruthDevice]:
        return [d for d in self.devices if d.kind == kind and (d.usable or not usable_only)]

    def usable_devnodes(self) -> list[DevNode]:
        """Every device node a driver of this node may hand to a container."""
        return [n for d in self.devices if d.usable for n in d.devnodes] + list(self.devnodes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `fakedev truth`, failure bundles and other tools."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Truth":
        def dev(x: dict) -> TruthDevice:
            kw = {f.name: x[f.name] for f in fields(TruthDevice) if f.name in x}
            kw["align"] = Alignment(**{k: tuple(v) for k, v in x["align"].items()})
            kw["devnodes"] = tuple(DevNode(**n) for n in x.get("devnodes", ()))
            for k in ("faults", "connected", "serves", "health_counts"):
                kw[k] = tuple(x.get(k) or ())
            kw["torus"] = tuple(x["torus"]) if x.get("torus") else None
            return TruthDevice(**kw)

        return cls(instance_type=d["instance_type"], dmi_product_name=d["dmi_product_name"],
                   generation=d["generation"], cpus=d["cpus"],
                   numa_nodes=tuple(TruthNuma(n["id"], n["cpus"], tuple(n["distances"])) for n in d["numa_nodes"]),
                   roots=tuple(TruthRoot(**r) for r in d["roots"]),
                   switches=tuple(TruthSwitch(s["name"], s["root"], tuple(s["devices"])) for s in d["switches"]),
                   efa_enabled=d["efa_enabled"], devices=tuple(dev(x) for x in d["devices"]),
                   history=tuple(d.get("history") or ()),
                   devnodes=tuple(DevNode(**n) for n in d.get("devnodes", ())))


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
        out[n.id] = ids
    # An EFA takes the ids of the Neuron device the reverse map names: the last one listed
    # for it, as Go's map build in lookup/mappings.go overwrites earlier entries [INF].
    for n in sorted(t.neuron, key=lambda n: n.index):
        if n.efa:
            out[n.efa] = {**out[n.id], "devicegroup1_id": n.efa}
    return out


def _alignment(t: Topology, dev: NeuronDevice | EfaDevice, root: str, switch: str | None, numa: int,
               serves: list[int]) -> Alignment:
    base = {"pcieRoot": (root,), "pcieSwitch": (switch,) if switch else (), "numaNode": (str(numa),) if numa >= 0 else ()}
    if isinstance(dev, EfaDevice):
        groups = {f"devicegroup{k}": tuple(sorted({str(i // k) for i in serves})) for k in GROUP_SIZES}
        return Alignment(**base, devicegroup1=(dev.bdf,) if serves else (), **groups)
    if isinstance(dev, NeuronDevice):
        groups = {f"devicegroup{k}": (str(dev.index // k),) if dev.efa else () for k in GROUP_SIZES}
        return Alignment(**base, devicegroup1=(dev.efa,) if dev.efa else (), **groups,
                         topology4=(str(dev.index // 4),), topology8=(str(dev.index // 8),))
    return Alignment(**base)


def _faults(dev_id: str, state: TreeState) -> tuple[str, ...]:
    faults = [f for f, on in (("removed", dev_id in state.removed), ("unbound", dev_id in state.unbound),
                              ("duplicate-routing-id", dev_id in state.dup_routing),
                              ("numa_node=-1", dev_id in state.numa_none)) if on]
    return tuple(faults + [f"{a['action']} {a['attr']}" for a in state.attrs if a["device"] == dev_id])


def rate_gbps(rate: str) -> int | None:
    """ib_sysfs's rate text ("100 Gb/sec (4X EDR)") -> 100."""
    head = rate.split(" ", 1)[0]
    return int(float(head)) if head.replace(".", "", 1).isdigit() and "Gb/sec" in rate else None


def truth(t: Topology, state: TreeState | None = None) -> Truth:
    state = state or TreeState()
    lay = Layout(t)
    serves: dict[str, list[int]] = {}
    for n in t.neuron:
        if n.efa:
            serves.setdefault(n.efa, []).append(n.index)
    ids = aws_ids(t)
    devices = []
    for dev in t.functions():
        root = t.root_of(dev.parent).name
        switch = dev.parent if dev.parent in t.switches_by_name else None
        numa = t.numa_of(dev)
        common: dict[str, Any] = dict(
            id=dev.id, bdf=dev.bdf, root=root, switch=switch, numa_node=numa, present=dev.id not in state.removed,
            usable=dev.id not in state.removed and state.bound(dev.id), faults=_faults(dev.id, state),
            align=_alignment(t, dev, root, switch, numa, serves.get(dev.bdf, [])), sysfs=lay.pci_paths[dev.bdf],
            aws_ids=ids.get(dev.id, {}))
        common["health"], common["health_counts"] = classify(
            "neuron" if isinstance(dev, NeuronDevice) else "efa" if isinstance(dev, EfaDevice) else "ena",
            state.counters.get(dev.id, {}))
        if isinstance(dev, EfaDevice):
            major, minor = lay.uverbs_devnum(dev)
            devices.append(TruthDevice(kind="efa", rdma=dev.rdma, uverbs=dev.uverbs, serves=tuple(serves.get(dev.bdf, [])),
                                       rate_gbps=rate_gbps(dev.rate),
                                       devnodes=(DevNode(f"infiniband/uverbs{dev.uverbs}", major, minor),), **common))
        elif isinstance(dev, NeuronDevice):
            major, minor = lay.neuron_devnum(dev)
            devices.append(TruthDevice(kind="neuron", index=dev.index, torus=tuple(dev.torus) if dev.torus else None,
                                       connected=tuple(dev.connected), efa=dev.efa, serial=dev.serial,
                                       core_count=t.gen.cores if t.gen else None,
                                       devnodes=(DevNode(f"neuron{dev.index}", major, minor),), **common))
        else:
            devices.append(TruthDevice(kind="ena", **common))
    return Truth(
        instance_type=t.instance_type, dmi_product_name=state.product_name or t.instance_type,
        generation=t.generation, cpus=t.nr_cpus,
        numa_nodes=tuple(TruthNuma(n.id, format_cpulist(n.cpus), tuple(n.distances)) for n in t.numa_nodes),
        roots=tuple(TruthRoot(r.name, r.numa_node) for r in t.roots),
        switches=tuple(TruthSwitch(s.name, s.root, tuple(t.switch_endpoints(s.name))) for s in t.switches),
        efa_enabled=any(n.efa for n in t.neuron), devices=tuple(devices), history=tuple(state.history),
        devnodes=(DevNode("infiniband/rdma_cm", *RDMA_CM),) if t.efa else (),
    )
