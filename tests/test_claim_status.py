"""Who may write a claim's `status.devices` on the local backend: a driver's identity (its node's
certificate, dra-driver:<node>:<driver>) writes the entries of its own node and driver and no
others, as the associated-node verbs hold a node-bound token on a real node (1.36+). A
certificate has no node association, so the local backend grants the arbitrary-node verbs and an
admission policy (harness/backends/local/rbac.py) does the holding; this test shows it does, with
the real API server, the drivers' own kubeconfigs and an allocation made by the real scheduler."""

from __future__ import annotations

import pytest
from kubernetes import config
from kubernetes.client.rest import ApiException

from harness.kube import Kube
from refdriver import status as statusmod
from refdriver.rest import Rest

from .conftest import local_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "cs", "trn1.2xlarge,trn1.2xlarge", drivers=["refdriver-neuron"])


def _as_driver(cluster, node: str) -> Rest:
    kc = cluster.state_dir / "nodes" / node / "refdriver-neuron.kubeconfig"
    return Rest(config.new_client_from_config(config_file=str(kc)))


def test_a_driver_writes_the_status_of_its_own_node_and_no_other(cluster):
    kube = Kube(str(cluster.kubeconfig))
    a, b = sorted(cluster.nodes)
    kube.create_namespace("cs")
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "c", "namespace": "cs"},
                "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com"}}]}}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "cs"},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": b},
                         "containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                         "resourceClaims": [{"name": "d", "resourceClaimName": "c"}]}})
    claim = kube.wait("ResourceClaim", lambda o: bool(((o or {}).get("status") or {}).get("allocation")),
                      namespace="cs", name="c", timeout=30, what="claim c allocated")
    (r,) = claim["status"]["allocation"]["devices"]["results"]
    assert r["pool"] == b
    other = {**r, "device": "neuron-device-9"}  # an entry for a device this claim does not hold
    with pytest.raises(ApiException) as denied:  # node a's driver, for a claim on node b
        _as_driver(cluster, a).apply_claim_status("cs", "c", statusmod.body("cs", "c", [statusmod.entry(r, "X", {})]),
                                                  "neuron.aws.com")
    assert denied.value.status in (403, 422) and "may write only the status.devices entries of its own node" \
        in str(denied.value.body), denied.value.body
    # node b's driver: its own entry is taken (the driver has written it already when the pod started)
    got = _as_driver(cluster, b).apply_claim_status("cs", "c", statusmod.body("cs", "c", [
        statusmod.entry(r, "NeuronDeviceReady", {"serial": "x"})]), "neuron.aws.com")
    assert [(e["pool"], e["device"]) for e in got["status"]["devices"]] == [(b, r["device"])]
    with pytest.raises(ApiException) as refused:  # the API server: only allocated devices get entries
        _as_driver(cluster, b).apply_claim_status("cs", "c", statusmod.body("cs", "c", [
            statusmod.entry(r, "X", {}), statusmod.entry(other, "X", {})]), "neuron.aws.com")
    assert refused.value.status == 422, refused.value.body
