"""Legacy requests: a pod written for AWS's device plugins asks for `aws.amazon.com/neuron: 4` by
count. The kit's `training-4` class names that resource (`legacy_name`, its DeviceClass's
extendedResourceName), so the scheduler makes the pod a claim from that class, with none of the
class's constraints. The pod runs, the oracle judges its claim, and what such pods lose against
the aligned template is measured ("alignment lost to legacy requests").

DRAExtendedResource is alpha in 1.34/1.35 (gates.py turns it on, the kubelet stand-in included),
on in 1.36 and GA in 1.37."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.testing import golden_path_objects, legacy_alignment

KIT = Path(__file__).parent.parent / "platform" / "legacy.yaml"
pytestmark = pytest.mark.topology("trn1.32xlarge")


def _legacy_pod(dra, name: str, resource: str, n: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": dra.ns},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "main", "image": "localhost/dra-harness-refdriver:dev", "command": ["sleep", "86400"],
                "resources": {"limits": {resource: str(n)}}}]}}


def _special_claim(dra, pod: str) -> str:
    """The claim the scheduler made for the pod's extended resources, as the kubelet finds it."""
    got = dra.kube.wait("Pod", lambda o: bool(((o or {}).get("status") or {}).get("extendedResourceClaimStatus")),
                        namespace=dra.ns, name=pod, timeout=30, what=f"pod {pod}'s extended-resource claim")
    return got["status"]["extendedResourceClaimStatus"]["resourceClaimName"]


def _pin(dra, name: str, device: int) -> None:
    sel = [f'device.attributes["neuron.aws.com"].deviceId == {device}']
    dra.create(dra.claim(name, dra.request("n", "neuron.aws.com", selectors=sel)), dra.pod(f"p-{name}", name))
    dra.allocated(name)


def test_a_legacy_pod_runs_on_its_class_and_loses_the_alignment_its_template_keeps(dra):
    dra.create(*golden_path_objects(KIT))
    dra.create(dra.pod("aligned", template="training-4"))
    aligned = dra.claim_of_pod("aligned")
    dra.assert_aligned(aligned)
    # a node in use: every other device of the rest is held, as a day of churn leaves it
    held = {r["device"] for r in dra.get_claim(aligned)["status"]["allocation"]["devices"]["results"]}
    free = [i for i in range(16) if f"neuron-device-{i}" not in held]
    for i in free[::2]:
        _pin(dra, f"x{i}", i)
    dra.create(_legacy_pod(dra, "legacy", "aws.amazon.com/neuron", 4))
    dra.pod_running("legacy")
    special = _special_claim(dra, "legacy")
    claim = dra.get_claim(special)
    results = claim["status"]["allocation"]["devices"]["results"]
    assert len(results) == 4 and {r["driver"] for r in results} == {"neuron.aws.com"}
    assert claim["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] == "gp-training-4-neuron"
    assert not claim["spec"]["devices"].get("constraints")  # what the class's template would have matched
    v = dra.assert_aligned(special)  # right devices, counted, on the truth; no constraint to hold
    assert any(c.endswith(": 4 device(s)") for c in v.checks), v
    lost = legacy_alignment(dra.truths(), [claim], [dra.get_claim(aligned)])
    assert lost["aligned_fraction"] == 1.0 and lost["legacy_fraction"] < 1.0 and lost["alignment_lost"] > 0, lost
    print(f"alignment lost to legacy requests: {lost}")


def test_a_legacy_efa_request_gets_efas_of_the_efa_class(dra):
    dra.create(*golden_path_objects(KIT))
    dra.create(_legacy_pod(dra, "legacy-efa", "vpc.amazonaws.com/efa", 2))
    dra.pod_running("legacy-efa")
    claim = dra.get_claim(_special_claim(dra, "legacy-efa"))
    assert [r["driver"] for r in claim["status"]["allocation"]["devices"]["results"]] == ["dra.net", "dra.net"]
    dra.assert_aligned(claim["metadata"]["name"])
