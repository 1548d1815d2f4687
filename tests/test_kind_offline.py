"""kind for real on this machine: the engine (`dra-harness engine up` when none answers), a node
image built without a registry, `kind create cluster` with this host's settings, the reference
drivers registered with real kubelets and publishing, and a workload container started by
containerd with its claim's CDI devices: inside it, exactly the allocated /dev/neuronN nodes and
the matching NEURON_RT_VISIBLE_CORES. `down` leaves no node container and restores the host
sysctls the kubelets rewrote. Minutes the first time (images are cached by content after)."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.backends.kind.backend import IMAGE, KindBackend, _read_sysctls
from harness.backends.spec import ClusterSpec, parse_nodes
from harness.kube import Kube

from .conftest import bins_or_skip

pytestmark = pytest.mark.slow
KIND = KindBackend()


@pytest.fixture(scope="module")
def cluster(docker_engine, tmp_path_factory):
    bins_or_skip()
    name = f"ko-{uuid.uuid4().hex[:5]}"
    before = _read_sysctls()
    c = KIND.up(ClusterSpec(name=name, nodes=parse_nodes("trn1.32xlarge")), tmp_path_factory.mktemp("kind"))
    yield c, before
    KIND.down(name)


def test_real_kubelets_register_the_drivers_and_they_publish(cluster):
    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    nodes, _ = kube.list("Node")
    assert len(nodes) == 2 and all(n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
                                   for n in nodes)
    worker = next(iter(c.nodes))
    slices, _ = kube.list("ResourceSlice")
    by_driver = {}
    for s in slices:
        if s["spec"].get("nodeName") == worker:
            by_driver[s["spec"]["driver"]] = by_driver.get(s["spec"]["driver"], 0) + len(s["spec"]["devices"])
    assert by_driver == {"neuron.aws.com": 16, "dra.net": 8}


def test_inside_the_container_exactly_the_allocated_neuron_devices(cluster):
    """The kind-only scenario: containerd applies the CDI spec the driver wrote at prepare."""
    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    ns = f"ko-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "two", "namespace": ns},
                "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "count": 2}}],
                                     "constraints": [{"requests": ["n"], "matchAttribute": "resource.aws.com/devicegroup4_id"}]}}})
    script = "for d in /dev/neuron*; do echo DEV=$d; done; echo CORES=$NEURON_RT_VISIBLE_CORES; sleep 3600"
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": ns},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "w", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sh", "-c", script], "resources": {"claims": [{"name": "d"}]}}],
                         "resourceClaims": [{"name": "d", "resourceClaimName": "two"}]}})
    kube.wait("Pod", lambda p: p is not None and p["status"].get("phase") == "Running", what="workload running",
              timeout=120, namespace=ns, name="w")
    end = time.monotonic() + 30
    while "CORES=" not in (log := kube.core.read_namespaced_pod_log("w", ns)) and time.monotonic() < end:
        time.sleep(0.5)
    claim = kube.get("ResourceClaim", "two", ns)
    idx = sorted(int(r["device"].rsplit("-", 1)[1]) for r in claim["status"]["allocation"]["devices"]["results"])
    assert sorted(line[4:] for line in log.splitlines() if line.startswith("DEV=")) == sorted(f"/dev/neuron{i}" for i in idx)
    cores = [str(core) for i in idx for core in (2 * i, 2 * i + 1)]  # trn1: 2 NeuronCores per device, LNC=1
    got = next(line[6:] for line in log.splitlines() if line.startswith("CORES="))
    expanded = sorted(int(x) for part in got.split(",") for x in (
        range(int(part.split("-")[0]), int(part.split("-")[1]) + 1) if "-" in part else [int(part)]))
    assert expanded == sorted(int(x) for x in cores), got


def test_down_removes_the_nodes_and_restores_the_host(cluster):
    c, before = cluster
    KIND.down(c.name)
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    assert not [n for n in names if n.startswith(c.name + "-")]
    assert _read_sysctls() == before
