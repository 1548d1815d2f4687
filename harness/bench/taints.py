"""`make bench` section "taints": how fast faults turn into taints and taints into evictions, on
a local cluster of 4 x trn1.32xlarge (64 Neuron devices) with the real kube-controller-manager's
device-taint eviction controller and the kubelet stand-in deleting evicted pods.

  fault -> taint    an ECC error written into the tree until the driver's slice carries the
                    taint (watched), 10 times                               target <= 2 s
  taint -> evicted  1 pod: the taint seen in the slice until the pod is gone, 5 times;
                    50 pods: one NoExecute DeviceTaintRule over the Neuron driver until each of
                    50 pods is gone (p50, p99 over the pods)                target <= 5 s for 50
  drain             `drain` of one node with 16 pods: rule created until the last is gone
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

NODES = "trn1.32xlarge,trn1.32xlarge,trn1.32xlarge,trn1.32xlarge"
ECC = "neuron.aws.com/ecc-uncorrected"


def _q(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _stats(xs: list[float]) -> dict:
    return {"n": len(xs), "p50_s": round(statistics.median(xs), 3), "p99_s": round(_q(xs, 0.99), 3),
            "max_s": round(max(xs), 3)}


def _claim_and_pod(ns: str, name: str, node: str, device: int) -> list[dict]:
    sel = f"device.attributes['neuron.aws.com'].deviceId == {device}"
    return [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
             "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com",
                                                                         "selectors": [{"cel": {"expression": sel}}]}}]}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
             "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 0,
                      "containers": [{"name": "c", "image": "x"}], "resourceClaims": [{"name": "d", "resourceClaimName": name}]}}]


def _running(kube, ns: str, n: int, timeout: float = 120) -> None:
    kube.wait("Pod", lambda lst: sum(1 for p in lst["items"] if (p.get("status") or {}).get("phase") == "Running") >= n,
              namespace=ns, timeout=timeout, what=f"{n} bench pods running")


def _gone_times(kube, ns: str, names: set[str], t0: float, timeout: float = 120) -> dict[str, float]:
    """Seconds from t0 (monotonic) until each named pod was deleted, by watch."""
    gone: dict[str, float] = {}

    def seen(lst):
        present = {p["metadata"]["name"] for p in lst["items"]}
        now = time.monotonic() - t0
        for n in names - present - set(gone):
            gone[n] = now
        return len(gone) == len(names)

    kube.wait("Pod", seen, namespace=ns, timeout=timeout, what=f"{len(names)} pods evicted")
    return gone


def _taint_seen(kube, node: str, device: str, present: bool, timeout: float = 30) -> None:
    def has(lst):
        for s in lst["items"]:
            if s["spec"].get("nodeName") == node:
                for d in s["spec"].get("devices") or []:
                    if d["name"] == device:
                        return any(t["key"] == ECC for t in d.get("taints") or []) == present
        return False

    kube.wait("ResourceSlice", has, timeout=timeout, what=f"{device} on {node} {'tainted' if present else 'clean'}")


def run(artifacts: Path) -> dict:
    from ..backends.local.backend import LocalBackend
    from ..backends.spec import ClusterSpec, parse_nodes
    from ..kube import Kube
    from ..platform import drain

    name = f"bench-taint-{uuid.uuid4().hex[:4]}"
    c = LocalBackend().up(ClusterSpec(name=name, nodes=parse_nodes(NODES)), artifacts / name, attached=True, timeout=600)
    try:
        kube = Kube(str(c.kubeconfig))
        nodes = sorted(c.nodes)
        node = nodes[0]
        publish = []
        for i in range(10):  # fault -> taint published
            t0 = time.monotonic()
            c.mutate(node, "ecc", f"neuron{i}")
            _taint_seen(kube, node, f"neuron-device-{i}", True)
            publish.append(time.monotonic() - t0)
            c.mutate(node, "heal", f"neuron{i}")
            _taint_seen(kube, node, f"neuron-device-{i}", False)
        one = []
        for i in range(5):  # one pod, taint seen -> pod gone
            ns = f"bench-one-{i}"
            kube.create_namespace(ns)
            for o in _claim_and_pod(ns, "p", node, 10 + i):
                kube.apply(o)
            _running(kube, ns, 1)
            c.mutate(node, "ecc", f"neuron{10 + i}")
            _taint_seen(kube, node, f"neuron-device-{10 + i}", True)
            t0 = time.monotonic()
            one += _gone_times(kube, ns, {"p"}, t0).values()
            c.mutate(node, "heal", f"neuron{10 + i}")
            _taint_seen(kube, node, f"neuron-device-{10 + i}", False)
        ns = "bench-fifty"
        kube.create_namespace(ns)
        names = set()
        for k in range(50):  # 50 pods over the 4 nodes, one device each
            n = f"p{k}"
            names.add(n)
            for o in _claim_and_pod(ns, n, nodes[k // 16], k % 16):
                kube.apply(o)
        _running(kube, ns, 50, timeout=300)
        api = kube.taint_rule_api()
        t0 = time.monotonic()
        rule = drain.rule(api, "bench-all-neuron", driver="neuron.aws.com")
        kube.apply(rule)
        fifty = list(_gone_times(kube, ns, names, t0, timeout=180).values())
        kube.delete(rule)
        ns = "bench-drain"
        kube.create_namespace(ns)
        for k in range(16):
            for o in _claim_and_pod(ns, f"d{k}", nodes[1], k):
                kube.apply(o)
        _running(kube, ns, 16, timeout=300)
        t0 = time.monotonic()
        done = drain.drain(kube, nodes[1], wait=120)
        drained = {"pods": done.pods_before, "evicted": done.pods_before - done.pods_left,
                   "all_gone_s": round(time.monotonic() - t0, 3)}
        return {"fault_to_taint": {**_stats(publish), "target": "<= 2 s"},
                "taint_to_evicted_1_pod": _stats(one),
                "rule_to_evicted_50_pods": {**_stats(fifty), "target": "<= 5 s for 50"},
                "drain_node_16_pods": drained}
    finally:
        LocalBackend().down(name)
