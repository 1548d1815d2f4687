"""List-typed attributes (DRAListTypeAttributes, alpha in 1.36 and 1.37; dra-api.md "DeviceAttribute
(1.36+)"): a device as close to several NUMA nodes as to its own publishes
`resource.kubernetes.io/numaNode` as a list, and `matchAttribute` then asks for a value common
to every device picked (a non-empty intersection).

kubernetes#140326: when the allocator backtracks it keeps the intersection of the device it
dropped, so a valid choice found after a backtrack is rejected. The report's shape, as a
regression scenario: devices with NUMA lists [1,2], [1], [2], [2] and a claim for 3 matching on
numaNode; the only valid choice is [1,2] + [2] + [2].

Per version, as read in the sources and seen here:
- 1.36 (every patch to 1.36.3): the allocator library has list matching with the one-intersection
  bug (k8s.io/dynamic-resource-allocation v0.36.x structured/internal/experimental), but
  kube-scheduler never turns it on (`AllocatorFeatures` of pkg/scheduler/.../dynamicresources has
  no ListTypeAttributes), so lists never match at all: even [1,2] with [1] stays pending. The
  bug cannot be reached; the scenario below records the bigger limitation instead.
- 1.37.0 on: the scheduler turns it on and the allocator keeps a stack of intersections (the fix
  shipped with the wiring), so the scenario must pass. No released scheduler has the bug.

The devices are published by the scenario itself, with no driver behind them: it is the
scheduler's decision under test, and the pod is never started."""

from __future__ import annotations

import pytest

DRIVER = "list-numa.dra-harness.io"
NUMA = "resource.kubernetes.io/numaNode"
pytestmark = [pytest.mark.k8s(min="1.37"),
              pytest.mark.topology("trn1.32xlarge", exclusive="list-attributes", gates={"DRAListTypeAttributes": True})]


@pytest.fixture
def list_numa_devices(dra, dra_cluster):
    node = next(iter(dra_cluster.nodes))
    klass = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": DRIVER},
             "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}}
    lists = {"d0": [1, 2], "d1": [1], "d2": [2], "d3": [2]}
    slc = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{node}-list-numa"},
           "spec": {"driver": DRIVER, "nodeName": node,
                    "pool": {"name": f"{node}-list-numa", "generation": 1, "resourceSliceCount": 1},
                    "devices": [{"name": n, "attributes": {NUMA: {"ints": v}}} for n, v in lists.items()]}}
    for obj in (klass, slc):
        dra.kube.apply(obj)
    yield lists
    for obj in (slc, klass):
        dra.kube.delete(obj)


def test_list_values_are_stored_and_a_common_value_matches(dra, list_numa_devices):
    dra.create(dra.claim("two", dra.request("d", DRIVER, 2), match=(NUMA, ["d"])), dra.pod("p", "two"))
    got = {r["device"] for r in dra.allocated("two")["status"]["allocation"]["devices"]["results"]}
    common = set.intersection(*(set(list_numa_devices[d]) for d in got))
    assert len(got) == 2 and common, (got, common)


def test_a_valid_choice_found_after_backtracking_is_allocated(dra, list_numa_devices):
    """kubernetes#140326 as a regression scenario (fixed where the scheduler first used lists)."""
    dra.create(dra.claim("three", dra.request("d", DRIVER, 3), match=(NUMA, ["d"])), dra.pod("p", "three"))
    got = {r["device"] for r in dra.allocated("three", timeout=20)["status"]["allocation"]["devices"]["results"]}
    assert got == {"d0", "d2", "d3"}, got


@pytest.mark.k8s(min="1.36", max="1.36")
def test_on_1_36_the_scheduler_matches_no_list(dra, list_numa_devices):
    """The API server stores the lists (the gate is on), the scheduler cannot match them."""
    dra.create(dra.claim("two", dra.request("d", DRIVER, 2), match=(NUMA, ["d"])), dra.pod("p", "two"))
    assert "cannot allocate all claims" in dra.unschedulable("p")
    dra.stays_pending("two")
