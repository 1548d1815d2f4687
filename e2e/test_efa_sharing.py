"""EFAs shared by consumable capacity: the reference EFA driver publishes each EFA with a
bandwidth of its port rate (`--share-efa`), the kit's sharing classes ask for a share of the EFA
their Neuron device pairs with, and the oracle holds every share to the true port rate.

Consumable capacity is alpha in 1.34/1.35 (gates.py turns it on) and on from 1.36."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.testing import gbit, golden_path_objects

KIT = Path(__file__).parent.parent / "platform" / "shared-efa.yaml"
EFA_CLASS = "efa.networking.k8s.aws"
pytestmark = pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-efa": ["--share-efa"]})
BUGGY = pytest.mark.topology("trn1.32xlarge", driver_args={
    "refdriver-efa": ["--share-efa", "--inject-bug=bandwidth-doubled", "--inject-bug=share-cdi-collide"]})


def _efa_results(claim: dict) -> list[dict]:
    return [r for r in claim["status"]["allocation"]["devices"]["results"] if r["driver"] == "dra.net"]


def _pinned(bdf: str) -> list[str]:
    return [f'device.attributes["dra.net"].pciAddress == "{bdf}"']


def _cdi(dra, pod: str) -> dict[str, list[str]]:
    return json.loads(dra.kube.get("Pod", pod, dra.ns)["metadata"]["annotations"]["dra-harness.io/cdi-devices"])


def test_two_single_device_pods_share_their_paired_efa_and_a_share_beyond_its_bandwidth_stays_pending(dra):
    dra.create(*golden_path_objects(KIT))
    efas = {}
    for p in ("a", "b"):
        dra.create(dra.pod(p, template="paired-inference"))
        claim = dra.claim_of_pod(p)
        v = dra.assert_aligned(claim)  # devicegroup1_id: the share is of the EFA the device pairs with
        assert any("really share the same EFA" in c for c in v.checks), v
        (r,) = _efa_results(dra.get_claim(claim))
        assert r.get("shareID") and gbit(r["consumedCapacity"]["bandwidth"]) == 50, r
        efas[p] = r
        dra.pod_running(p)
    if efas["a"]["device"] == efas["b"]["device"]:
        assert efas["a"]["shareID"] != efas["b"]["shareID"]
    bdf = next(d["truth_id"] for d in dra.judge(dra.claim_of_pod("a")).devices if d["driver"] == "dra.net")
    # 60 more on a's EFA: at most 50 of its 100 Gbit/s are left
    dra.create(dra.claim("over", dra.request("efa", EFA_CLASS, selectors=_pinned(bdf), capacity={"bandwidth": "60G"})),
               dra.pod("p-over", "over"))  # a claim is allocated only for a pod the scheduler places
    dra.unschedulable("p-over")
    dra.stays_pending("over")
    e = dra.explain("over")
    assert e.verdict == "cluster full", str(e)
    assert any("request efa needs 60 Gbit/s" in line and "of 100 left" in line for line in e.lines), str(e)


def test_a_claim_that_names_no_bandwidth_gets_a_whole_efa_never_one_with_shares(dra):
    bdf = "0000:a0:19.0"
    dra.create(dra.claim("share", dra.request("efa", EFA_CLASS, selectors=_pinned(bdf), capacity={"bandwidth": "5G"})),
               dra.pod("p-share", "share"))
    dra.assert_aligned("share")
    dra.create(dra.claim("whole", dra.request("efa", EFA_CLASS, selectors=_pinned(bdf))), dra.pod("p-whole", "whole"))
    dra.unschedulable("p-whole")  # it would consume the default share: the whole 100 Gbit/s
    dra.stays_pending("whole")
    dra.create(dra.claim("elsewhere", dra.request("efa", EFA_CLASS)), dra.pod("p-elsewhere", "elsewhere"))
    v = dra.assert_aligned("elsewhere")
    (r,) = _efa_results(dra.get_claim("elsewhere"))
    assert gbit(r["consumedCapacity"]["bandwidth"]) == 100 and r["device"] != "pci-0000-a0-19-0", r
    assert any("1 share(s) use 100 of its 100" in c for c in v.checks), v


def test_two_shares_of_one_efa_in_one_claim_are_two_cdi_devices_and_distinct_attribute_splits_them(dra):
    bdf = "0000:90:19.0"
    two = [dra.request(n, EFA_CLASS, selectors=_pinned(bdf), capacity={"bandwidth": "30G"}) for n in ("x", "y")]
    dra.create(dra.claim("two", *two), dra.pod("p", "two"))
    v = dra.assert_aligned("two")
    rs = _efa_results(dra.get_claim("two"))
    assert {r["device"] for r in rs} == {"pci-0000-90-19-0"} and len({r["shareID"] for r in rs}) == 2, rs
    assert any("2 share(s) use 60 of its 100" in c for c in v.checks), v
    dra.pod_running("p")
    assert dra.check_prepared("p") == []
    assert len(set(_cdi(dra, "p")["two"])) == 2
    apart = [dra.request(n, EFA_CLASS, capacity={"bandwidth": "10G"}) for n in ("x", "y")]
    dra.create(dra.claim("apart", *apart, distinct=("dra.net/pciAddress", ["x", "y"])), dra.pod("p-apart", "apart"))
    v = dra.assert_aligned("apart")
    assert len({r["device"] for r in _efa_results(dra.get_claim("apart"))}) == 2
    assert any(c.startswith("distinctAttribute dra.net/pciAddress: 2 devices on 2 distinct") for c in v.checks), v


@BUGGY
def test_the_oracle_catches_a_driver_that_publishes_twice_the_bandwidth(dra):
    bdf = "0000:20:19.0"
    for c in ("c1", "c2"):  # 150 Gbit/s of a 100 Gbit/s NIC: the scheduler believes the driver's 200
        dra.create(dra.claim(c, dra.request("efa", EFA_CLASS, selectors=_pinned(bdf), capacity={"bandwidth": "75G"})),
                   dra.pod(f"p-{c}", c))
        dra.allocated(c)
    v = dra.judge("c2")
    assert not v.ok and any("over-committed" in r and "really runs at 100" in r for r in v.reasons), v


@BUGGY
def test_the_kubelet_stand_in_sees_two_shares_collapse_into_one_cdi_device(dra):
    bdf = "0000:20:1a.0"
    two = [dra.request(n, EFA_CLASS, selectors=_pinned(bdf), capacity={"bandwidth": "30G"}) for n in ("x", "y")]
    dra.create(dra.claim("two", *two), dra.pod("p", "two"))
    dra.allocated("two")
    assert dra.judge("two").ok  # the allocation itself is right: the fault is in NodePrepareResources
    dra.pod_running("p")
    (problem,) = dra.check_prepared("p")
    assert "2 allocated device(s)/share(s)" in problem and "1 distinct CDI device" in problem, problem
