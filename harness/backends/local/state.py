"""The state of one running local cluster: written by its supervisor (state.json), read by
everything else. One type, so writer and readers cannot drift apart."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..base import StateError
from ..handle import Cluster, NodeInfo


@dataclass
class NodeState:
    tree: str
    cdi_dir: str
    plugins_dir: str
    registry_dir: str
    topology: str
    kubelet_dir: str = ""
    netns: str = ""  # /proc/<pid>/ns/net of the node's network namespace ("" when it has none)
    imds_endpoint: str = ""  # as seen from the node's drivers
    nri_socket: str = ""  # the node's NRI runtime socket ("" when the cluster runs no NRI stand-in)


@dataclass
class LocalState:
    name: str
    pid: int
    k8s_version: str | None
    server: str
    kubeconfig: str
    bin_dir: str
    artifacts: str
    state_dir: str
    spec: dict[str, Any]
    nodes: dict[str, NodeState]
    procs: list[dict[str, Any]] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def write(self, path: Path) -> None:
        """Atomically, private to the user (it names keys, sockets and PIDs)."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> "LocalState | None":
        """None when there is no state file; StateError naming the file when it is corrupt."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise StateError(f"{path}: cannot read the cluster state ({e.__class__.__name__})") from None
        try:
            data = json.loads(text)
            names = {f.name for f in fields(cls)}
            if not isinstance(data, dict) or set(data) - names or not {"name", "kubeconfig", "nodes"} <= set(data):
                raise TypeError("not a cluster state object")
            data["nodes"] = {str(n): NodeState(**v) for n, v in data["nodes"].items()}
            return cls(**data)
        except (ValueError, TypeError, AttributeError) as e:
            raise StateError(f"{path}: corrupt cluster state ({str(e)[:80]}); remove it with "
                             f"`dra-harness down --name {path.parent.name}`") from None

    def cluster(self) -> Cluster:
        nodes = {n: NodeInfo(n, Path(s.tree), s.topology, Path(s.cdi_dir), Path(s.plugins_dir))
                 for n, s in self.nodes.items()}
        drivers = sorted({d for n in self.spec.get("nodes", []) for d in n.get("drivers", [])})
        return Cluster(self.name, "local", Path(self.kubeconfig), Path(self.artifacts), nodes, self.k8s_version,
                       Path(self.state_dir), drivers)
