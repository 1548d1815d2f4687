"""The golden paths as a platform contract (platform/golden-paths.yaml), rule by rule, on the
real API server and scheduler: team access denied at admission and counted as a wrong-class
request; quota holding work back, counted, and an admin raising it counted as a manual
intervention; large reserved training against interactive experiments (preemption, or what the
version does instead); a request whose shape contradicts its class counted; the cost of waiting;
an owner finishing their own work is not an intervention."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.testing.platform import Denied

KIT = Path(__file__).parent.parent / "platform" / "golden-paths.yaml"


def test_a_team_outside_the_class_is_denied_and_counted(dra_platform):
    p = dra_platform(KIT)
    with pytest.raises(Denied) as e:
        p.request_as("inference", "distributed-training")
    assert "golden path distributed-training is for teams training" in str(e.value)
    m = p.metrics()
    assert m["team"]["inference"].denied_access == 1 and m["team"]["inference"].wrong_class == 1
    assert m["class"]["distributed-training"].denied_access == 1


def test_quota_holds_work_back_and_raising_it_is_an_intervention(dra_platform):
    p = dra_platform(KIT)  # research may hold 4 small-inference devices
    keys = [p.workload("research", "small-inference") for _ in range(5)]
    for k in keys[:4]:
        p.allocated(k)
    d = p.quota_denied(keys[4])
    assert "exceeded quota" in d.message
    p.stays_pending(keys[4], 1)
    p.admin_raise_quota("research", "small-inference", 5)
    rec = p.allocated(keys[4], timeout=90)  # the claim controller retries with backoff
    assert rec.unblocked_by == f"raise-quota research/small-inference"
    m = p.metrics()
    assert m["team"]["research"].denied_quota == 1 and m["team"]["research"].interventions == 1


def test_large_reserved_training_against_interactive_experiments(dra, dra_platform):
    """Kubernetes 1.37 does not preempt pods for DRA devices ("Preemption is not helpful"), so the
    reserved workload waits, explained as "cluster full" with the experiments named; an admin
    removes them (counted), and it gets the whole node, aligned. If a version preempts, that is
    checked instead."""
    p = dra_platform(KIT)
    truths = dra.truths()
    exps = [p.workload("research", "interactive-experiment", node=node) for node in sorted(truths)]  # one per node
    for k in exps:
        p.allocated(k)
    reserved = p.workload("training", "large-reserved-training")
    try:
        p.allocated(reserved, timeout=10)
        preempted = True
    except AssertionError:
        preempted = False
    if not preempted:
        e = p.explain(reserved)
        assert e.verdict == "cluster full" and exps[0].split("/")[1] in str(e), str(e)
        for k in exps:
            p.admin_delete(k, why=f"{reserved} waits for the whole node")
        rec = p.allocated(reserved, timeout=60)
        assert rec.unblocked_by.startswith("delete-pod ")
        assert p.metrics()["class"]["large-reserved-training"].interventions == 1
    rec = p.ledger.claims[reserved]
    truth = truths[rec.node]
    assert (len(rec.neuron), len(rec.efa)) == (len(truth.of_kind("neuron")), len(truth.of_kind("efa")))
    assert rec.topology_fraction == 1.0


def test_a_request_whose_shape_contradicts_its_class_is_counted(dra_platform):
    p = dra_platform(KIT)
    right = p.workload("inference", "batch-inference", needs=4)
    wrong = p.workload("inference", "batch-inference", needs=1)  # a one-device job on a four-device class
    p.allocated(right), p.allocated(wrong)
    m = p.metrics()
    assert m["class"]["batch-inference"].wrong_shape == 1 and m["class"]["batch-inference"].denied_access == 0


def test_the_cost_of_waiting_and_an_owner_finishing_is_no_intervention(dra_platform):
    p = dra_platform(KIT)
    keys = [p.workload("research", "small-inference") for _ in range(5)]
    for k in keys[:4]:
        p.allocated(k)
    p.stays_pending(keys[4], 2)
    p.finish(keys[0])  # the owner's own job ends: quota frees, no one else acted
    rec = p.allocated(keys[4], timeout=90)
    waited = rec.allocated - rec.created
    m = p.metrics()
    row = m["class"]["small-inference"]
    assert waited >= 2 and row.pending_max == pytest.approx(waited, abs=0.01)
    assert row.pending_cost == pytest.approx(sum(
        (r.allocated - r.created) / 3600 * 1 * 1.2 for r in p.ledger.claims.values()), abs=2e-6)  # 1 device x $1.2/h
    assert row.pending_cost > 0 and row.interventions == 0 and not rec.unblocked_by
