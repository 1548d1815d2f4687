"""The handle every backend returns: what tests and the CLI need to know about a running cluster."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

import fakedev


@dataclass
class NodeInfo:
    name: str
    tree: Path | None  # the node's fakedev tree (None on real hardware)
    topology: str
    cdi_dir: Path | None = None
    plugins_dir: Path | None = None

    def truth(self) -> dict | None:
        return fakedev.truth_of(self.tree) if self.tree and fakedev.is_tree(self.tree) else None


@dataclass
class Cluster:
    name: str
    backend: str
    kubeconfig: Path
    artifacts: Path
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    k8s_version: str | None = None
    control_socket: Path | None = None  # local backend: the supervisor's socket
    state_file: Path | None = None

    def truths(self) -> dict[str, dict]:
        return {n: info.truth() for n, info in self.nodes.items() if info.tree}

    def control(self, op: str, **kw) -> dict:
        """Ask the local supervisor to do something (restart a driver, report status)."""
        if self.control_socket is None:
            raise NotImplementedError(f"the {self.backend} backend has no supervisor")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(180)
            s.connect(str(self.control_socket))
            s.sendall((json.dumps({"op": op, **kw}) + "\n").encode())
            reply = json.loads(s.makefile().readline())
        if not reply.get("ok"):
            raise RuntimeError(f"supervisor refused {op}: {reply.get('error')}")
        return reply

    def restart_driver(self, node: str, profile: str) -> None:
        """Restart one driver of one node: through the supervisor (local), or by deleting the
        DaemonSet's pod on that node and waiting for its replacement to be ready (kind)."""
        if self.backend != "kind":
            self.control("restart-driver", node=node, profile=profile)
            return
        from ..kube import Kube

        kube = Kube(str(self.kubeconfig))
        kind = profile.rsplit("-", 1)[-1]  # refdriver-neuron -> neuron
        sel = f"dra-harness.io/driver={kind}"
        old = [p for p in kube.list("Pod", namespace="dra-harness", label_selector=sel)[0] if p["spec"].get("nodeName") == node]
        for p in old:
            kube.core.delete_namespaced_pod(p["metadata"]["name"], "dra-harness")
        gone = {p["metadata"]["uid"] for p in old}
        kube.wait("Pod", lambda lst: any(p["spec"].get("nodeName") == node and p["metadata"]["uid"] not in gone and
                                         any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in (p.get("status") or {}).get("conditions") or [])
                                         for p in lst["items"]),
                  namespace="dra-harness", label_selector=sel, timeout=120, what=f"a new {profile} pod ready on {node}")

    @classmethod
    def from_state(cls, state: dict, state_file: Path | None = None) -> "Cluster":
        nodes = {n: NodeInfo(n, Path(i["tree"]) if i.get("tree") else None, i.get("topology", ""),
                             Path(i["cdi_dir"]) if i.get("cdi_dir") else None,
                             Path(i["plugins_dir"]) if i.get("plugins_dir") else None)
                 for n, i in state["nodes"].items()}
        sock = Path(state["state_dir"]) / "supervisor.sock" if state.get("state_dir") else None
        return cls(state["name"], state["backend"], Path(state["kubeconfig"]), Path(state["artifacts"]), nodes,
                   state.get("k8s_version"), sock, state_file)
