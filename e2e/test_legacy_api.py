"""Manifests written for the beta DRA APIs still work: AWS's published claim templates are
`resource.k8s.io/v1beta1` (requests with `deviceClassName` and `count` at the top), newer ones
`v1beta2` (`exactly`). A cluster serves both beside v1 unless `--beta-dra-apis off`
(gates.py says why it is on by default, as EKS does)."""

from __future__ import annotations

import pytest

DG4 = "resource.aws.com/devicegroup4_id"
V1BETA1 = {"name": "neurons", "deviceClassName": "neuron.aws.com", "allocationMode": "ExactCount", "count": 4}
V1BETA2 = {"name": "neurons", "exactly": {"deviceClassName": "neuron.aws.com", "allocationMode": "ExactCount", "count": 4}}


@pytest.mark.parametrize("version,request_", [("v1beta1", V1BETA1), ("v1beta2", V1BETA2)])
def test_a_beta_claim_template_round_trips_and_its_pods_land_aligned(dra, version, request_):
    api = f"resource.k8s.io/{version}"
    if not dra.kube.serves(api, "ResourceClaimTemplate"):
        pytest.skip(f"the cluster does not serve {api} (--beta-dra-apis off)")
    name = f"aws-4-neurons-{version}"
    dra.create({"apiVersion": api, "kind": "ResourceClaimTemplate", "metadata": {"name": name},
                "spec": {"spec": {"devices": {"requests": [request_],
                                              "constraints": [{"requests": ["neurons"], "matchAttribute": DG4}]}}}})
    def read(v: str) -> dict:
        return dra.kube.dyn.resources.get(api_version=v, kind="ResourceClaimTemplate").get(name=name, namespace=dra.ns).to_dict()

    as_v1 = read("resource.k8s.io/v1")  # read back as v1: converted, nothing lost
    (req,) = as_v1["spec"]["spec"]["devices"]["requests"]
    assert req["exactly"]["deviceClassName"] == "neuron.aws.com" and req["exactly"]["count"] == 4, req
    assert as_v1["spec"]["spec"]["devices"]["constraints"] == [{"requests": ["neurons"], "matchAttribute": DG4}]
    (again,) = read(api)["spec"]["spec"]["devices"]["requests"]
    assert {k: again.get(k) for k in request_} == request_, again  # and back in its own version, as written
    dra.create(dra.pod("p", template=name))
    v = dra.assert_aligned(dra.claim_of_pod("p"))
    assert any("one EFA group of 4" in c for c in v.checks), v
