"""What cluster to build: node specs (a fakedev preset or spec file each), driver profiles,
Kubernetes version. Shared by every backend."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import fakedev

from . import profiles


DEFAULT_NODES = "trn1.32xlarge,trn2.48xlarge"  # what `make e2e` boots when nothing is said


class ClusterSpecError(ValueError):
    pass


@dataclass
class NodeSpec:
    name: str
    topology: str  # preset name or spec file path
    labels: dict[str, str] = field(default_factory=dict)
    drivers: list[str] = field(default_factory=lambda: list(profiles.DEFAULT))
    driver_args: dict[str, list[str]] = field(default_factory=dict)  # profile -> extra args (e.g. --inject-bug)

    def load_topology(self) -> fakedev.Topology:
        if self.topology in fakedev.presets.names():
            return fakedev.load_preset(self.topology)
        if Path(self.topology).exists():
            return fakedev.load_spec(self.topology)
        raise ClusterSpecError(f"node {self.name}: {self.topology!r} is neither a preset "
                               f"({', '.join(fakedev.presets.names())}) nor a spec file")


HOST_MODE_NODES = 32  # from this many nodes, host mode by default: a process per node costs ~60 MB


@dataclass
class ClusterSpec:
    name: str = "dra-harness"
    nodes: list[NodeSpec] = field(default_factory=list)
    k8s_version: str | None = None
    netns: bool | None = None  # a network namespace per node (local backend); None: wherever it can be made
    nri: bool | None = None  # an NRI runtime stand-in per node (local backend); None: when a driver profile asks
    driver_hosts: bool | None = None  # many nodes per driver process (local backend); None: from HOST_MODE_NODES nodes
    beta_apis: bool | None = None  # serve resource.k8s.io/v1beta1 and v1beta2 (gates.py); None: as EKS, on
    # more feature gates on every component, beside those of its minor (gates.py): an alpha feature
    # a scenario needs (DRAListTypeAttributes), so it stays off for every other cluster
    feature_gates: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from . import gates

        try:
            gates.check(self.feature_gates)
        except ValueError as e:
            raise ClusterSpecError(str(e)) from None

    def wants_driver_hosts(self) -> bool:
        """Host mode where it is asked for, or by default for big clusters whose drivers all
        support it and need no namespace or NRI per node (driverhosts.py)."""
        if self.driver_hosts is not None:
            return self.driver_hosts
        hostable = all(profiles.resolve(d).host_command for n in self.nodes for d in n.drivers)
        return len(self.nodes) >= HOST_MODE_NODES and hostable and not self.netns and not self.wants_nri()

    def wants_nri(self) -> bool:
        if self.nri is not None:
            return self.nri
        return any(profiles.resolve(d).nri for n in self.nodes for d in n.drivers)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClusterSpec":
        return cls(name=d["name"], k8s_version=d.get("k8s_version"), nodes=[NodeSpec(**n) for n in d["nodes"]],
                   netns=d.get("netns"), nri=d.get("nri"), driver_hosts=d.get("driver_hosts"),
                   beta_apis=d.get("beta_apis"), feature_gates=dict(d.get("feature_gates") or {}))


NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?\Z")


def parse_nodes(text: str, drivers: list[str] | None = None, driver_args: dict[str, list[str]] | None = None) -> list[NodeSpec]:
    """`trn1.32xlarge,trn2.48xlarge`, `gpu1=trn2.48xlarge`, or spec files; names default to
    the topology with dots as dashes plus an index (trn1-32xlarge-0)."""
    nodes: list[NodeSpec] = []
    for i, item in enumerate(x.strip() for x in text.split(",") if x.strip()):
        name, _, topo = item.rpartition("=")
        if not name:
            base = Path(topo).stem if topo.endswith((".yaml", ".yml")) else topo
            name = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") + f"-{i}"
        if not NAME_RE.match(name):
            raise ClusterSpecError(f"node name {name!r} is not a DNS label of at most 42 characters")
        if name in {n.name for n in nodes}:
            raise ClusterSpecError(f"duplicate node name {name!r}")
        n = NodeSpec(name=name, topology=topo, drivers=list(drivers or profiles.DEFAULT),
                     driver_args=dict(driver_args or {}))
        n.labels = {"node.kubernetes.io/instance-type": n.load_topology().instance_type, "dra-harness.io/fake": "true"}
        nodes.append(n)
    if not nodes:
        raise ClusterSpecError("no nodes given (e.g. --nodes trn1.32xlarge,trn2.48xlarge)")
    return nodes
