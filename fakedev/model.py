"""The topology model: what a node's hardware *is*, independent of how sysfs shows it.

Everything downstream (rendering, ground truth, the reference drivers' expectations) is derived
from these objects, so the model holds facts only; derived values are properties.
Facts cite ../shared/research/neuron-efa.md (NE §n).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property

AMAZON_VENDOR = 0x1D0F  # NE §1.1

BDF_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])\Z")
ROOT_RE = re.compile(r"^pci([0-9a-f]{4}):([0-9a-f]{2})\Z")


@dataclass(frozen=True)
class Generation:
    """Per-generation constants of a Neuron device (NE §1.1, §1.4, §1.7)."""

    name: str
    pci_device: int
    cores: int  # physical NeuronCores (core_count is not LNC-adjusted)
    hbm_gib: int
    arch_type: str  # info/architecture/arch_type
    core_arch_type: str  # neuron_coreK/info/architecture/arch_type
    family: str  # info/architecture/instance_type (family, not the EC2 type)
    device_name: str  # info/architecture/device_name


GENERATIONS: dict[str, Generation] = {
    g.name: g
    for g in (
        Generation("trn1", 0x7164, 2, 32, "NDv2", "NCv2", "Trn1", "Trainium1"),
        Generation("inf2", 0x7264, 2, 32, "NDv3", "NCv2", "Inf2", "Inferentia2"),
        Generation("trn2", 0x7364, 8, 96, "NDv3", "NCv3", "Trn2", "Trainium2"),
        # Trn3 numeric id and HBM size are medium-confidence (NE §1.1, §1.7).
        Generation("trn3", 0x7564, 8, 144, "NDv4", "NCv4", "Trn3", "Trainium3"),
    )
}

# Neighbour tables of the Neuron driver, in driver order (NE §1.6).
TRN1_NEIGHBOURS = [
    [12, 3, 4, 1], [13, 0, 5, 2], [14, 1, 6, 3], [15, 2, 7, 0],
    [0, 7, 8, 5], [1, 4, 9, 6], [2, 5, 10, 7], [3, 6, 11, 4],
    [4, 11, 12, 9], [5, 8, 13, 10], [6, 9, 14, 11], [7, 10, 15, 8],
    [8, 15, 0, 13], [9, 12, 1, 14], [10, 13, 2, 15], [11, 14, 3, 12],
]
TRN2_NEIGHBOURS = [
    [12, 1, 3, 4], [0, 13, 5, 2], [14, 3, 1, 6], [2, 15, 7, 0],
    [8, 5, 7, 0], [4, 9, 1, 6], [10, 7, 5, 2], [6, 11, 3, 4],
    [4, 9, 11, 12], [8, 5, 13, 10], [6, 11, 9, 14], [10, 7, 15, 8],
    [0, 13, 15, 8], [12, 1, 9, 14], [2, 15, 13, 10], [14, 3, 11, 12],
]


def driver_connected_devices(generation: str, index: int, total: int) -> list[int]:
    """What neuron.ko writes to connected_devices (NE §1.6): a table keyed by id and device count."""
    if generation == "trn1" and total % 16 == 0:
        return [n | (index & 0x10) for n in TRN1_NEIGHBOURS[index % 16]]
    if generation in ("trn2", "trn3") and total % 16 == 0:
        return [n | (index & 0x10) for n in TRN2_NEIGHBOURS[index % 16]]
    if generation == "inf2" and total == 12:
        return [(index - 1) % 12, (index + 1) % 12]
    if generation == "inf2" and total == 6:
        return [n for n in (index - 1, index + 1) if 0 <= n < 6]
    return []


def default_torus(generation: str, index: int, total: int) -> tuple[int, int] | None:
    """Trainium 4x4 torus coordinates: x = row = id/4, y = id%4 (NE §3.2, §4.1 topology_x/y)."""
    if generation in ("trn1", "trn2", "trn3") and total % 16 == 0:
        return ((index % 16) // 4, index % 4)
    return None


def parse_bdf(bdf: str) -> tuple[int, int, int, int]:
    m = BDF_RE.match(bdf)
    if not m:
        raise ValueError(f"not a PCI address DDDD:BB:SS.F in lower-case hex: {bdf!r}")
    return int(m[1], 16), int(m[2], 16), int(m[3], 16), int(m[4])


def parse_root(name: str) -> tuple[int, int]:
    m = ROOT_RE.match(name)
    if not m:
        raise ValueError(f"not a root complex name pciDDDD:BB in lower-case hex: {name!r}")
    return int(m[1], 16), int(m[2], 16)


def rdma_name(bdf: str) -> str:
    """rdma-core's persistent name: rdma[P<domain>]p<bus>s<slot>[f<fn>], decimal (NE §2.2)."""
    domain, bus, slot, fn = parse_bdf(bdf)
    dom = f"P{domain}" if domain else ""
    return f"rdma{dom}p{bus}s{slot}" + (f"f{fn}" if fn else "")


def stable_hex(seed: str, *parts: object, digits: int = 16) -> str:
    """Deterministic identities (serials, GUIDs) so a spec always renders the same tree."""
    return hashlib.sha256("/".join([seed, *map(str, parts)]).encode()).hexdigest()[:digits]


def ena_mac(instance_type: str, bdf: str) -> str:
    """The MAC address of an ENA's interface: locally administered, stable per instance type and
    address (the tree's class/net file and the node's IMDS answer agree)."""
    h = hashlib.sha256(f"{instance_type}/{bdf}".encode()).hexdigest()
    return "02:" + ":".join(h[i:i + 2] for i in range(0, 10, 2))


def format_cpulist(cpus: list[int]) -> str:
    """Kernel cpulist format: ranges joined by commas, e.g. 0-31,64-95."""
    out: list[str] = []
    cpus = sorted(set(cpus))
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


MAX_CPUS = 4096


def parse_cpulist(text: str, limit: int = MAX_CPUS) -> list[int]:
    """A kernel CPU list (`0-47,96-143`). Bounded while parsing: `0-99999999` is refused before
    a single CPU is listed (reliability-probe-2.md rows 82, 98), not after 4 GB of them."""
    cpus: list[int] = []
    text = text.strip()
    if not text:
        return cpus
    if len(text) > 8 * limit:
        raise ValueError(f"CPU list of {len(text)} characters is longer than {limit} CPUs can be")
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a > b:
            raise ValueError(f"descending range {part!r}")
        if a < 0 or b >= limit or len(cpus) + (b - a + 1) > limit:
            raise ValueError(f"CPU range {part[:40]!r} goes beyond the {limit} CPUs supported")
        cpus.extend(range(a, b + 1))
    return cpus


def format_cpumask(cpus: list[int], nr_cpus: int) -> str:
    """Kernel cpumask format: 32-bit hex words, most significant first, comma separated."""
    words = max(1, (nr_cpus + 31) // 32)
    mask = 0
    for c in cpus:
        mask |= 1 << c
    return ",".join(f"{(mask >> (32 * w)) & 0xFFFFFFFF:08x}" for w in reversed(range(words)))


@dataclass
class NumaNode:
    id: int
    cpus: list[int]
    distances: list[int]
    memory_gib: int


@dataclass
class Root:
    """A PCI root complex (host bridge), named as sysfs names it: pciDDDD:BB."""

    name: str
    numa_node: int

    @property
    def domain(self) -> int:
        return parse_root(self.name)[0]

    @property
    def bus(self) -> int:
        return parse_root(self.name)[1]


@dataclass
class Switch:
    """A PCIe switch behind a root port. Bus numbers of its bridges default to the two buses
    below its lowest endpoint bus (root port -> upstream port -> one downstream port per endpoint)."""

    name: str
    root: str
    upstream_bus: int
    downstream_bus: int


@dataclass
class NeuronDevice:
    index: int  # N of /dev/neuronN: the driver's user id, not probe order (NE §1.3)
    bdf: str
    parent: str  # root or switch name
    torus: tuple[int, int] | None
    connected: list[int]  # connected_devices in driver order
    efa: str | None  # BDF of the EFA that serves this device (the CDM map, NE §3.2-3.3)
    serial: str
    numa_node: int | None = None  # override of the root's NUMA node (None: inherit)

    @property
    def id(self) -> str:
        """Stable name in mutations, truth and CLI output: the device node's name."""
        return f"neuron{self.index}"


@dataclass
class EfaDevice:
    bdf: str
    parent: str
    pci_device: int
    uverbs: int
    node_guid: str
    rate: str = "100 Gb/sec (4X EDR)"
    numa_node: int | None = None

    @property
    def rdma(self) -> str:
        return rdma_name(self.bdf)

    @property
    def id(self) -> str:
        return self.bdf


@dataclass
class EnaDevice:
    bdf: str
    parent: str
    numa_node: int | None = None
    ifname: str = ""  # its network interface (EC2's primary ENA is ens5); "" until the spec resolves it

    @property
    def id(self) -> str:
        return self.bdf


@dataclass
class UltraServer:
    """Class attributes of Trn2 UltraServer nodes (NE §1.5)."""

    node_id_4: int
    server_id: str
    modes: str = "1,2,3,4"


@dataclass
class Topology:
    instance_type: str
    generation: str | None
    neuron_driver_version: str
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    numa_nodes: list[NumaNode]
    roots: list[Root]
    switches: list[Switch]
    neuron: list[NeuronDevice]
    efa: list[EfaDevice]
    ena: list[EnaDevice]
    ultraserver: UltraServer | None = None
    devfs_majors: dict[str, int] = field(default_factory=lambda: {"neuron": 240, "uverbs": 231})

    @property
    def nr_cpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core

    @property
    def gen(self) -> Generation | None:
        return GENERATIONS.get(self.generation) if self.generation else None

    @cached_property
    def roots_by_name(self) -> dict[str, Root]:
        return {r.name: r for r in self.roots}

    @cached_property
    def switches_by_name(self) -> dict[str, Switch]:
        return {s.name: s for s in self.switches}

    @cached_property
    def numa_by_id(self) -> dict[int, NumaNode]:
        return {n.id: n for n in self.numa_nodes}

    def root_of(self, parent: str) -> Root:
        sw = self.switches_by_name.get(parent)
        return self.roots_by_name[sw.root if sw else parent]

    def numa_of(self, dev: NeuronDevice | EfaDevice | EnaDevice) -> int:
        return self.root_of(dev.parent).numa_node if dev.numa_node is None else dev.numa_node

    def functions(self) -> list[NeuronDevice | EfaDevice | EnaDevice]:
        return [*self.neuron, *self.efa, *self.ena]

    def switch_endpoints(self, switch: str) -> list[str]:
        return sorted(f.bdf for f in self.functions() if f.parent == switch)

    def efa_by_bdf(self) -> dict[str, EfaDevice]:
        return {e.bdf: e for e in self.efa}

    def cpu_layout(self) -> list[tuple[int, int, int, int]]:
        """(cpu, package, core, thread) in Linux/Intel numbering: first threads of every core of
        every socket, then the sibling threads (cpu = thread*sockets*cores + socket*cores + core)."""
        out = []
        per_thread = self.sockets * self.cores_per_socket
        for t in range(self.threads_per_core):
            for s in range(self.sockets):
                for c in range(self.cores_per_socket):
                    out.append((t * per_thread + s * self.cores_per_socket + c, s, c, t))
        return sorted(out)
