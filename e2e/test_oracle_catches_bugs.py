"""Meta: for every injectable driver bug, the scheduler happily allocates, and the oracle says
why the result is wrong. A harness whose oracle cannot fail proves nothing."""

from __future__ import annotations

import pytest

SEL = "device.attributes['neuron.aws.com'].deviceId == {}"


def _node(dra_truth):
    return next(iter(dra_truth))


@pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--inject-bug=efa-shift"]})
def test_efa_map_shifted_by_one(dra):
    # neuron1's true EFA is 0000:10:1a.0; the buggy driver claims 0000:a0:1a.0 (neuron2's)
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", selectors=[SEL.format(1)]),
                         dra.request("e", "efa.networking.k8s.aws"),
                         match=("resource.aws.com/devicegroup1_id", ["n", "e"])), dra.pod("p", "c"))
    dra.allocated("c")
    v = dra.judge("c")
    assert not v.ok and "resource.aws.com/devicegroup1_id" in str(v) and "the same EFA" in str(v), str(v)


@pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--extended-attributes", "--inject-bug=wrong-pcie-root"],
                                                    "refdriver-efa": ["--inject-bug=wrong-pcie-root"]})
def test_wrong_pcie_root(dra):
    # neuron12 (0000:10:1e.0, root pci0000:10) is published on pci0000:20; so are EFAs 10:1a and 20:19
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", selectors=[SEL.format(12)]),
                         dra.request("e", "efa.networking.k8s.aws", 2),
                         match=("resource.kubernetes.io/pcieRoot", ["n", "e"])), dra.pod("p", "c"))
    dra.allocated("c")
    v = dra.judge("c")
    assert not v.ok and "one PCIe root complex" in str(v), str(v)


@pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--extended-attributes", "--inject-bug=swapped-numa"]})
def test_swapped_numa_nodes(dra):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", selectors=[SEL.format(0)]),
                         dra.request("e", "efa.networking.k8s.aws"),
                         match=("resource.kubernetes.io/numaNode", ["n", "e"])), dra.pod("p", "c"))
    dra.allocated("c")
    v = dra.judge("c")
    assert not v.ok and "one NUMA node" in str(v), str(v)


@pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--inject-bug=group-by-probe-order"]})
def test_groups_by_probe_order(dra):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 4),
                         match=("resource.aws.com/devicegroup4_id", ["n"])), dra.pod("p", "c"))
    dra.allocated("c")
    v = dra.judge("c")
    assert not v.ok and "one EFA group of 4" in str(v), str(v)


@pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--inject-bug=stale-after-hotplug"]})
def test_slices_not_republished_after_hotplug(dra, dra_cluster):
    node = next(iter(dra_cluster.nodes))
    dra.mutate(node, "remove", "neuron3")
    try:
        dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", selectors=[SEL.format(3)])), dra.pod("p", "c"))
        dra.allocated("c")
        v = dra.judge("c")
        assert not v.ok and "hot-removed" in str(v), str(v)
    finally:
        dra.mutate(node, "add", "neuron3")


@pytest.mark.topology("trn1.32xlarge")
def test_the_same_claims_are_right_without_bugs(dra):
    """Control: every claim above is judged aligned when the driver is correct."""
    dra.create(dra.claim("a", dra.request("n", "neuron.aws.com", selectors=[SEL.format(1)]),
                         dra.request("e", "efa.networking.k8s.aws"),
                         match=("resource.aws.com/devicegroup1_id", ["n", "e"])), dra.pod("a", "a"))
    dra.create(dra.claim("b", dra.request("n", "neuron.aws.com", 4),
                         match=("resource.aws.com/devicegroup4_id", ["n"])), dra.pod("b", "b"))
    dra.assert_aligned("a")
    dra.assert_aligned("b")
