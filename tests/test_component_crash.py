"""A cluster outlives its own components' crashes, as a node outlives a static pod's.

Each control-plane component and a driver is SIGKILLed mid-run, one at a time, on one cluster.
The supervisor starts it again; afterwards the claim prepared before the crash is still
prepared (pod Running, allocation and reservation kept, the driver's checkpoint holding it), a
new claim allocates and its pod runs, and an informer that watched through the crash saw the
new allocation. Where a restart cannot help (etcd's data directory gone), every wait on the
cluster ends within seconds with one line naming the component, its exit status and its log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid

import pytest

from harness.backends.local import backend
from harness.backends.local.backend import LocalBackend
from harness.backends.spec import ClusterSpec, parse_nodes
from harness.kube import ClusterFailed, Kube
from harness.kube.informer import Informer, start

from .conftest import bins_or_skip, local_cluster

pytestmark = pytest.mark.slow
DRIVER = "refdriver-neuron"  # the per-node process name ends with it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "cr", "trn1.32xlarge", netns=False)


def _proc(name: str, component: str) -> dict:
    st = backend.load_state(name)
    return next(p for p in st.procs if p["name"] == component or p["name"].endswith("." + component))


def _claim_and_pod(ns: str, name: str) -> list[dict]:
    return [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
             "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com"}}]}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
             "spec": {"terminationGracePeriodSeconds": 0, "resourceClaims": [{"name": "d", "resourceClaimName": name}],
                      "containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}]}}]


def _running(kube: Kube, ns: str, name: str, timeout: float = 60) -> dict:
    return kube.wait("Pod", lambda p: p is not None and (p.get("status") or {}).get("phase") == "Running",
                     namespace=ns, name=name, timeout=timeout, what=f"pod {ns}/{name} Running")


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager", DRIVER])
def test_a_killed_component_is_restarted_and_nothing_is_lost(cluster, component):
    kube = Kube(str(cluster.kubeconfig))
    kube.health = cluster.failure
    ns = f"cr-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(ns)
    for o in _claim_and_pod(ns, "before"):
        kube.apply(o)
    _running(kube, ns, "before")
    claim = kube.get("ResourceClaim", "before", ns)
    uid = claim["metadata"]["uid"]
    node = next(iter(cluster.nodes))
    checkpoint = cluster.nodes[node].plugins_dir / "neuron.aws.com" / "checkpoint.json"
    assert uid in checkpoint.read_text()
    seen: dict[str, dict] = {}
    stop = threading.Event()
    claims = Informer(kube, "ResourceClaim",
                      lambda typ, c: seen.__setitem__(c["metadata"]["name"], c) if typ != "DELETED" else None, namespace=ns)
    start([claims], stop)
    try:
        victim = _proc(cluster.name, component)
        t0 = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        while (now := _proc(cluster.name, component))["pid"] == victim["pid"]:
            assert time.monotonic() - t0 < 30, f"{component} was not started again within 30 s"
            time.sleep(0.05)
        detected = time.monotonic() - t0
        for o in _claim_and_pod(ns, "after"):  # retried: the API server may still be coming back
            for _ in range(100):
                try:
                    kube.apply(o)
                    break
                except Exception:
                    time.sleep(0.2)
        _running(kube, ns, "after", timeout=90)
        recovered = time.monotonic() - t0
        # nothing lost: the claim prepared before is still allocated, reserved and checkpointed
        before = kube.get("ResourceClaim", "before", ns)
        assert before["metadata"]["uid"] == uid and before["status"].get("allocation"), before.get("status")
        assert [r["uid"] for r in before["status"]["reservedFor"]] == [kube.get("Pod", "before", ns)["metadata"]["uid"]]
        assert (kube.get("Pod", "before", ns)["status"]["phase"]) == "Running"
        assert uid in checkpoint.read_text(), "the driver's checkpoint lost the claim prepared before the crash"
        deadline = time.monotonic() + 15
        while not (seen.get("after", {}).get("status") or {}).get("allocation"):
            assert time.monotonic() < deadline, f"the informer did not see the new allocation: {claims.counts}"
            time.sleep(0.05)
        print(f"{component}: pid {victim['pid']} -> {now['pid']} after {detected:.2f} s; "
              f"a new claim Running {recovered:.2f} s after the kill; informer {claims.counts}")
    finally:
        stop.set()
        kube.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
        kube.wait("Pod", lambda lst: not lst["items"], namespace=ns, timeout=60, what="pods gone")
        kube.core.delete_namespace(ns)


def test_etcd_without_its_data_fails_the_cluster_in_seconds_with_one_line(tmp_path):
    bins_or_skip()
    name = f"ce-{uuid.uuid4().hex[:6]}"
    c = LocalBackend().up(ClusterSpec(name=name, nodes=parse_nodes("inf2.xlarge"), netns=False), tmp_path,
                          attached=False, timeout=120)
    try:
        kube = Kube(str(c.kubeconfig))
        kube.health = c.failure
        etcd = _proc(name, "etcd")
        data = next(a for a in etcd["argv"] if a.startswith("--data-dir=")).split("=", 1)[1]
        shutil.rmtree(data)  # first: a supervisor that saw etcd dead with its data would restart it
        os.kill(etcd["pid"], signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(ClusterFailed) as e:
            kube.wait("Pod", lambda p: False, namespace="default", name="never", timeout=300, what="a pod that never comes")
        took = time.monotonic() - t0
        msg = str(e.value)
        assert took < 10, f"the wait took {took:.1f} s to hear of the failure"
        assert "etcd" in msg and "status -9" in msg and "data directory" in msg and "\n" not in msg, msg
        assert "etcd" in json.dumps(c.failure())
        print(f"failure reported {took:.2f} s after etcd's data was removed: {msg[:200]}")
    finally:
        LocalBackend().down(name)
