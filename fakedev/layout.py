"""Where things live in a rendered tree: sysfs paths of PCI functions and bridges, device numbers.

Kept apart from rendering so that mutations, the reader and `fakedev run` agree on paths.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from functools import cached_property

from .model import EfaDevice, NeuronDevice, Topology, parse_bdf

# Fixed device numbers. Dynamic majors are chosen at render time from the spec (devfs section);
# rdma_cm is a misc device with a dynamic minor [INF: value typical of distro kernels].
RDMA_CM = (10, 58)
UVERBS_FIRST_MINOR = 192  # NE §2.3: uverbs0 is 231:192

META_DIR = "fakedev"  # harness metadata beside sys/ and dev/: the model and the mutation state
MARKER = ".fakedev-tree"
CDM_MAP = "etc/aws-neuron/connected-device-map.json"
NEURON_LS = "run/aws-neuron/neuron-ls.json"


@dataclass(frozen=True)
class Bridge:
    bdf: str
    role: str  # "root-port" | "upstream" | "downstream"
    switch: str
    buses: tuple[int, int, int]  # primary, secondary, subordinate


class Layout:
    """Computes every sysfs path of a topology once."""

    def __init__(self, topo: Topology) -> None:
        self.t = topo

    @cached_property
    def bridges(self) -> list[Bridge]:
        out: list[Bridge] = []
        used_slots: dict[str, set[int]] = {}
        for f in self.t.functions():
            if f.parent in self.t.roots_by_name:
                used_slots.setdefault(f.parent, set()).add(parse_bdf(f.bdf)[2])
        for sw in self.t.switches:
            root = self.t.roots_by_name[sw.root]
            slots = used_slots.setdefault(root.name, set())
            slot = next(s for s in range(1, 32) if s not in slots)
            slots.add(slot)
            ends = self.t.switch_endpoints(sw.name)
            end_buses = sorted({parse_bdf(b)[1] for b in ends})
            top = max(end_buses)
            d = root.domain
            out.append(Bridge(f"{d:04x}:{root.bus:02x}:{slot:02x}.0", "root-port", sw.name, (root.bus, sw.upstream_bus, top)))
            out.append(Bridge(f"{d:04x}:{sw.upstream_bus:02x}:00.0", "upstream", sw.name, (sw.upstream_bus, sw.downstream_bus, top)))
            for k, bus in enumerate(end_buses):
                out.append(Bridge(f"{d:04x}:{sw.downstream_bus:02x}:{k:02x}.0", "downstream", sw.name, (sw.downstream_bus, bus, bus)))
        return out

    @cached_property
    def pci_paths(self) -> dict[str, str]:
        """BDF -> path relative to the tree root (sys/devices/pciDDDD:BB/...)."""
        paths: dict[str, str] = {}
        by_switch: dict[str, list[Bridge]] = {}
        for b in self.bridges:
            by_switch.setdefault(b.switch, []).append(b)
        for sw in self.t.switches:
            root_dir = f"sys/devices/{sw.root}"
            bs = by_switch[sw.name]
            rp, up = bs[0], bs[1]
            paths[rp.bdf] = f"{root_dir}/{rp.bdf}"
            paths[up.bdf] = f"{paths[rp.bdf]}/{up.bdf}"
            for down in bs[2:]:
                paths[down.bdf] = f"{paths[up.bdf]}/{down.bdf}"
        down_by_bus = {(b.switch, b.buses[1]): b.bdf for b in self.bridges if b.role == "downstream"}
        for f in self.t.functions():
            if f.parent in self.t.roots_by_name:
                paths[f.bdf] = f"sys/devices/{f.parent}/{f.bdf}"
            else:
                paths[f.bdf] = f"{paths[down_by_bus[(f.parent, parse_bdf(f.bdf)[1])]]}/{f.bdf}"
        return paths

    def neuron_class_dir(self, n: NeuronDevice) -> str:
        return f"sys/devices/virtual/neuron_device/neuron{n.index}"

    def ib_dir(self, e: EfaDevice) -> str:
        return f"{self.pci_paths[e.bdf]}/infiniband/{e.rdma}"

    def uverbs_dir(self, e: EfaDevice) -> str:
        return f"{self.pci_paths[e.bdf]}/infiniband_verbs/uverbs{e.uverbs}"

    def neuron_devnum(self, n: NeuronDevice) -> tuple[int, int]:
        return (self.t.devfs_majors["neuron"], n.index)

    def uverbs_devnum(self, e: EfaDevice) -> tuple[int, int]:
        return (self.t.devfs_majors["uverbs"], UVERBS_FIRST_MINOR + e.uverbs)


def rel(link: str, target: str) -> str:
    """Relative symlink text from the directory holding `link` to `target` (both tree-relative)."""
    return posixpath.relpath(target, posixpath.dirname(link))
