"""EFA sharing (consumable capacity) offline: the reference driver's slices and flags, the
oracle's share checks (each can fail), the scheduler's rounding as explain models it, and the
kit's sharing rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fakedev
from harness.judge import sharing
from harness.judge.explain import explain
from harness.judge.oracle import judge
from harness.platform import kit
from refdriver.sharing import PolicyError, SharePolicy, parse_rate

from .test_oracle import CLASSES, efa, neuron

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def truths(trees):
    return {"n1": fakedev.truth_of(trees["trn1.32xlarge"])}


def shared_claim(name: str, uid: str, bdf: str, gbps_list: list[int], share_ids: list[str] | None = None,
                 constraints=()) -> dict:
    reqs = [{"name": f"e{i}", "exactly": {"deviceClassName": "efa.networking.k8s.aws",
                                          "capacity": {"requests": {"bandwidth": f"{g}G"}}}}
            for i, g in enumerate(gbps_list)]
    results = [{"request": f"e{i}", "driver": "dra.net", "pool": "n1", "device": efa(bdf)[2],
                "shareID": (share_ids or [f"{uid}-{i}" for i in range(len(gbps_list))])[i],
                "consumedCapacity": {"bandwidth": f"{g}G"}} for i, g in enumerate(gbps_list)]
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"devices": {"requests": reqs, "constraints": list(constraints)}},
            "status": {"allocation": {"devices": {"results": results}}}}


# -- the driver ---------------------------------------------------------------------------------
def _slices(tree: Path, *flags: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "refdriver.cli", "efa", "--sysfs-root", str(tree), "--dry-run", *flags],
                         capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    return [d for s in json.loads(out.stdout) for d in s["spec"]["devices"]]


def test_shared_efas_publish_their_true_port_rate_with_the_whole_nic_as_default(trees):
    devices = _slices(trees["trn2.48xlarge"], "--share-efa")
    truth = {d.id: d for d in fakedev.truth_of(trees["trn2.48xlarge"]).devices if d.kind == "efa"}
    assert devices and all(d["allowMultipleAllocations"] for d in devices)
    for d in devices:
        rate = truth[d["attributes"]["dra.net/pciAddress"]["string"]].rate_gbps
        assert d["capacity"]["bandwidth"] == {"value": f"{rate}G", "requestPolicy": {
            "default": f"{rate}G", "validRange": {"min": "5G", "max": f"{rate}G", "step": "5G"}}}
    plain = _slices(trees["trn2.48xlarge"])
    assert not any("capacity" in d or "allowMultipleAllocations" in d for d in plain)


def test_share_policy_flags_and_the_doubled_bandwidth_bug(trees):
    d = _slices(trees["trn1.32xlarge"], "--share-efa", "--efa-share-default", "25", "--efa-share-step", "5")[0]
    assert d["capacity"]["bandwidth"]["requestPolicy"]["default"] == "25G"
    bad = _slices(trees["trn1.32xlarge"], "--share-efa", "--inject-bug=bandwidth-doubled")[0]
    assert bad["capacity"]["bandwidth"]["value"] == "200G"


def test_policy_rules():
    assert parse_rate("100 Gb/sec (4X EDR)") == 100 and parse_rate("") is None and parse_rate("fast") is None
    with pytest.raises(PolicyError, match="plus a multiple"):
        SharePolicy(7, 5, 5).check()
    with pytest.raises(PolicyError, match="at least 1"):
        SharePolicy(None, 0, 5).check()
    assert SharePolicy(None, 30, 5).capacity(100)[sharing.BANDWIDTH]["requestPolicy"]["validRange"]["max"] == "95G"
    assert SharePolicy(None, 5, 200).capacity(100) is None  # the rate is below the smallest share: unshared


# -- the oracle ---------------------------------------------------------------------------------
def test_shares_within_the_port_rate_pass(truths):
    a = shared_claim("a", "ua", "0000:10:19.0", [50])
    b = shared_claim("b", "ub", "0000:10:19.0", [50])
    v = judge(a, truths, [a, b])
    assert v.ok, str(v)
    assert any("2 share(s) use 100 of its 100 Gbit/s" in c for c in v.checks), v.checks


def test_shares_over_the_true_port_rate_fail(truths):
    a = shared_claim("a", "ua", "0000:10:19.0", [75])
    b = shared_claim("b", "ub", "0000:10:19.0", [75])
    v = judge(a, truths, [a, b])
    assert not v.ok and any("add up to 150 Gbit/s" in r and "really runs at 100" in r for r in v.reasons), str(v)


def test_one_share_id_given_twice_fails(truths):
    a = shared_claim("a", "ua", "0000:10:19.0", [10], ["same"])
    b = shared_claim("b", "ub", "0000:10:19.0", [10], ["same"])
    v = judge(a, truths, [a, b])
    assert not v.ok and any("shareID same is given to 2 allocations" in r for r in v.reasons), str(v)


def test_an_exclusive_allocation_beside_a_share_fails(truths):
    a = shared_claim("a", "ua", "0000:10:19.0", [10])
    b = {"metadata": {"name": "b", "namespace": "ns", "uid": "ub"},
         "spec": {"devices": {"requests": [{"name": "e", "exactly": {"deviceClassName": "efa.networking.k8s.aws"}}]}},
         "status": {"allocation": {"devices": {"results": [
             {"request": "e", "driver": "dra.net", "pool": "n1", "device": efa("0000:10:19.0")[2]}]}}}}
    v = judge(a, truths, [a, b])
    assert not v.ok and any("also allocated to claim ns/b" in r for r in v.reasons), str(v)


def test_a_neuron_device_handed_out_as_a_share_fails(truths):
    c = shared_claim("a", "ua", "0000:10:19.0", [10])
    c["status"]["allocation"]["devices"]["results"][0].update(driver="neuron.aws.com", device=neuron(3)[2])
    v = judge(c, truths)
    assert not v.ok and any("neuron3 is a neuron device, handed out as a share" in r for r in v.reasons), str(v)


def test_distinct_attribute_must_mean_distinct_physical_devices(truths):
    con = [{"requests": ["e0", "e1"], "distinctAttribute": "dra.net/pciAddress"}]
    same = shared_claim("a", "ua", "0000:10:19.0", [10, 10], constraints=con)
    v = judge(same, truths)
    assert not v.ok and any("requests e0 and e1 got the same physical device 0000:10:19.0" in r for r in v.reasons)
    apart = shared_claim("b", "ub", "0000:10:19.0", [10, 10], constraints=con)
    apart["status"]["allocation"]["devices"]["results"][1]["device"] = efa("0000:20:19.0")[2]
    v = judge(apart, truths)
    assert v.ok and any("2 devices on 2 distinct physical devices" in c for c in v.checks), str(v)


# -- the scheduler's arithmetic, as explain models it -------------------------------------------
CAP = {"value": "100G", "requestPolicy": {"default": "100G", "validRange": {"min": "5G", "max": "100G", "step": "5G"}}}


@pytest.mark.parametrize("asked,want", [(None, 100), ("1G", 5), ("5G", 5), ("6G", 10), ("50G", 50), ("99G", 100),
                                        ("101G", float("inf")), ("500M", 5)])
def test_requests_round_up_like_the_scheduler(asked, want):
    assert sharing.need_gbps(asked, CAP) == want


def test_quantities():
    assert sharing.quantity("1.5Gi") == 1.5 * 2 ** 30 and sharing.quantity("500m") == 0.5
    with pytest.raises(ValueError):
        sharing.quantity("lots")


def test_explain_says_how_a_shared_efa_is_spent(truths, trees):
    slices = [{"spec": {"driver": "dra.net", "nodeName": "n1", "pool": {"name": "n1"}, "devices": [
        {"name": efa("0000:10:19.0")[2], "attributes": {"dra.net/pciAddress": {"string": "0000:10:19.0"},
                                                         "dra.net/rdma": {"bool": True},
                                                         "dra.net/pciDevice": {"string": "Elastic Fabric Adapter (EFA)"}},
         "allowMultipleAllocations": True, "capacity": {"bandwidth": CAP}}]}}]
    held = [shared_claim("a", "ua", "0000:10:19.0", [50]), shared_claim("b", "ub", "0000:10:19.0", [30])]
    want = shared_claim("c", "uc", "0000:10:19.0", [30])
    del want["status"]["allocation"]
    e = explain(want, truths, held, CLASSES, slices=slices)
    assert e.verdict == "cluster full", str(e)
    assert any("needs 30 Gbit/s, 20 of 100 left (shares: ns/a 50, ns/b 30)" in line for line in e.lines), str(e)
    fits = shared_claim("d", "ud", "0000:10:19.0", [20])
    del fits["status"]["allocation"]
    assert explain(fits, truths, held, CLASSES, slices=slices).verdict == "fits now"


# -- the kit ------------------------------------------------------------------------------------
def test_the_sharing_kit_renders_shares_only_for_its_group():
    k = kit.load(ROOT / "platform" / "shared-efa.yaml")
    by = {(o["kind"], o["metadata"]["name"]): o for o in kit.render(k) if o["kind"] in ("DeviceClass",)}
    assert "allowMultipleAllocations == true" in json.dumps(by[("DeviceClass", "gp-paired-inference-efa")])
    assert "allowMultipleAllocations" not in json.dumps(by[("DeviceClass", "gp-exclusive-training-efa")])
    reqs = {g: {r["name"]: r["exactly"] for r in kit.claim_spec(k.classes[g])["devices"]["requests"]} for g in k.classes}
    assert reqs["paired-inference"]["efa"]["capacity"] == {"requests": {"bandwidth": "50G"}}
    assert reqs["paired-research"]["efa"]["capacity"] == {"requests": {"bandwidth": "25G"}}
    assert "capacity" not in reqs["exclusive-training"]["efa"]


def _kit(tmp_path: Path, classes: str) -> Path:
    p = tmp_path / "kit.yaml"
    p.write_text("kit: k\nteams: {t: {namespaces: [ns]}}\nclasses:\n" + classes)
    return p


def _cls(name: str, extra: str = "", efa: bool = True) -> str:
    reqs = "[{name: n, device: neuron, count: 1}" + (", {name: e, device: efa, count: 1}]" if efa else "]")
    return f"  {name}: {{requests: {reqs}, teams: [t], cost_per_device_hour: 1, priority: 1{extra}}}\n"


@pytest.mark.parametrize("classes,says", [
    (_cls("a", ", share_efa_with: [b], efa_share_gbps: 10") + _cls("b"), "'b' does not name 'a' back"),
    (_cls("a", ", share_efa_with: [a, b], efa_share_gbps: 10") + _cls("b", ", share_efa_with: [a, b], efa_share_gbps: 10")
     + _cls("c", ", share_efa_with: [c], efa_share_gbps: 10"), "cannot keep two sharing groups apart"),
    (_cls("a", ", share_efa_with: [a]"), "efa_share_gbps: required with share_efa_with"),
    (_cls("a", ", efa_share_gbps: 10"), "efa_share_gbps: only meaningful with share_efa_with"),
    (_cls("a", ", share_efa_with: [a], efa_share_gbps: 10", efa=False), "requests no EFA to share"),
    (_cls("a", ", share_efa_with: [a], efa_share_gbps: 0"), "an integer in 1..3200"),
    (_cls("a", ", share_efa_with: [zz], efa_share_gbps: 10"), "unknown class 'zz'"),
])
def test_sharing_rules_the_kit_cannot_enforce_are_refused(tmp_path, classes, says):
    with pytest.raises(kit.KitError, match=says):
        kit.load(_kit(tmp_path, classes))


def test_the_kit_terms_are_labels_on_classes_templates_and_claims():
    k = kit.load(ROOT / "platform" / "golden-paths.yaml")
    objs = kit.render(k)
    dc = next(o for o in objs if o["kind"] == "DeviceClass" and o["metadata"]["name"] == "gp-small-inference-neuron")
    assert dc["metadata"]["labels"] == {kit.CLASS_LABEL: "small-inference", kit.COST_LABEL: "1.2", kit.PRIORITY_LABEL: "1000"}
    t = next(o for o in objs if o["kind"] == "ResourceClaimTemplate" and o["metadata"]["namespace"] == "team-research"
             and o["metadata"]["name"] == "small-inference")
    assert t["metadata"]["labels"][kit.TEAM_LABEL] == "research"
    assert t["spec"]["metadata"]["labels"] == t["metadata"]["labels"]  # every claim made from it carries them
