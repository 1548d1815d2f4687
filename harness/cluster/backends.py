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
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    if not Path(kubeconfig).exists():
        import pytest

        raise pytest.UsageError(f"--backend existing needs a kubeconfig (KUBECONFIG or ~/.kube/config); {kubeconfig} is missing")
    from ..kube import Kube

    kube = Kube(kubeconfig)
    nodes, _ = kube.list("Node")
    return Cluster("existing", "existing", Path(kubeconfig), Path(config.getoption("--artifacts") or "artifacts").resolve(),
                   {n["metadata"]["name"]: NodeInfo(n["metadata"]["name"], None, "") for n in nodes})


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
