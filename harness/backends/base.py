"""The interface every cluster backend implements, as kind's `Provider`: bring a cluster up and
down, report its status, find a running one by name, and act on its nodes (mutate a node's fake
hardware, restart or reconfigure its drivers, collect logs). Backends differ in *how*; callers never ask *which*."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .handle import Cluster
    from .spec import ClusterSpec


class BackendError(Exception):
    """A backend cannot do what was asked; the message is one line a user can act on."""


class StateError(BackendError):
    """A state file the harness wrote cannot be read back; the message names the file."""


class Backend(Protocol):
    name: str

    def up(self, spec: "ClusterSpec", artifacts: Path, *, timeout: float = 300,
           owner_pid: int | None = None) -> "Cluster":
        """Create the cluster and return once every node's drivers have published their slices.
        `owner_pid`: tear the cluster down when that process exits (a test run)."""

    def down(self, name: str, *, export_logs_to: Path | None = None) -> list[str]:
        """Remove everything the cluster was made of; returns what had to be killed by hand."""

    def status(self, name: str) -> dict:
        """{"name", "state": "running" | "absent" | ..., and backend details}."""

    def find(self, name: str) -> "Cluster | None":
        """The running cluster called `name`, or None."""

    def restart_driver(self, cluster: "Cluster", node: str, profile: str) -> None:
        """Restart one driver of one node and return when it serves again."""

    def registered(self, cluster: "Cluster", node: str) -> list[str]:
        """The DRA plugins the node's kubelet has registered: driver names or registration
        socket names (registration.names tells whether one is a given driver's)."""

    def reconfigure(self, cluster: "Cluster", driver_args: dict[str, list[str]]) -> list[str]:
        """Run the cluster's drivers with `driver_args` (profile -> extra arguments, every node
        alike) instead of the arguments they run with, and return once each changed driver has
        published anew; returns what was restarted. Raises BackendError where the drivers are not
        the harness's to change."""

    def mutate(self, cluster: "Cluster", node: str, op: str, *args: str) -> str:
        """Apply a fakedev mutation (remove, add, unbind, set_numa_none, reset, ...) to a node's
        hardware as its drivers see it; returns fakedev's description of the change."""

    def collect_logs(self, cluster: "Cluster", dest: Path) -> Path:
        """Copy the cluster's component and driver logs to `dest`."""
