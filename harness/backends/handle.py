"""The handle every backend returns: what tests and the CLI need to know about a running
cluster, and the actions on it, which the cluster's backend carries out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import fakedev
from fakedev import Truth

if TYPE_CHECKING:
    from .base import Backend

# fakedev.Tree operations a test may apply to a running node (see `fakedev mutate --help`).
# Written by a backend into the cluster's artifacts when the cluster cannot go on (a component
# that no restart can help): one line, which every wait on the cluster reports instead of timing out.
FAILURE_FILE = "failure.txt"
MUTATIONS = ("remove", "add", "unbind", "bind", "set_numa_none", "duplicate_routing_id", "attr",
             "set_instance_type", "reset", "ecc", "efa_fail", "heal")


@dataclass
class NodeInfo:
    name: str
    tree: Path | None  # the node's fakedev tree (None on real hardware)
    topology: str
    cdi_dir: Path | None = None  # where the node's drivers write CDI specs, when the harness can read them
    plugins_dir: Path | None = None

    def truth(self) -> Truth | None:
        return fakedev.truth_of(self.tree) if self.tree and fakedev.is_tree(self.tree) else None


@dataclass
class Cluster:
    name: str
    backend: str  # a name in the backend registry (harness.backends.get)
    kubeconfig: Path
    artifacts: Path
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    k8s_version: str | None = None
    state_dir: Path | None = None  # where the backend keeps this cluster's state, if anywhere
    drivers: list[str] = field(default_factory=list)  # the driver profiles its nodes run

    def identities(self) -> dict[str, dict]:
        """driver -> how its devices map to the hardware, as its profile states it (the oracle
        and explanations use these for drivers other than AWS's)."""
        from .profiles import ProfileError, resolve

        out = {}
        for name in self.drivers:
            try:
                p = resolve(name)
            except ProfileError:
                continue
            if p.identity:
                out[p.driver] = p.identity
        return out

    def truths(self) -> dict[str, Truth]:
        """Ground truth of every fake node (nodes without a tree are not judged); read once per
        distinct tree, since host-mode nodes share one (backends/local/driverhosts.py)."""
        out: dict[str, Truth] = {}
        by_tree: dict[Path | str, Truth | None] = {}
        for n, info in self.nodes.items():
            key = info.tree.resolve() if info.tree else n
            if key not in by_tree:
                by_tree[key] = info.truth()
            if by_tree[key] is not None:
                out[n] = by_tree[key]
        return out

    def failure(self) -> str | None:
        """Why the cluster cannot go on, when its backend said so; None while it can."""
        try:
            return (self.artifacts / FAILURE_FILE).read_text().strip() or None
        except (OSError, TypeError):
            return None

    def _backend(self) -> "Backend":
        from . import get

        return get(self.backend)

    def restart_driver(self, node: str, profile: str) -> None:
        self._check_node(node)
        self._backend().restart_driver(self, node, profile)

    def registered(self, node: str) -> list[str]:
        """The DRA plugins the node's kubelet has registered (names or registration sockets)."""
        self._check_node(node)
        return self._backend().registered(self, node)

    def reconfigure(self, driver_args: dict[str, list[str]]) -> list[str]:
        """Run the drivers with other extra arguments (an injected bug, a feature flag) without a new
        cluster, e.g. reconfigure({"refdriver-neuron": ["--inject-bug=efa-shift"]})."""
        return self._backend().reconfigure(self, driver_args)

    def mutate(self, node: str, op: str, *args: str) -> str:
        """Change a node's fake hardware as its drivers see it, e.g. mutate(n, "remove", "neuron5")."""
        self._check_node(node)
        if op not in MUTATIONS:
            raise ValueError(f"unknown mutation {op!r} (known: {', '.join(MUTATIONS)})")
        return self._backend().mutate(self, node, op, *args)

    def collect_logs(self, dest: Path) -> Path:
        return self._backend().collect_logs(self, dest)

    def _check_node(self, node: str) -> None:
        if node not in self.nodes:
            raise ValueError(f"cluster {self.name} has no node {node!r} (nodes: {', '.join(self.nodes)})")
