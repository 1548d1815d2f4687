"""Backends other than local, behind the same Cluster handle.

existing: any kubeconfig (a real Trainium node group, or a cluster you made); no ground truth
unless the nodes are fake trees this harness knows, so the oracle judges only where it can.
kind: see harness/cluster/kind/.
"""

from __future__ import annotations

import os
from pathlib import Path

from .handle import Cluster, NodeInfo


def existing(config) -> Cluster:
    """A cluster from KUBECONFIG. When it is a local cluster this harness started (`dra-harness
    up`), its nodes' trees are found through the supervisor's state, so the oracle has a truth."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    if not Path(kubeconfig).exists():
        import pytest

        raise pytest.UsageError(f"--backend existing needs a kubeconfig (KUBECONFIG or ~/.kube/config); {kubeconfig} is missing")
    from ..kube import Kube

    known = _local_cluster_for(kubeconfig)
    if known is not None:
        return Cluster(known.name, "existing", Path(kubeconfig), known.artifacts, known.nodes, known.k8s_version)
    kube = Kube(kubeconfig)
    nodes, _ = kube.list("Node")
    return Cluster("existing", "existing", Path(kubeconfig), Path(config.getoption("--artifacts") or "artifacts").resolve(),
                   {n["metadata"]["name"]: NodeInfo(n["metadata"]["name"], None, "") for n in nodes})


def _local_cluster_for(kubeconfig: str) -> Cluster | None:
    import json

    import yaml

    from .local.layout import default_state_root

    try:
        server = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return None
    root = default_state_root()
    for state in root.glob("*/state.json") if root.exists() else []:
        st = json.loads(state.read_text())
        if st.get("server") == server:
            return Cluster.from_state(st, state)
    return None


def kind_for_session(session, want: dict) -> Cluster:
    from .kind import backend as kind

    return kind.session_cluster(session, want)


def release_one(session, cluster: Cluster) -> None:
    if session.backend == "kind":
        from .kind import backend as kind

        kind.release_one(session, cluster)


def up(backend: str, spec, artifacts: Path) -> Cluster:
    if backend == "kind":
        from .kind import backend as kind

        return kind.up(spec, artifacts)
    raise ValueError(f"`dra-harness up --backend {backend}`: use the kubeconfig of your cluster directly")
