"""Meta, for device taints: each injectable taint bug of the reference drivers (refdriver bugs)
is caught by the oracle. The scheduler and the eviction controller act on whatever the slices
say, so only a judge that knows the true health of the hardware can tell."""

from __future__ import annotations

import time

import pytest

ECC = "neuron.aws.com/ecc-uncorrected"
EFA = "dra.net/efa-unresponsive"
UNTAINTED_BUGS = pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--inject-bug=no-taint-on-ecc"],
                                                                    "refdriver-efa": ["--inject-bug=taint-time-reset"]})
MISPLACED_BUGS = pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--inject-bug=taint-neighbour"],
                                                                    "refdriver-efa": ["--inject-bug=taint-sticky"]})


def _node(dra_cluster) -> str:
    return next(iter(dra_cluster.nodes))


def _problems(findings) -> set[tuple[str, str]]:
    return {(f.truth_id, f.problem) for f in findings}


@UNTAINTED_BUGS
def test_no_taint_on_ecc(dra, dra_cluster):
    node = _node(dra_cluster)
    dra.fault(node, "ecc", "neuron5")
    assert ("neuron5", "driver did not taint") in _problems(dra.audit_taints(settle=3))
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com",
                                          selectors=["device.attributes['neuron.aws.com'].deviceId == 5"])), dra.pod("p", "c"))
    dra.allocated("c")  # the scheduler sees nothing wrong with the device
    v = dra.judge("c")
    assert not v.ok and "the driver did not taint it" in str(v), str(v)


@UNTAINTED_BUGS
def test_time_added_reset_on_restart(dra, dra_cluster):
    node = _node(dra_cluster)
    dra.fault(node, "efa_fail", "0000:10:1a.0")
    dra.tainted(node, "pci-0000-10-1a-0", EFA)
    assert not dra.audit_taints()  # remembers the first timeAdded
    time.sleep(1.1)
    dra_cluster.restart_driver(node, "refdriver-efa")
    found = dra.audit_taints(settle=0)
    end = time.monotonic() + 10
    while ("0000:10:1a.0", "timeAdded moved") not in _problems(found) and time.monotonic() < end:
        time.sleep(0.25)
        found = dra.audit_taints(settle=0)
    assert ("0000:10:1a.0", "timeAdded moved") in _problems(found), found


@MISPLACED_BUGS
def test_taint_on_the_neighbouring_device(dra, dra_cluster):
    node = _node(dra_cluster)
    dra.fault(node, "ecc", "neuron3")
    dra.tainted(node, "neuron-device-4", ECC)
    found = _problems(dra.audit_taints(settle=3))
    assert {("neuron3", "driver did not taint"), ("neuron4", "tainted but healthy")} <= found, found


@MISPLACED_BUGS
def test_taint_kept_after_the_fault_is_cleared(dra, dra_cluster):
    node = _node(dra_cluster)
    dra.fault(node, "efa_fail", "0000:10:1a.0")
    dra.tainted(node, "pci-0000-10-1a-0", EFA)
    dra.heal(node, "0000:10:1a.0")
    try:
        assert ("0000:10:1a.0", "tainted but healthy") in _problems(dra.audit_taints(settle=3))
    finally:
        dra_cluster.restart_driver(node, "refdriver-efa")  # the sticky taint lives until a restart
