"""The oracle and the explanations on synthetic allocations: each check can fail, and says why."""

from __future__ import annotations

import pytest

import fakedev
from harness.judge.capacity import stranded
from harness.judge.explain import explain, fits
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
    assert fits(four["spec"]["devices"], truths["n1"], set(), {"neuron.aws.com": ("neuron", False)}).ok


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
