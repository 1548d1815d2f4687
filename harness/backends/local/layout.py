"""Where a local cluster keeps things. State (etcd data, PKI, trees, sockets) lives under a
short root, because unix socket paths are limited to 107 bytes; logs live in the artifacts."""

from __future__ import annotations

from pathlib import Path

from ..paths import MARKER, remove_marked  # noqa: F401 (the local backend's names for them)

SOCKET_MAX = 107


class ClusterLayout:
    def __init__(self, root: Path, artifacts: Path, nodes: list[str] = ()) -> None:
        self.root = root
        self.artifacts = artifacts
        self.log_dir = artifacts / "logs"
        self.index = {n: i for i, n in enumerate(nodes)}  # short kubelet roots: socket paths are bounded

    @property
    def control_dir(self) -> Path:
        return self.root / "control"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def control_socket(self) -> Path:
        return self.root / "supervisor.sock"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def tree(self, node: str) -> Path:
        return self.node_dir(node) / "tree"

    def kubelet_dir(self, node: str) -> Path:
        """The node's kubelet root (/var/lib/kubelet on a real node), kept short: the sockets
        below it must fit in 107 bytes, as with the real kubelet's paths."""
        return self.root / "k" / str(self.index[node])

    def registry_dir(self, node: str) -> Path:
        return self.kubelet_dir(node) / "plugins_registry"

    def plugins_dir(self, node: str) -> Path:
        return self.kubelet_dir(node) / "plugins"

    def nri_socket(self, node: str) -> Path:
        """The node's /var/run/nri/nri.sock (the NRI runtime stand-in listens there); the node's
        /run is kept short for the same reason as its kubelet root."""
        return self.root / "r" / str(self.index[node]) / "nri" / "nri.sock"

    def cdi_dir(self, node: str) -> Path:
        return self.node_dir(node) / "cdi"

    def plugin_sockets(self, node: str, driver: str) -> tuple[Path, Path]:
        """Where a driver of the node serves: its registration socket and its DRA socket."""
        return self.registry_dir(node) / f"{driver}-reg.sock", self.plugins_dir(node) / driver / "dra.sock"

    def check_socket_paths(self, nodes: list[str], drivers: list[str]) -> None:
        for n in nodes:
            for d in drivers:
                for p in self.plugin_sockets(n, d):
                    if len(str(p)) > SOCKET_MAX:
                        raise ValueError(f"socket path {p} is longer than {SOCKET_MAX} bytes; use a shorter "
                                         "state root (DRA_HARNESS_STATE) or shorter node names")


