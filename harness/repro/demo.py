"""The oracle-bug scenario `make bench` (--only repro) and tests/test_repro.py capture and replay:
one Neuron device (neuron1) and an EFA that must share its devicegroup1 (the same EFA), and a pod
that uses them. With the Neuron driver's efa-shift bug the scheduler pairs neuron1 with the EFA of
neuron2, and the oracle says WRONG."""

from __future__ import annotations

BUG = {"refdriver-neuron": ["--inject-bug=efa-shift"]}
SEL = "device.attributes['neuron.aws.com'].deviceId == 1"


def paired(namespace: str, claim: str = "paired", pod: str = "p") -> list[dict]:
    """The claim and its pod, to apply in that order."""
    return [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": claim, "namespace": namespace},
             "spec": {"devices": {"requests": [
                 {"name": "neuron", "exactly": {"deviceClassName": "neuron.aws.com",
                                                "selectors": [{"cel": {"expression": SEL}}]}},
                 {"name": "efa", "exactly": {"deviceClassName": "efa.networking.k8s.aws"}}],
                 "constraints": [{"requests": ["neuron", "efa"], "matchAttribute": "resource.aws.com/devicegroup1_id"}]}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": namespace},
             "spec": {"containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                      "resourceClaims": [{"name": "d", "resourceClaimName": claim}]}}]


def run_on(kube, namespace: str = "team-a") -> None:
    """Create the scenario on a cluster and wait for the claim to be allocated."""
    kube.create_namespace(namespace)
    for obj in paired(namespace):
        kube.apply(obj)
    kube.wait("ResourceClaim", lambda o: bool(((o or {}).get("status") or {}).get("allocation")),
              namespace=namespace, name="paired", timeout=30, what="claim paired allocated")
