"""Claims that must not be satisfied stay pending, and the harness says why."""

from __future__ import annotations

from .conftest import TRN1


def test_devicegroup1_for_four_neurons_is_unsatisfiable(dra, on):
    """aws-k8s-tester's negative case: 4 Neuron + 2 EFA cannot share one EFA (devicegroup1_id)."""
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 4), dra.request("e", "efa.networking.k8s.aws", 2),
                         match=("resource.aws.com/devicegroup1_id", ["n", "e"])), dra.pod("p", "c"))
    dra.unschedulable("p")
    dra.stays_pending("c", 3)
    e = dra.explain("c")
    assert e.verdict == "cannot be satisfied with this topology", str(e)
    assert "devicegroup1_id" in str(e) and "the largest has" in str(e)


def test_more_devices_than_any_node_has(dra, on):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 17)), dra.pod("p", "c"))
    dra.unschedulable("p")
    e = dra.explain("c")
    assert e.verdict == "cannot be satisfied with this topology"
    assert "needs 17 x neuron.aws.com; only 16 usable" in str(e)


def test_pinned_pod_on_a_node_without_enough_efa_groups(dra, on):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 3), dra.request("e", "efa.networking.k8s.aws", 1),
                         match=("resource.aws.com/devicegroup1_id", ["n", "e"])), dra.pod("p", "c", node=on(TRN1)))
    dra.unschedulable("p")
    e = dra.explain("c", nodes=[on(TRN1)])
    assert e.verdict == "cannot be satisfied with this topology" and "the largest has 2" in str(e)
