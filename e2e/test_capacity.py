"""Fragmentation and a full cluster, on private clusters: aligned claims go where an aligned
group is still free, stay pending with "cluster full" when none is, and stranded capacity is
reported."""

from __future__ import annotations

import pytest

DG4 = "resource.aws.com/devicegroup4_id"


def _take(dra, node: str, devices: list[int], prefix: str) -> None:
    for i in devices:
        name = f"{prefix}{i}"
        dra.create(dra.claim(name, dra.request("n", "neuron.aws.com",
                                               selectors=[f"device.attributes['neuron.aws.com'].deviceId == {i}"])),
                   dra.pod(name, name, node=node))
    for i in devices:
        dra.allocated(f"{prefix}{i}")


@pytest.mark.topology("trn2.48xlarge", nodes=2, exclusive=True)
def test_fragmentation_then_cluster_full(dra, dra_truth):
    a, b = sorted(dra_truth)
    _take(dra, a, [0, 4, 8, 12], "a")  # one device of every EFA group of 4 on node a
    dra.create(dra.claim("four", dra.request("n", "neuron.aws.com", 4), match=(DG4, ["n"])), dra.pod("four", "four"))
    v = dra.assert_aligned("four")
    assert v.node == b, "with node a fragmented, the aligned claim must go to node b"
    dra.delete("Pod", "four")
    dra.delete("ResourceClaim", "four")
    _take(dra, b, [1, 5, 9, 13], "b")
    dra.create(dra.claim("late", dra.request("n", "neuron.aws.com", 4), match=(DG4, ["n"])), dra.pod("late", "late"))
    dra.unschedulable("late")
    e = dra.explain("late")
    assert e.verdict == "cluster full", str(e)
    assert f"{dra.ns}/a0" in str(e) and f"{dra.ns}/b1" in str(e), "the explanation names the holders"
    rows = {r.node: r for r in dra.record_stranded()}
    assert rows[a].free == 12 and rows[a].stranded[4] == 12 and rows[b].stranded[4] == 12


@pytest.mark.topology("trn2.48xlarge", nodes=2, exclusive=True)  # the cluster above; the pod pinned to one node
def test_prioritized_list_falls_back_to_four(dra, dra_truth):
    node = sorted(dra_truth)[0]
    _take(dra, node, [0, 8], "x")  # no EFA group of 8 is whole any more; groups of 4 {4..7}, {12..15} are
    dra.create(dra.claim("c", dra.first_available("n", ("eight", "neuron.aws.com", 8), ("four", "neuron.aws.com", 4)),
                         match=[("resource.aws.com/devicegroup8_id", ["n/eight"]), (DG4, ["n/four"])]),
               dra.pod("p", "c", node=node))
    v = dra.assert_aligned("c")
    assert {d["request"] for d in v.devices} == {"n/four"}
