"""Device health from a driver's DRAResourceHealth stream to the pod's
status.containerStatuses[].allocatedResourcesStatus, as the kubelet reports it: an uncorrected
ECC error injected into the fake tree turns the allocated Neuron device Unhealthy, with the
driver's message; a driver that stops reporting makes it Unknown."""

from __future__ import annotations

import time
import uuid

import pytest

from harness.kube import Kube

from .conftest import local_cluster
from refdriver import devhealth


def test_neuron_and_efa_health_come_from_the_tree(tmp_path):
    import fakedev

    tree = tmp_path / "t"
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), tree)
    assert devhealth.neuron_health(tree, 0) == ("HEALTHY", "")
    (tree / "sys/class/neuron_device/neuron0/stats/hardware/sram_ecc_uncorrected").write_text("2\n")
    assert devhealth.neuron_health(tree, 0) == ("UNHEALTHY", "uncorrected ECC errors: sram_ecc_uncorrected=2")
    assert devhealth.neuron_health(tree, 99)[0] == "UNKNOWN"
    rdma = sorted(p.name for p in (tree / "sys/class/infiniband").iterdir())[0]
    assert devhealth.efa_health(tree, rdma) == ("HEALTHY", "")
    (tree / f"sys/class/infiniband/{rdma}/ports/1/state").write_text("1: DOWN\n")  # never on real EFAs
    assert devhealth.efa_health(tree, rdma) == ("HEALTHY", "")
    (tree / f"sys/class/infiniband/{rdma}/hw_counters/no_completion_cmds").write_text("3\n")
    assert devhealth.efa_health(tree, rdma) == ("UNHEALTHY", f"{rdma}: 3 admin command(s) timed out (no_completion_cmds)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "h", "trn1.2xlarge")


def _health(kube: Kube, ns: str, name: str, want: str, timeout: float = 20) -> list[dict]:
    end = time.monotonic() + timeout
    while True:
        pod = kube.core.read_namespaced_pod(name, ns).to_dict()
        statuses = (pod["status"].get("container_statuses") or [{}])[0].get("allocated_resources_status") or []
        got = [r for s in statuses for r in s["resources"]]
        if got and all(r["health"] == want for r in got):
            return statuses
        if time.monotonic() > end:
            raise AssertionError(f"wanted every device {want}; pod reports {statuses}")
        time.sleep(0.2)


def test_an_ecc_error_makes_the_allocated_device_unhealthy_in_pod_status(cluster):
    kube = Kube(str(cluster.kubeconfig))
    node = next(iter(cluster.nodes))
    ns = f"h-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(ns)
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "c", "namespace": ns},
                # tolerates the driver's NoExecute ECC taint, or the pod is evicted before its status says why
                "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "tolerations": [
                    {"key": "neuron.aws.com/ecc-uncorrected", "operator": "Exists", "effect": "NoExecute"}]}}]}}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
                "spec": {"containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                         "resourceClaims": [{"name": "d", "resourceClaimName": "c"}], "terminationGracePeriodSeconds": 0}})
    statuses = _health(kube, ns, "p", "Healthy")
    assert [s["name"] for s in statuses] == ["claim:d"]
    (res,) = statuses[0]["resources"]
    assert res["resource_id"].startswith("k8s.neuron.aws.com/neuron=")  # the first CDI id, as the kubelet names it
    cluster.mutate(node, "ecc", "neuron0", "mem", "3")
    (bad,) = _health(kube, ns, "p", "Unhealthy")[0]["resources"]
    assert bad["message"] == "uncorrected ECC errors: mem_ecc_uncorrected=3"
    cluster.mutate(node, "reset")
    _health(kube, ns, "p", "Healthy")
