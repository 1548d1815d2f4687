"""Device taints without a cluster: the reference drivers' taints per API version and their
timeAdded, and the oracle's taint rules (tolerations, eviction deadlines, DeviceTaintRules,
the audit against the true health) — each shown to fail where it must."""

from __future__ import annotations

import fakedev
import pytest

from harness.judge import taints as jt
from harness.judge.explain import explain
from harness.judge.oracle import judge
from refdriver import taints as rt

ECC = rt.NEURON_ECC


# -- the reference drivers' side ------------------------------------------------------------------
def test_counters_become_taints_with_the_documented_effects():
    assert rt.neuron_taints({"sram_ecc_uncorrected": 0, "mem_ecc_uncorrected": 0,
                             "mem_ecc_repairable_uncorrected": 0}) == []
    assert rt.neuron_taints({"sram_ecc_uncorrected": 1, "mem_ecc_uncorrected": 2}) == [
        {"key": ECC, "value": "sram-mem", "effect": "NoExecute"}]
    assert rt.neuron_taints({"mem_ecc_repairable_uncorrected": 3}, threshold=4) == [
        {"key": rt.NEURON_REPAIRABLE, "effect": "None"}]
    assert rt.neuron_taints({"mem_ecc_repairable_uncorrected": 4}, threshold=4) == [
        {"key": rt.NEURON_REPAIRABLE, "effect": "NoSchedule"}]
    assert rt.efa_taints({"no_completion_cmds": 1}) == [{"key": rt.EFA_UNRESPONSIVE, "effect": "NoExecute"}]
    assert rt.efa_taints(None) == []


@pytest.mark.parametrize("minor,effects,per_slice", [(34, ["NoExecute"], 128),  # 6 NoExecute fill the 4
                                                      (35, ["NoExecute", "NoSchedule", "None"], 64),
                                                      (37, ["NoExecute", "NoSchedule", "None"], 64)])
def test_taints_fit_each_api_version(minor, effects, per_slice):
    caps = rt.Caps(minor)
    many = [{"key": f"x/{i}", "effect": e} for i, e in enumerate(["None", "NoSchedule", "NoExecute"] * 6)]
    (fitted,) = rt.fit([{"name": "d", "taints": many}], caps)
    assert len(fitted["taints"]) == (4 if minor == 34 else 16)
    assert sorted({t["effect"] for t in fitted["taints"]}) == sorted(set(effects))
    assert fitted["taints"][0]["effect"] == "NoExecute"  # the most severe survive the cut
    assert caps.max_devices(advanced=True) == per_slice and caps.max_devices(advanced=False) == 128
    assert rt.fit([{"name": "d", "taints": [{"key": "k", "effect": "None"}]}], caps) == (
        [{"name": "d"}] if minor == 34 else [{"name": "d", "taints": [{"key": "k", "effect": "None"}]}])


def test_time_added_is_kept_for_the_same_taint_and_new_for_a_changed_one():
    before = [{"name": "d", "taints": [{"key": ECC, "value": "mem", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]}]
    same = rt.stamp([{"name": "d", "taints": [{"key": ECC, "value": "mem", "effect": "NoExecute"}]}], before, now=1e9)
    assert same[0]["taints"][0]["timeAdded"] == "2026-01-01T00:00:00Z"
    changed = rt.stamp([{"name": "d", "taints": [{"key": ECC, "value": "sram-mem", "effect": "NoExecute"}]}], before, now=1e9)
    assert changed[0]["taints"][0]["timeAdded"] == "2001-09-09T01:46:40Z"


# -- the oracle's side -----------------------------------------------------------------------------
@pytest.mark.parametrize("tol,ok", [
    ({"key": ECC, "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),  # empty key + Exists: every taint
    ({"key": ECC, "operator": "Exists", "effect": "NoSchedule"}, False),  # NoSchedule does not cover NoExecute
    ({"key": ECC, "value": "mem"}, True),  # Equal by default
    ({"key": ECC, "value": "sram"}, False),
    ({"key": "other", "operator": "Exists"}, False),
])
def test_toleration_matching(tol, ok):
    assert jt.tolerates(tol, {"key": ECC, "value": "mem", "effect": "NoExecute"}) is ok


def test_eviction_deadline():
    t = {"key": ECC, "effect": "NoExecute", "timeAdded": "2026-12-03T10:00:00Z"}
    added = jt.parse_time(t["timeAdded"])
    assert jt.eviction_deadline(t, None) == added
    assert jt.eviction_deadline(t, [{"key": ECC, "operator": "Exists", "tolerationSeconds": 30},
                                    {"operator": "Exists", "tolerationSeconds": 10}]) == added + 10
    assert jt.eviction_deadline(t, [{"key": ECC, "operator": "Exists"}]) is None  # tolerated forever
    assert jt.eviction_deadline(t, [{"key": ECC, "operator": "Exists", "tolerationSeconds": -5}]) == added
    assert jt.eviction_deadline({**t, "effect": "NoSchedule"}, None) is None


def _slice(node: str, devices: list[dict], driver: str = "neuron.aws.com") -> dict:
    return {"spec": {"driver": driver, "nodeName": node, "pool": {"name": node}, "devices": devices}}


def test_rules_add_to_driver_taints_and_an_empty_selector_takes_all():
    slices = [_slice("n1", [{"name": "neuron-device-0", "taints": [{"key": ECC, "effect": "NoExecute"}]},
                            {"name": "neuron-device-1"}])]
    rules = [{"metadata": {"name": "all"}, "spec": {"deviceSelector": {}, "taint": {"key": "m", "effect": "None"}}},
             {"metadata": {"name": "one"}, "spec": {"deviceSelector": {"device": "neuron-device-1"},
                                                    "taint": {"key": "d", "effect": "NoSchedule"}}},
             {"metadata": {"name": "none"}, "spec": {"taint": {"key": "z", "effect": "NoExecute"}}}]
    got = jt.device_taints(slices, rules)
    assert [(t["key"], t["source"]) for t in got[("neuron.aws.com", "n1", "neuron-device-0")]] == [
        (ECC, "driver"), ("m", "rule all")]
    assert [t["key"] for t in got[("neuron.aws.com", "n1", "neuron-device-1")]] == ["m", "d"]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    tree = tmp_path_factory.mktemp("t") / "n1"
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), tree)
    fakedev.Tree(tree).ecc("neuron3", "mem", 2)
    return {"n1": fakedev.truth_of(tree)}


def test_the_audit_names_an_untainted_failed_device_and_a_tainted_healthy_one(broken):
    taint = {"key": ECC, "effect": "NoExecute", "timeAdded": "2026-12-03T10:00:00Z"}
    right = [_slice("n1", [{"name": "neuron-device-3", "taints": [taint]}, {"name": "neuron-device-4"}])]
    assert jt.audit(broken, right) == []
    wrong = [_slice("n1", [{"name": "neuron-device-3"}, {"name": "neuron-device-4", "taints": [taint]}])]
    assert {(f.truth_id, f.problem) for f in jt.audit(broken, wrong)} == {
        ("neuron3", "driver did not taint"), ("neuron4", "tainted but healthy")}
    seen: dict = {}
    assert jt.audit(broken, right, seen=seen) == []
    moved = [_slice("n1", [{"name": "neuron-device-3", "taints": [{**taint, "timeAdded": "2026-12-03T10:05:00Z"}]}])]
    assert [f.problem for f in jt.audit(broken, moved, seen=seen)] == ["timeAdded moved"]
    jt.audit(broken, [_slice("n1", [{"name": "neuron-device-3"}])], seen=seen)  # the taint went away...
    assert not [f for f in jt.audit(broken, moved, seen=seen) if f.problem == "timeAdded moved"]  # ...a new one is new


def _claim(results: list[dict], reserved: list[str] = (), alloc_time: str = "2026-12-03T10:00:10Z") -> dict:
    return {"metadata": {"name": "c", "namespace": "ns", "uid": "u",
                         "managedFields": [{"manager": "kube-scheduler", "subresource": "status", "time": alloc_time,
                                            "fieldsV1": {"f:status": {"f:allocation": {}}}}]},
            "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com",
                                                                         "count": len(results)}}]}},
            "status": {"allocation": {"devices": {"results": results}},
                       "reservedFor": [{"resource": "pods", "name": p} for p in reserved]}}


def _result(device: str, tolerations: list[dict] | None = None) -> dict:
    r = {"request": "n", "driver": "neuron.aws.com", "pool": "n1", "device": device}
    return {**r, "tolerations": tolerations} if tolerations else r


def test_the_oracle_holds_allocations_and_evictions_to_the_taints(broken):
    key = ("neuron.aws.com", "n1", "neuron-device-3")
    early = {key: [{"key": ECC, "effect": "NoExecute", "timeAdded": "2026-12-03T10:00:00Z", "source": "driver"}]}
    late = {key: [{"key": ECC, "effect": "NoExecute", "timeAdded": "2026-12-03T10:01:00Z", "source": "driver"}]}
    t_late = jt.parse_time("2026-12-03T10:01:00Z")
    # allocated while tainted, untolerated
    v = judge(_claim([_result("neuron-device-3")]), broken, taints=early, now=t_late)
    assert not v.ok and "was allocated while tainted" in str(v), str(v)
    tol = [{"key": ECC, "operator": "Exists", "effect": "NoExecute"}]
    assert judge(_claim([_result("neuron-device-3", tol)]), broken, taints=early, now=t_late).ok
    # tainted after allocation: the pod has until the deadline plus the margin
    assert judge(_claim([_result("neuron-device-3")], ["p"]), broken, taints=late, now=t_late + 5).ok
    v = judge(_claim([_result("neuron-device-3")], ["p"]), broken, taints=late, now=t_late + 30)
    assert not v.ok and "still use neuron-device-3 30 s after" in str(v), str(v)
    secs = [{"key": ECC, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]
    assert judge(_claim([_result("neuron-device-3", secs)], ["p"]), broken, taints=late, now=t_late + 30).ok
    # a failed device handed out with no taint at all
    v = judge(_claim([_result("neuron-device-3")]), broken, taints={}, now=t_late)
    assert not v.ok and "the driver did not taint it" in str(v), str(v)


def test_explain_tells_tainted_apart_from_full_and_unsatisfiable(broken):
    claim = {"metadata": {"name": "c", "namespace": "ns"},
             "spec": {"devices": {"requests": [{"name": "n", "exactly": {
                 "deviceClassName": "neuron.aws.com",
                 "selectors": [{"cel": {"expression": "device.attributes['neuron.aws.com'].deviceId == 3"}}]}}]}}}
    classes = [{"metadata": {"name": "neuron.aws.com"}, "spec": {"selectors": [{"cel": {"expression": "device.driver == 'neuron.aws.com'"}}]}}]
    slices = [_slice("n1", [{"name": "neuron-device-3", "attributes": {"deviceId": {"int": 3}},
                             "taints": [{"key": ECC, "effect": "NoExecute"}]}])]
    tainted = jt.device_taints(slices)
    e = explain(claim, broken, [], classes, slices=slices, taints=tainted)
    assert e.verdict == f"pending: every fitting device is tainted (key {ECC})", str(e)
    tolerating = {**claim, "spec": {"devices": {"requests": [{"name": "n", "exactly": {
        **claim["spec"]["devices"]["requests"][0]["exactly"], "tolerations": [{"operator": "Exists"}]}}]}}}
    assert explain(tolerating, broken, [], classes, slices=slices, taints=tainted).verdict == "fits now"
    none = [_slice("n1", [{"name": "neuron-device-3", "attributes": {"deviceId": {"int": 3}},
                           "taints": [{"key": "info", "effect": "None"}]}])]
    assert explain(claim, broken, [], classes, slices=none, taints=jt.device_taints(none)).verdict == "fits now"
