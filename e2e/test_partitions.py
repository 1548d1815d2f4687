"""NeuronCores as partitions: the reference Neuron driver with `--partition-cores` publishes each
chip's cores as a counter set, the full device and its core groups consuming it
(refdriver/partitions.py). The scheduler keeps them apart by the counters; the oracle holds every
allocation to the chip's true core count, and a chip's fault taints all of its partitions.

Partitionable devices are alpha in 1.34/1.35 (gates.py turns them on) and on from 1.36. A trn1
chip has 2 cores (LNC 1): partitions neuron-device-N-cores-0-0 and -1-1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.testing import WaitTimeout

PARTITIONED = {"refdriver-neuron": ["--partition-cores"]}
pytestmark = pytest.mark.topology("trn1.32xlarge", driver_args=PARTITIONED)
BUGGY = pytest.mark.topology("trn1.32xlarge", driver_args={
    "refdriver-neuron": ["--partition-cores", "--inject-bug=partition-no-counters"]})
CORES = "neuroncores.aws.com"
ECC = "neuron.aws.com/ecc-uncorrected"


def _whole(index: int) -> list[str]:
    return [f'device.attributes["neuron.aws.com"].deviceId == {index}',
            'device.attributes["neuron.aws.com"].resourceType == "neuron_device"']


def _on(index: int) -> list[str]:
    return [f'device.attributes["neuron.aws.com"].deviceId == {index}']


@pytest.fixture
def cores_class(dra):
    """The partition class the driver's manifests ship with --partition-cores (the cluster came up
    with the plain driver's classes; the kind chart renders it itself)."""
    (obj,) = [o for o in dra.load_yaml(_classes_file()) if o["metadata"]["name"] == CORES]
    dra.create(obj)
    yield CORES
    try:
        dra.kube.delete(obj)
    except Exception as e:  # a cluster the scenario failed (the scheduler panic) is going away anyway
        print(f"cleanup of DeviceClass {CORES}: {e}")


def _classes_file() -> Path:
    return Path(__file__).parent.parent / "refdriver" / "manifests" / "deviceclasses-partitioned.yaml"


def _node(dra_cluster) -> str:
    return next(iter(dra_cluster.nodes))


def test_a_chips_partitions_never_over_commit_its_cores_and_never_sit_beside_the_whole_chip(dra, cores_class):
    for c in ("a", "b"):
        dra.create(dra.claim(c, dra.request("core", cores_class, selectors=_on(3))), dra.pod(f"p-{c}", c))
        dra.allocated(c)
    v = dra.assert_aligned("b")
    assert any("neuron3: 2 allocation(s) hold 2 of its 2 cores, none twice" in c for c in v.checks), v
    got = {dra.get_claim(c)["status"]["allocation"]["devices"]["results"][0]["device"] for c in ("a", "b")}
    assert got == {"neuron-device-3-cores-0-0", "neuron-device-3-cores-1-1"}
    # the chip's counters are spent: neither a third core nor the whole chip fits
    dra.create(dra.claim("third", dra.request("core", cores_class, selectors=_on(3))), dra.pod("p-third", "third"),
               dra.claim("whole", dra.request("n", "neuron.aws.com", selectors=_whole(3))), dra.pod("p-whole", "whole"))
    dra.unschedulable("p-third")
    dra.unschedulable("p-whole")
    dra.stays_pending("third")  # both were made together: 5 s of watching one covers the other's too
    assert not (dra.get_claim("whole").get("status") or {}).get("allocation")
    dra.pod_running("p-a")
    assert dra.check_prepared("p-a") == []


def test_a_partition_hands_the_workload_only_its_own_cores(dra, dra_cluster, cores_class):
    info = dra_cluster.nodes[_node(dra_cluster)]
    if info.cdi_dir is None:
        pytest.skip("this backend's CDI specs live inside the node")
    dra.create(dra.claim("c", dra.request("core", cores_class, selectors=_on(5))), dra.pod("p", "c"))
    dra.assert_aligned("c")
    dra.pod_running("p")
    (r,) = dra.get_claim("c")["status"]["allocation"]["devices"]["results"]
    uid = dra.get_claim("c")["metadata"]["uid"]
    env = json.loads((info.cdi_dir / f"k8s.neuron.aws.com-neuron_{uid}.json").read_text())["containerEdits"]["env"]
    first = int(r["device"].rsplit("-", 2)[1])
    assert f"NEURON_RT_VISIBLE_CORES={5 * 2 + first}" in env and "NEURON_DRA_DEVICES=5" in env, env


def test_the_slice_shape_follows_the_server_version(dra, dra_cluster):
    node = _node(dra_cluster)
    slices = [s for s in dra.kube.list("ResourceSlice")[0]
              if s["spec"]["driver"] == "neuron.aws.com" and s["spec"].get("nodeName") == node]
    minor = int((dra_cluster.k8s_version or "v1.37").lstrip("v").split(".")[1])
    with_sets = [s for s in slices if s["spec"].get("sharedCounters")]
    sets = [c["name"] for s in with_sets for c in s["spec"]["sharedCounters"]]
    assert sorted(sets) == sorted(f"neuron-device-{i}-counters" for i in range(16))  # unique in the pool
    assert all(s["spec"]["pool"]["resourceSliceCount"] == len(slices) for s in slices)
    assert len({s["spec"]["pool"]["generation"] for s in slices}) == 1  # a complete pool
    devices = [d for s in slices for d in s["spec"].get("devices") or []]
    assert len(devices) == 16 * 3 and all(d.get("consumesCounters") for d in devices)
    if minor >= 35:  # "Only one of Devices and SharedCounters can be set in a ResourceSlice"
        assert all(not s["spec"].get("devices") for s in with_sets) and len(with_sets) == 2, \
            [(len(s["spec"].get("devices") or []), len(s["spec"].get("sharedCounters") or [])) for s in slices]
    else:  # 1.34: the counter sets sit beside the devices that consume them
        assert len(slices) == 1 and slices[0]["spec"]["devices"], slices


@pytest.mark.topology("trn1.32xlarge", exclusive="faults", driver_args=PARTITIONED)
def test_an_ecc_fault_taints_the_chip_and_every_partition_of_it(dra, dra_cluster, cores_class):
    node = _node(dra_cluster)
    dra.create(dra.claim("c", dra.request("core", cores_class, selectors=_on(6))), dra.pod("p", "c"))
    dra.assert_aligned("c")
    dra.pod_running("p")
    dra.fault(node, "ecc", "neuron6")
    for dev in ("neuron-device-6", "neuron-device-6-cores-0-0", "neuron-device-6-cores-1-1"):
        assert dra.tainted(node, dev, ECC)["effect"] == "NoExecute"
    dra.evicted("p")
    others = {k[2] for k, ts in dra.taints().items() if ts and k[1] == node and k[0] == "neuron.aws.com"}
    assert others == {"neuron-device-6", "neuron-device-6-cores-0-0", "neuron-device-6-cores-1-1"}, others


@BUGGY
def test_the_oracle_catches_partitions_published_without_counters(dra, cores_class):
    dra.create(dra.claim("whole", dra.request("n", "neuron.aws.com", selectors=_whole(2))), dra.pod("p-whole", "whole"))
    dra.allocated("whole")
    dra.create(dra.claim("core", dra.request("core", cores_class, selectors=_on(2))), dra.pod("p-core", "core"))
    dra.allocated("core")  # nothing tells the scheduler that the partition spends the chip's cores
    v = dra.judge("core")
    assert not v.ok and any("the whole device" in r and "beside its partition" in r for r in v.reasons), v


# -- upstream allocator bugs on partitions (dra-features.md §1.2 "Known bugs") ---------------------
# Each names its issue and where it is open; the fix versions were read from the allocator's source
# in the k8s.io/dynamic-resource-allocation module of each patch release (go mod download).


@pytest.mark.topology("trn1.32xlarge", exclusive="scheduler-panic", driver_args=PARTITIONED)
@pytest.mark.upstream_bug("kubernetes#138882", fixed_in=["1.35.6", "1.36.2", "1.37.0"], since="1.35",
                          why="the allocator's allocationMode: All path leaves a device's pool unset and "
                              "kube-scheduler panics on the first device that consumes counters (fixed by "
                              "kubernetes#138885; 1.34's allocator has no such path)")
def test_allocation_mode_all_over_partitions_takes_every_one_and_the_scheduler_lives(dra, dra_cluster, cores_class):
    """A private cluster: where the bug is open the scheduler crash-loops until the cluster fails."""
    dra.create(dra.claim("all", dra.request("cores", cores_class, all=True, selectors=_on(4))), dra.pod("p", "all"))
    claim = dra.allocated("all", timeout=30)
    got = sorted(r["device"] for r in claim["status"]["allocation"]["devices"]["results"])
    assert got == ["neuron-device-4-cores-0-0", "neuron-device-4-cores-1-1"], got
    dra.assert_aligned("all")
    log = dra_cluster.artifacts / "logs" / "kube-scheduler.log"
    assert not log.is_file() or "Observed a panic" not in log.read_text(errors="replace")


@pytest.mark.upstream_bug("kubernetes#140802", fixed_in=None,
                          why="the allocator counts what allocated devices consume from the slices as they are "
                              "now, so a pool republished without an allocated partition frees its cores "
                              "(kubernetes#140806, which fails closed instead, is not merged)")
def test_a_new_logical_core_size_does_not_free_the_cores_of_an_allocated_partition(dra, dra_cluster, cores_class):
    """An operator changes the node's logical core size while a partition is in use: the driver
    republishes the chip's new partitions and no longer the allocated one. Its cores are still
    held, so nothing more of the chip may be handed out until that claim lets go."""
    dra.create(dra.claim("held", dra.request("core", cores_class, selectors=_on(7))), dra.pod("p-held", "held"))
    dra.allocated("held")
    dra.pod_running("p-held")
    try:
        dra_cluster.reconfigure({"refdriver-neuron": ["--partition-cores", "--partition-lnc", "2"]})
        dra.create(dra.claim("next", dra.request("core", cores_class, selectors=_on(7))), dra.pod("p-next", "next"))
        try:
            dra.stays_pending("next", seconds=8)
        except WaitTimeout:
            claim = dra.get_claim("next")
            if (claim.get("status") or {}).get("allocation"):  # the over-commit, in the oracle's words
                raise AssertionError(str(dra.judge(claim))) from None
            raise
    finally:
        dra_cluster.reconfigure(PARTITIONED)
