"""A driver nobody on this project wrote, unmodified: upstream's e2e DRA test driver (built on
the kubeletplugin library, compiled by `make bins` from the same k8s.io/kubernetes module) beside
the reference drivers on one node. The kubelet side behaves as the kubelet's: eager
registration from plugins_registry/, prepare and unprepare over gRPC, de-registration wiping the
driver's slices after the wiping delay, a dead driver named within a second."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from harness.backends import bins
from harness.backends.local import backend
from harness.backends.local.backend import LocalBackend, control
from harness.backends.spec import ClusterSpec, parse_nodes
from harness.kube import Kube

pytestmark = pytest.mark.slow
LOCAL = LocalBackend()
TD = "test-driver.cdi.k8s.io"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        d = bins.ensure(None, build=False)
    except bins.BinsError as e:
        pytest.skip(str(e))
    assert (d / "test-driver").exists()
    os.environ["DRA_HARNESS_WIPING_DELAY"] = "1"  # the kubelet's is 30 s; the supervisor inherits this
    try:
        name = f"x-{uuid.uuid4().hex[:6]}"
        nodes = parse_nodes("trn1.2xlarge", drivers=["refdriver-neuron", "refdriver-efa", "e2e-test-driver"])
        c = LOCAL.up(ClusterSpec(name=name, nodes=nodes), tmp_path_factory.mktemp("art"), attached=True, timeout=120)
    finally:
        os.environ.pop("DRA_HARNESS_WIPING_DELAY", None)
    yield c
    LOCAL.down(name)


@pytest.fixture
def kube(cluster) -> Kube:
    return Kube(str(cluster.kubeconfig))


def _slices(kube: Kube, node: str, driver: str) -> list[dict]:
    return kube.list("ResourceSlice", field_selector=f"spec.nodeName={node},spec.driver={driver}")[0]


def _of(lst: dict, node: str, driver: str) -> list[dict]:
    return [s for s in lst["items"] if s["spec"].get("nodeName") == node and s["spec"]["driver"] == driver]


def test_registered_eagerly_and_publishing_beside_the_reference_drivers(cluster, kube):
    node = next(iter(cluster.nodes))
    st = control(cluster, "status")
    assert st["plugins"][node] == sorted(["dra.net", "neuron.aws.com", TD])
    assert len(st["registration_ms"]) == 3 and max(st["registration_ms"]) < 1000, st["registration_ms"]
    td = _slices(kube, node, TD)
    assert sum(len(s["spec"]["devices"]) for s in td) == 4
    assert {s["spec"]["driver"] for s in kube.list("ResourceSlice")[0]} == {"dra.net", "neuron.aws.com", TD}


def test_allocated_by_the_scheduler_prepared_and_unprepared_with_a_neuron_device(cluster, kube):
    node = next(iter(cluster.nodes))
    ns = f"x-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(ns)
    claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "mixed", "namespace": ns},
             "spec": {"devices": {"requests": [
                 {"name": "t", "exactly": {"deviceClassName": TD, "count": 2}},
                 {"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "count": 1}}],
                 "config": [{"requests": ["t"], "opaque": {"driver": TD, "parameters": {"greeting": "hello-from-claim"}}}]}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                    "resourceClaims": [{"name": "d", "resourceClaimName": "mixed"}], "terminationGracePeriodSeconds": 0}}
    kube.apply(claim)
    kube.apply(pod)
    p = kube.wait("Pod", lambda o: o and (o.get("status") or {}).get("phase") == "Running", namespace=ns, name="p",
                  timeout=30, what="pod p Running (prepared by both drivers)")
    c = kube.get("ResourceClaim", "mixed", ns)
    results = c["status"]["allocation"]["devices"]["results"]
    assert sorted(r["driver"] for r in results) == ["neuron.aws.com", TD, TD] and {r["pool"] for r in results} == {node}
    cdi = json.loads(p["metadata"]["annotations"]["dra-harness.io/cdi-devices"])["mixed"]
    assert any(x.startswith("k8s.neuron.aws.com/") for x in cdi) and any(TD in x for x in cdi), cdi
    spec_files = list(cluster.nodes[node].cdi_dir.glob(f"*{c['metadata']['uid']}*"))
    assert spec_files and any("hello-from-claim" in f.read_text() for f in spec_files)
    # Both drivers advertise DRAResourceHealth; the test driver streams empty reports (nothing
    # feeds its health channel when run standalone), so its devices are Unknown, as on a kubelet.
    # Its two devices share one CDI id (per request), which the kubelet lists once.
    deadline = time.monotonic() + 15
    while True:
        st = kube.get("Pod", "p", ns)["status"]["containerStatuses"][0].get("allocatedResourcesStatus") or []
        health = {r["resourceID"]: r["health"] for s in st for r in s["resources"]}
        if len(health) == 2 and "Healthy" in health.values():
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    assert sorted(health.values()) == ["Healthy", "Unknown"], health
    assert all(h == "Unknown" for rid, h in health.items() if TD in rid)
    kube.core.delete_namespaced_pod("p", ns, grace_period_seconds=0)
    deadline = time.monotonic() + 20
    while list(cluster.nodes[node].cdi_dir.glob(f"*{c['metadata']['uid']}*")):
        assert time.monotonic() < deadline, "both drivers unprepared the claim"
        time.sleep(0.05)
    kube.core.delete_namespace(ns)


def test_restart_by_profile_name_registers_again(cluster, kube):
    node = next(iter(cluster.nodes))
    before = control(cluster, "status")["state"]["procs"]
    cluster.restart_driver(node, "e2e-test-driver")  # returns once the new process has registered
    after = control(cluster, "status")["state"]["procs"]
    pid = lambda ps: next(p["pid"] for p in ps if p["name"].endswith(".e2e-test-driver"))  # noqa: E731
    assert pid(before) != pid(after)
    assert TD in control(cluster, "status")["plugins"][node]
    kube.wait("ResourceSlice", lambda lst: sum(len(s["spec"]["devices"]) for s in _of(lst, node, TD)) == 4,
              timeout=20, what="test-driver slices back")


def test_dead_driver_is_named_within_a_second_and_its_slices_wiped(cluster, kube):
    node = next(iter(cluster.nodes))
    st = backend.load_state(cluster.name)
    td = next(p for p in st.procs if p["name"].endswith(".e2e-test-driver"))
    os.kill(td["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    while td["name"] not in control(cluster, "status")["state"]["crashed"]:
        assert time.monotonic() - t0 < 1.0, "the supervisor did not notice the dead driver within a second"
        time.sleep(0.02)
    noticed = time.monotonic() - t0
    # a SIGKILLed driver leaves its socket; the kubelet notices the broken connection, the
    # stand-in the dead process: its socket is removed as the kubelet's health check would
    kube.wait("ResourceSlice", lambda lst: not _of(lst, node, TD), timeout=15,
              what="the dead driver's slices wiped after the wiping delay")
    assert _slices(kube, node, "neuron.aws.com"), "other drivers' slices stay"
    events, _ = kube.list("Event", namespace="default")
    assert any(e.get("reason") == "DriverExited" and td["name"] in e.get("message", "") for e in events)
    print(f"dead driver noticed after {noticed * 1000:.0f} ms")
