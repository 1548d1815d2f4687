"""The existing backend: any kubeconfig (a real Trainium node group, or a cluster you made).

The harness neither creates nor deletes such a cluster. There is no ground truth unless its
nodes are fake trees this harness knows (a local cluster started with `dra-harness up`), so the
oracle judges only where it can."""

from __future__ import annotations

import os
from pathlib import Path

from fakedev import safeyaml

from . import registration
from .base import BackendError
from .handle import Cluster, NodeInfo
from .spec import ClusterSpec


def kubeconfig_path() -> Path:
    return Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube/config")


class ExistingBackend:
    name = "existing"

    def up(self, spec: ClusterSpec, artifacts: Path, *, timeout: float = 300, owner_pid: int | None = None) -> Cluster:
        cluster = self.find(spec.name, artifacts)
        if cluster is None:
            raise BackendError(f"--backend existing needs a kubeconfig (KUBECONFIG or ~/.kube/config); "
                               f"{kubeconfig_path()} is missing")
        return cluster

    def find(self, name: str, artifacts: Path | None = None) -> Cluster | None:
        """The cluster of KUBECONFIG; a local cluster this harness started keeps its trees."""
        kubeconfig = kubeconfig_path()
        if not kubeconfig.exists():
            return None
        known = _local_cluster_for(kubeconfig)
        if known is not None:
            return Cluster(known.name, self.name, kubeconfig, known.artifacts, known.nodes, known.k8s_version,
                           known.state_dir)
        from ..kube import Kube

        nodes, _ = Kube(str(kubeconfig)).list("Node")
        return Cluster("existing", self.name, kubeconfig, (artifacts or Path("artifacts")).resolve(),
                       {n["metadata"]["name"]: NodeInfo(n["metadata"]["name"], None, "") for n in nodes})

    def down(self, name: str, *, export_logs_to: Path | None = None) -> list[str]:
        return []  # not ours to delete

    def status(self, name: str) -> dict:
        c = self.find(name)
        return {"name": name, "state": "running" if c else "absent", "kubeconfig": str(kubeconfig_path()),
                "nodes": list(c.nodes) if c else []}

    def restart_driver(self, cluster: Cluster, node: str, profile: str) -> None:
        if cluster.state_dir is not None:  # a harness-started local cluster: its supervisor can
            from .local.backend import LocalBackend

            return LocalBackend().restart_driver(cluster, node, profile)
        raise BackendError("restarting a driver of an existing cluster is up to its operator")

    def registered(self, cluster: Cluster, node: str) -> list[str]:
        if cluster.state_dir is not None:  # a harness-started local cluster: its stand-in knows
            from .local.backend import LocalBackend

            return LocalBackend().registered(cluster, node)
        from ..kube import Kube

        return registration.from_kubelet(Kube(str(cluster.kubeconfig)), node)

    def reconfigure(self, cluster: Cluster, driver_args: dict[str, list[str]]) -> list[str]:
        if cluster.state_dir is not None:  # a harness-started local cluster: its supervisor can
            from .local.backend import LocalBackend

            return LocalBackend().reconfigure(cluster, driver_args)
        raise BackendError("the drivers of an existing cluster are its operator's: the harness cannot run them "
                           "with other arguments")

    def mutate(self, cluster: Cluster, node: str, op: str, *args: str) -> str:
        if cluster.nodes[node].tree is None:
            raise BackendError(f"node {node} is real hardware: it cannot be mutated")
        from .local.backend import LocalBackend

        return LocalBackend().mutate(cluster, node, op, *args)

    def collect_logs(self, cluster: Cluster, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        return dest  # the operator's logging stack has them


def _local_cluster_for(kubeconfig: Path) -> Cluster | None:
    from .local.backend import LocalBackend
    from .paths import state_root

    server = _server_of(kubeconfig)
    if server is None:
        return None
    root = state_root()
    for state in sorted(root.glob("*/state.json")) if root.is_dir() else []:
        c = LocalBackend().find(state.parent.name) if _label(state.parent.name) else None
        if c is not None and _server_of(c.kubeconfig) == server:
            return c
    return None


def _label(name: str) -> bool:
    from .paths import LABEL_RE

    return bool(LABEL_RE.match(name))


def _server_of(kubeconfig: Path) -> str | None:
    """The server of a kubeconfig's first cluster (read with the bounded loader: a kubeconfig is
    user input too), or None."""
    try:
        return safeyaml.load_file(kubeconfig)["clusters"][0]["cluster"]["server"]
    except (safeyaml.YamlLimitError, KeyError, IndexError, TypeError):
        return None
