"""The oracle and the explanations on synthetic allocations: each check can fail, and says why."""

from __future__ import annotations

import pytest

import fakedev
from harness.judge.capacity import stranded
from harness.judge.explain import candidates, class_selectors, explain, fits
from harness.judge.oracle import judge

CLASSES = [{"metadata": {"name": "neuron.aws.com"}, "spec": {"selectors": [{"cel": {"expression": 'device.driver == "neuron.aws.com"'}}]}},
           {"metadata": {"name": "efa.networking.k8s.aws"}, "spec": {"selectors": [{"cel": {"expression":
            "device.driver == \"dra.net\" && device.attributes[\"dra.net\"].pciDevice == 'Elastic Fabric Adapter (EFA)'"}}]}}]


@pytest.fixture(scope="module")
def truths(trees):
    return {"n1": fakedev.truth_of(trees["trn1.32xlarge"]), "n2": fakedev.truth_of(trees["trn2.48xlarge"])}


def claim(requests, constraints=(), results=(), node="n1", name="c", uid="u1"):
    c = {"metadata": {"name": name, "namespace": "ns", "uid": uid},
         "spec": {"devices": {"requests": requests, "constraints": list(constraints)}}, "status": {}}
    if results:
        c["status"]["allocation"] = {"devices": {"results": [
            {"request": req, "driver": drv, "pool": node, "device": dev} for req, drv, dev in results]},
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}
    return c


def neuron(n, req="n"):
    return (req, "neuron.aws.com", f"neuron-device-{n}")


def efa(bdf, req="e"):
    return (req, "dra.net", "pci-" + bdf.replace(":", "-").replace(".", "-"))


R = lambda name, cls, count=1: {"name": name, "exactly": {"deviceClassName": cls, "count": count}}  # noqa: E731
DG = lambda k, reqs: {"requests": reqs, "matchAttribute": f"resource.aws.com/devicegroup{k}_id"}  # noqa: E731


def test_aligned_group_of_four_passes(truths):
    v = judge(claim([R("n", "neuron.aws.com", 4)], [DG(4, ["n"])], [neuron(i) for i in range(4)]), truths)
    assert v.ok, str(v)


def test_misaligned_group_fails_with_reason(truths):
    v = judge(claim([R("n", "neuron.aws.com", 4)], [DG(4, ["n"])], [neuron(i) for i in (0, 1, 2, 4)]), truths)
    assert not v.ok and "one EFA group of 4" in str(v) and "neuron4: ['1']" in str(v)


def test_neuron_with_the_wrong_efa_fails(truths):
    c = claim([R("n", "neuron.aws.com"), R("e", "efa.networking.k8s.aws")], [DG(1, ["n", "e"])],
              [neuron(1), efa("0000:a0:1a.0")])
    v = judge(c, truths)
    assert not v.ok and "the same EFA" in str(v)
    ok = judge(claim(c["spec"]["devices"]["requests"], [DG(1, ["n", "e"])], [neuron(1), efa("0000:10:1a.0")]), truths)
    assert ok.ok


def test_pcie_root_and_numa_intents(truths):
    root = {"requests": ["n", "e"], "matchAttribute": "resource.kubernetes.io/pcieRoot"}
    assert judge(claim([R("n", "neuron.aws.com"), R("e", "efa.networking.k8s.aws")], [root],
                       [neuron(0), efa("0000:10:19.0")]), truths).ok
    bad = judge(claim([R("n", "neuron.aws.com"), R("e", "efa.networking.k8s.aws")], [root],
                      [neuron(0), efa("0000:20:19.0")]), truths)
    assert not bad.ok and "one PCIe root complex" in str(bad)
    numa = {"requests": ["n"], "matchAttribute": "dra.net/numaNode"}
    assert not judge(claim([R("n", "neuron.aws.com", 2)], [numa], [neuron(0), neuron(2)]), truths).ok


def test_counts_nodes_duplicates_and_missing_devices(truths):
    assert "asked for 4 devices, got 3" in str(judge(claim([R("n", "neuron.aws.com", 4)], [], [neuron(i) for i in range(3)]), truths))
    assert "allocated twice" in str(judge(claim([R("n", "neuron.aws.com", 2)], [], [neuron(1), neuron(1)]), truths))
    assert "does not exist" in str(judge(claim([R("n", "neuron.aws.com")], [], [neuron(40)]), truths))
    assert "no ground truth" in str(judge(claim([R("n", "neuron.aws.com")], [], [neuron(1)], node="elsewhere"), truths))
    other = claim([R("n", "neuron.aws.com")], [], [neuron(1)], name="other", uid="u2")
    assert "also allocated to claim ns/other" in str(judge(claim([R("n", "neuron.aws.com")], [], [neuron(1)]), truths, [other]))
    assert "not allocated" in str(judge(claim([R("n", "neuron.aws.com")]), truths))


def test_removed_and_unusable_devices(tree):
    fakedev.Tree(tree).remove("neuron2")
    fakedev.Tree(tree).duplicate_routing_id("neuron3")
    t = {"n1": fakedev.truth_of(tree)}
    v = judge(claim([R("n", "neuron.aws.com", 2)], [], [neuron(2), neuron(3)]), t)
    assert "hot-removed" in str(v) and "duplicate-routing-id" in str(v)


def test_unknown_intent_is_reported_not_judged(truths):
    c = claim([R("n", "neuron.aws.com", 2)], [{"requests": ["n"], "matchAttribute": "example.com/rack"}],
              [neuron(0), neuron(5)])
    v = judge(c, truths)
    assert v.ok and "no hardware intent" in str(v)


def test_explain_unsatisfiable_full_and_fits(truths):
    dg1 = claim([R("n", "neuron.aws.com", 4), R("e", "efa.networking.k8s.aws", 2)], [DG(1, ["n", "e"])])
    e = explain(dg1, truths, [], CLASSES)
    assert e.verdict == "cannot be satisfied with this topology"
    assert "the largest has 2" in str(e) and "the largest has 1" in str(e)
    four = claim([R("n", "neuron.aws.com", 4)], [DG(4, ["n"])], name="late")
    holders = [claim([R("n", "neuron.aws.com")], [], [neuron(i)], node=n, name=f"h{n}{i}", uid=f"h{n}{i}")
               for n in ("n1", "n2") for i in (0, 4, 8, 12)]
    e = explain(four, truths, holders, CLASSES)
    assert e.verdict == "cluster full" and "ns/hn10" in str(e)
    assert explain(four, truths, holders[:4], CLASSES).verdict == "fits now"
    assert fits(four["spec"]["devices"], candidates("n1", truths["n1"], None), set(), class_selectors(CLASSES)).ok


def test_stranded_capacity(truths):
    holders = [claim([R("n", "neuron.aws.com")], [], [neuron(i)], name=f"h{i}", uid=f"h{i}") for i in (0, 5)]
    rows = {r.node: r for r in stranded(truths, holders)}
    assert rows["n1"].free == 14 and rows["n1"].stranded == {4: 6, 8: 6, 16: 14}
    assert rows["n2"].stranded == {4: 0, 8: 0, 16: 0}


def test_cdi_checker_can_fail():
    from .cdi_check import problems, qualified

    good = {"cdiVersion": "0.5.0", "kind": "k8s.neuron.aws.com/neuron", "devices": [{"name": "u-neuron-device-1",
            "containerEdits": {"deviceNodes": [{"path": "/dev/neuron1", "hostPath": "/dev/neuron1"}]}}],
            "containerEdits": {"env": ["A=1"]}}
    assert problems(good) == []
    bad = {**good, "cdiVersion": "0.4.0", "kind": "neuron", "extra": 1, "containerEdits": {"env": ["A"], "bogus": []}}
    p = " ".join(problems(bad))
    assert "unknown top-level keys" in p and "not vendor/class" in p and "needs cdiVersion >= 0.5.0" in p
    assert "not NAME=value" in p and "unknown containerEdits keys" in p
    assert qualified("k8s.dra.net/efa=abc-pci-0000-10-19-0") and not qualified("efa=x")


# -- any driver: identities from profiles, CEL selectors, every driver's devices counted


def _slice(node: str, driver: str, devices: dict[str, dict]) -> dict:
    return {"spec": {"driver": driver, "nodeName": node, "pool": {"name": node},
                     "devices": [{"name": n, "attributes": a} for n, a in devices.items()]}}


TD_CLASS = {"metadata": {"name": "td"}, "spec": {"selectors": [{"cel": {"expression": 'device.driver == "test-driver.cdi.k8s.io"'}}]}}


def test_explain_counts_another_drivers_devices_and_evaluates_cel(truths):
    td = _slice("n1", "test-driver.cdi.k8s.io", {f"device-0{i}": {"index": {"int": i}} for i in range(4)})
    four = claim([R("t", "td", 4)])
    e = explain(four, {"n1": truths["n1"]}, [], [TD_CLASS], slices=[td])
    assert e.verdict == "fits now", str(e)
    five = claim([R("t", "td", 5)])
    e = explain(five, {"n1": truths["n1"]}, [], [TD_CLASS], slices=[td])
    assert e.verdict == "cannot be satisfied with this topology" and "only 4 usable" in str(e), str(e)
    picky = claim([{"name": "t", "exactly": {"deviceClassName": "td", "count": 2, "selectors": [
        {"cel": {"expression": "device.attributes['test-driver.cdi.k8s.io'].index >= 3"}}]}}])
    e = explain(picky, {"n1": truths["n1"]}, [], [TD_CLASS], slices=[td])
    assert "only 1 usable" in str(e), "the request's CEL selector was evaluated"
    missing = claim([{"name": "t", "exactly": {"deviceClassName": "td", "selectors": [
        {"cel": {"expression": "device.attributes['nope.example.com'].x == 1"}}]}}])
    assert "only 0 usable" in str(explain(missing, {"n1": truths["n1"]}, [], [TD_CLASS], slices=[td]))
    # held devices of another driver count as held
    holder = claim([R("t", "td", 3)], results=[("t", "test-driver.cdi.k8s.io", f"device-0{i}") for i in range(3)],
                   name="h", uid="h")
    e = explain(claim([R("t", "td", 2)]), {"n1": truths["n1"]}, [holder], [TD_CLASS], slices=[td])
    assert e.verdict == "cluster full" and "ns/h" in str(e), str(e)


def test_profile_identities_map_another_drivers_devices(truths):
    from harness.judge.identity import Identity

    ids = {"neuron.example.com": Identity.from_profile("neuron.example.com", {"index_attribute": "neuron.example.com/index"}),
           "nic.example.com": Identity.from_profile("nic.example.com", {"pci_attribute": "nic.example.com/pci"}),
           "named.example.com": Identity.from_profile("named.example.com", {"name_pattern": r"nd(?P<index>\d+)"})}
    devs = {("neuron.example.com", "n1", f"x{i}"): {"neuron.example.com/index": {"int": i}} for i in range(8)}
    devs[("nic.example.com", "n1", "nic0")] = {"nic.example.com/pci": {"string": "0000:10:1a.0"}}
    c = claim([R("n", "c", 4)], [DG(4, ["n"])])
    c["status"]["allocation"] = {"devices": {"results": [
        {"request": "n", "driver": "neuron.example.com", "pool": "n1", "device": f"x{i}"} for i in (0, 1, 2, 4)]}}
    v = judge(c, truths, [], ids, devs)
    assert not v.ok and "one EFA group of 4" in str(v), str(v)
    c["status"]["allocation"]["devices"]["results"][3]["device"] = "x3"
    assert judge(c, truths, [], ids, devs).ok
    pair = claim([R("n", "c"), R("e", "e")], [DG(1, ["n", "e"])], [("n", "named.example.com", "nd1"),
                                                                     ("e", "nic.example.com", "nic0")])
    assert judge(pair, truths, [], ids, devs).ok, "a name pattern and a PCI attribute map too"
    stranger = claim([R("n", "c")], [], [("n", "unknown.example.com", "gpu-0")])
    v = judge(stranger, truths, [], ids, devs)
    assert v.unjudged and "not judged" in v.unjudged[0]
    with pytest.raises(ValueError, match="needs a group"):
        Identity.from_profile("bad.example.com", {"name_pattern": "gpu-(\\d+)"})
