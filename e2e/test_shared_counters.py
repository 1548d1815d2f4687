"""A device that is both shareable (consumable capacity) and a partition (it consumes counters):
a NIC port whose bandwidth is shared, or taken whole by an exclusive mode of the same port. Once
a share of the shared mode is allocated, the port's counter is spent and the exclusive mode must
wait.

kubernetes#139034: when the allocator rebuilds what allocated devices consume from their
counter sets it looks only at devices allocated whole, so a shared allocation consumes nothing
and the exclusive mode of the same port is handed out beside it. Fixed by kubernetes#139040
(`internal.IsDeviceAllocated` counts shared allocations), cherry-picked to 1.36 (#139211): read
in k8s.io/dynamic-resource-allocation structured/internal/experimental, where 1.34.4, every 1.35
patch to 1.35.7 and 1.36.0-1.36.1 test `AllocatedDevices.Has` and 1.36.2 and 1.37.0 on test
`IsDeviceAllocated`.

The two modes are published by the scenario itself, with no driver behind them (the reference
EFA driver shares by bandwidth but publishes no counters): it is the scheduler's bookkeeping
under test, and no pod is started. Counters live in a slice of their own from 1.35."""

from __future__ import annotations

import pytest

DRIVER = "port-modes.dra-harness.io"
# the default trn1.32xlarge cluster: the scenario's own driver and class touch nobody else's devices
pytestmark = [pytest.mark.k8s(min="1.35"), pytest.mark.topology("trn1.32xlarge")]


@pytest.fixture
def port_modes(dra, dra_cluster):
    node = next(iter(dra_cluster.nodes))
    pool = {"name": f"{node}-port-modes", "generation": 1, "resourceSliceCount": 2}
    uses_port = [{"counterSet": "port-0", "counters": {"lanes": {"value": "1"}}}]
    objs = [
        {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": DRIVER},
         "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}},
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{node}-port-counters"},
         "spec": {"driver": DRIVER, "nodeName": node, "pool": pool,
                  "sharedCounters": [{"name": "port-0", "counters": {"lanes": {"value": "1"}}}]}},
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{node}-port-devices"},
         "spec": {"driver": DRIVER, "nodeName": node, "pool": pool, "devices": [
             {"name": "port-0-shared", "attributes": {"mode": {"string": "shared"}}, "allowMultipleAllocations": True,
              "capacity": {"bandwidth": {"value": "100G"}}, "consumesCounters": uses_port},
             {"name": "port-0-exclusive", "attributes": {"mode": {"string": "exclusive"}}, "consumesCounters": uses_port}]}},
    ]
    for o in objs:
        dra.kube.apply(o)
    yield
    for o in reversed(objs):
        dra.kube.delete(o)


def _mode(m: str) -> list[str]:
    return [f'device.attributes["{DRIVER}"].mode == "{m}"']


@pytest.mark.upstream_bug("kubernetes#139034", fixed_in=["1.36.2", "1.37.0"],
                          why="the allocator rebuilds counter use from devices allocated whole only, so a shared "
                              "allocation spends no counter and the exclusive mode of the same port is allocated "
                              "beside it (fixed by kubernetes#139040, in 1.36.2 and 1.37.0; not in 1.35)")
def test_a_share_spends_the_ports_counter_and_the_exclusive_mode_waits(dra, port_modes):
    dra.create(dra.claim("share", dra.request("nic", DRIVER, selectors=_mode("shared"), capacity={"bandwidth": "10G"})),
               dra.pod("p-share", "share"))
    dra.allocated("share")
    dra.create(dra.claim("whole", dra.request("nic", DRIVER, selectors=_mode("exclusive"))), dra.pod("p-whole", "whole"))
    dra.stays_pending("whole")  # where the bug is open: allocated beside the share at once
    assert "cannot allocate all claims" in dra.unschedulable("p-whole")


def test_the_exclusive_mode_is_allocated_once_the_share_is_gone(dra, port_modes):
    """Control: the counter is free again, so the check above can pass and fail for one reason."""
    dra.create(dra.claim("whole", dra.request("nic", DRIVER, selectors=_mode("exclusive"))), dra.pod("p-whole", "whole"))
    dra.allocated("whole")
