"""`dra-harness judge`: the oracle's verdict from the command line for a claim made by hand on a
cluster the harness made, with the pytest plugin's text and exit status 1 on WRONG. Shown both
ways on one cluster: a driver with an injected bug (the claim "runs", the verdict is WRONG), then
the same driver without it (ALIGNED)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.kube import Kube

from .conftest import local_cluster

pytestmark = pytest.mark.slow
SEL = "device.attributes['neuron.aws.com'].deviceId == 1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "jc", "trn1.32xlarge")


def _paired_claim(kube: Kube, ns: str, name: str) -> None:
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
                "spec": {"devices": {"requests": [
                    {"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "selectors": [{"cel": {"expression": SEL}}]}},
                    {"name": "e", "exactly": {"deviceClassName": "efa.networking.k8s.aws"}}],
                    "constraints": [{"requests": ["n", "e"], "matchAttribute": "resource.aws.com/devicegroup1_id"}]}}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                "spec": {"containers": [{"name": "c", "image": "none", "resources": {"claims": [{"name": "d"}]}}],
                         "resourceClaims": [{"name": "d", "resourceClaimName": name}]}})
    kube.wait("ResourceClaim", lambda c: bool(c and (c.get("status") or {}).get("allocation")), namespace=ns, name=name,
              timeout=30, what=f"claim {ns}/{name} allocated")


def _judge(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "judge", *args, "--name", cluster.name],
                          capture_output=True, text=True, timeout=60)


def test_judge_says_wrong_for_a_buggy_driver_and_aligned_without_the_bug(cluster):
    kube = Kube(str(cluster.kubeconfig))
    kube.create_namespace("hand")
    cluster.reconfigure({"refdriver-neuron": ["--inject-bug=efa-shift"]})
    _paired_claim(kube, "hand", "shifted")
    r = _judge(cluster, "hand/shifted")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("claim hand/shifted: WRONG") and "the same EFA" in r.stdout, r.stdout
    kube.core.delete_namespaced_pod("shifted", "hand", grace_period_seconds=0)
    kube.res.delete_namespaced_resource_claim("shifted", "hand")
    kube.wait("ResourceClaim", lambda c: c is None, namespace="hand", name="shifted", timeout=30, what="claim gone")
    cluster.reconfigure({})
    _paired_claim(kube, "hand", "right")
    r = _judge(cluster, "hand/right")
    assert r.returncode == 0 and r.stdout.startswith("claim hand/right: ALIGNED"), r.stdout + r.stderr
    r = _judge(cluster, "--all")
    assert r.returncode == 0 and r.stdout.strip().endswith("1 allocated claim judged, 0 WRONG"), r.stdout + r.stderr


def test_judge_refuses_what_it_cannot_judge_in_one_line(cluster):
    r = _judge(cluster, "hand/no-such-claim")
    assert r.returncode == 2 and r.stderr.strip() == "dra-harness: claim hand/no-such-claim not found", r.stderr
    r = subprocess.run([sys.executable, "-m", "harness.cli", "judge", "--all", "--name", "no-such-cluster",
                        "--kubeconfig", str(cluster.kubeconfig)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "ground truth of this cluster is not known" in r.stderr, r.stderr
