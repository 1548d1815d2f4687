"""`dra-harness drain` against a real local cluster: a NoExecute rule over the node's pool
evicts the pod using its device (through kube-controller-manager's device-taint eviction
controller), --undo deletes the rule, and a node that does not exist is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from harness.kube import Kube

from .conftest import local_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "dr", "trn1.2xlarge")


def _cli(c, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "drain", *args, "--name", c.name],
                          capture_output=True, text=True, timeout=120, env={**os.environ})


def test_drain_evicts_the_pod_and_undo_removes_the_rule(cluster):
    kube = Kube(str(cluster.kubeconfig))
    node = next(iter(cluster.nodes))
    ns = f"d-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(ns)
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "c", "namespace": ns},
                "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com"}}]}}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
                "spec": {"containers": [{"name": "c", "image": "x"}], "terminationGracePeriodSeconds": 0,
                         "resourceClaims": [{"name": "d", "resourceClaimName": "c"}]}})
    kube.wait("Pod", lambda o: bool(o and o["status"].get("phase") == "Running"), namespace=ns, name="p",
              timeout=30, what="pod running")
    r = _cli(cluster, node, "--wait", "30")
    assert r.returncode == 0 and "1 of 1 pod(s) evicted" in r.stdout, (r.stdout, r.stderr)
    assert kube.get("Pod", "p", ns) is None
    assert [x["metadata"]["name"] for x in kube.taint_rules()] == [f"dra-harness-drain-{node}"]
    r = _cli(cluster, node, "--undo")
    assert r.returncode == 0 and "deleted" in r.stdout and kube.taint_rules() == []
    r = _cli(cluster, node, "--undo")
    assert "was not there" in r.stdout


def test_drain_of_an_unknown_node_is_refused(cluster):
    r = _cli(cluster, "no-such-node")
    assert r.returncode == 2 and "no node 'no-such-node'" in r.stderr and Kube(str(cluster.kubeconfig)).taint_rules() == []
