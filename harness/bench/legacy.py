"""`make bench` section "legacy": the alignment legacy pods lose, per preset (issue 23's measure).

On one local cluster of a trn1.32xlarge and a trn2.48xlarge node with `platform/legacy.yaml`:
per node and trial (seeded), a quarter of the Neuron devices is held by one-device pods (a node
in use); then one pod asks `aws.amazon.com/neuron: 4` the device-plugin way (the scheduler's
claim from the class's DeviceClass, no constraints) and one pod takes the `training-4` template
(4 devices on one EFA group). Each allocation's topology fraction (harness/platform/topology.py)
is judged from the truth; "alignment lost" = aligned fraction - legacy fraction. An aligned pod
that cannot fit stays pending (counted): that is what alignment costs instead."""

from __future__ import annotations

import random
import statistics
import uuid
from pathlib import Path

from ..backends import bins
from ..kube import WaitTimeout

PRESETS = ("trn1.32xlarge", "trn2.48xlarge")
KIT = bins.ROOT / "platform" / "legacy.yaml"


def _pod(ns: str, name: str, node: str, *, claim: str | None = None, template: str | None = None,
         legacy: int | None = None) -> dict:
    spec: dict = {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 0,
                  "containers": [{"name": "c", "image": "x"}]}
    if legacy:
        spec["containers"][0]["resources"] = {"limits": {"aws.amazon.com/neuron": str(legacy)}}
    else:
        spec["containers"][0]["resources"] = {"claims": [{"name": "d"}]}
        spec["resourceClaims"] = [{"name": "d", **({"resourceClaimName": claim} if claim else
                                                   {"resourceClaimTemplateName": template})}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def _hold(ns: str, name: str, node: str, device: int) -> list[dict]:
    sel = f"device.attributes['neuron.aws.com'].deviceId == {device}"
    return [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
             "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com",
                                                                         "selectors": [{"cel": {"expression": sel}}]}}]}}},
            _pod(ns, name, node, claim=name)]


def _claim_of(kube, ns: str, pod: str, legacy: bool, timeout: float = 15) -> dict | None:
    """The pod's allocated claim, or None when it stays pending for `timeout`."""
    def claim_name(p):
        st = (p or {}).get("status") or {}
        if legacy:
            return (st.get("extendedResourceClaimStatus") or {}).get("resourceClaimName")
        return next((s.get("resourceClaimName") for s in st.get("resourceClaimStatuses") or []), None)
    try:
        pod_obj = kube.wait("Pod", lambda p: bool(claim_name(p)) and bool((p.get("spec") or {}).get("nodeName")),
                            namespace=ns, name=pod, timeout=timeout, what=f"pod {pod} scheduled")
    except WaitTimeout:
        return None
    return kube.wait("ResourceClaim", lambda o: bool(((o or {}).get("status") or {}).get("allocation")),
                     namespace=ns, name=claim_name(pod_obj), timeout=timeout, what="its claim allocated")


def run(artifacts: Path, trials: int = 6, seed: int = 1) -> dict:
    from ..backends.local.backend import LocalBackend
    from ..backends.spec import ClusterSpec, parse_nodes
    from ..kube import Kube
    from ..platform import kit as kitmod
    from ..platform.metrics import legacy_alignment

    name = f"bench-legacy-{uuid.uuid4().hex[:4]}"
    c = LocalBackend().up(ClusterSpec(name=name, nodes=parse_nodes(",".join(PRESETS))), artifacts / name,
                          attached=True, timeout=600)
    rng = random.Random(seed)
    out: dict = {}
    try:
        kube = Kube(str(c.kubeconfig))
        k = kitmod.load(KIT)
        for g in k.classes.values():
            for obj in kitmod.device_classes(g):
                kube.apply(obj)
        truths = c.truths()
        for node in sorted(c.nodes):
            devices = len(truths[node].of_kind("neuron"))
            legacy, aligned, pending = [], [], 0
            for t in range(trials):
                ns = f"legacy-{t}-{uuid.uuid4().hex[:4]}"
                kube.create_namespace(ns)
                g = k.classes["training-4"]
                kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                            "metadata": {"name": g.name, "namespace": ns}, "spec": {"spec": kitmod.claim_spec(g)}})
                for i in rng.sample(range(devices), devices // 4):
                    for o in _hold(ns, f"h{i}", node, i):
                        kube.apply(o)
                for i, (kind, pod) in enumerate((("legacy", _pod(ns, "legacy", node, legacy=4)),
                                                 ("aligned", _pod(ns, "aligned", node, template=g.name)))):
                    kube.apply(pod)
                    claim = _claim_of(kube, ns, pod["metadata"]["name"], kind == "legacy")
                    if claim is None:
                        pending += kind == "aligned"
                    else:
                        (legacy if kind == "legacy" else aligned).append(claim)
                    kube.delete(pod, wait=True, timeout=60)
                    if claim is not None:  # the next pod sees the same held devices, and only those
                        kube.wait("ResourceClaim", lambda o: o is None, namespace=ns, name=claim["metadata"]["name"],
                                  timeout=60, what="the pod's claim gone")
                kube.core.delete_namespace(ns)
            r = legacy_alignment(truths, legacy, aligned)
            out[c.nodes[node].topology] = {**r, "aligned_pending": pending, "trials": trials,
                                           "held_devices": f"{devices // 4} of {devices}"}
    finally:
        LocalBackend().down(name)
    lost = [v["alignment_lost"] for v in out.values() if v.get("alignment_lost") is not None]
    out["mean_alignment_lost"] = round(statistics.mean(lost), 3) if lost else None
    return out
