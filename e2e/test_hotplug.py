"""Hotplug and faults on a private node: removed devices vanish from the slices and are never
allocated; numa_node = -1 drops the NUMA attribute; a driver restart loses no claim."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.topology("trn1.32xlarge", exclusive="faults")  # shared with test_device_taints


def _slice(dra, node, driver):
    items, _ = dra.kube.list("ResourceSlice", field_selector=f"spec.driver={driver},spec.nodeName={node}")
    return items[0]


def test_removed_device_disappears_and_is_never_allocated(dra, dra_cluster):
    node = next(iter(dra_cluster.nodes))
    dra.mutate(node, "remove", "neuron5")
    try:
        name = _slice(dra, node, "neuron.aws.com")["metadata"]["name"]
        dra.kube.wait("ResourceSlice", lambda s: s and "neuron-device-5" not in {d["name"] for d in s["spec"]["devices"]},
                      name=name, timeout=20, what="neuron-device-5 to leave the slice")
        dra.create(dra.claim("five", dra.request("n", "neuron.aws.com",
                                                 selectors=["device.attributes['neuron.aws.com'].deviceId == 5"])),
                   dra.pod("five", "five"))
        dra.unschedulable("five")
        dra.create(dra.claim("all", dra.request("n", "neuron.aws.com", all=True)), dra.pod("all", "all"))
        v = dra.assert_aligned("all")
        assert len(v.devices) == 15 and "neuron5" not in {d["truth_id"] for d in v.devices}
    finally:
        dra.mutate(node, "add", "neuron5")


def test_numa_minus_one_drops_the_attribute(dra, dra_cluster):
    node = next(iter(dra_cluster.nodes))
    dra.mutate(node, "set_numa_none", "0000:10:1a.0")
    try:
        name = _slice(dra, node, "dra.net")["metadata"]["name"]
        s = dra.kube.wait("ResourceSlice", lambda s: s and "dra.net/numaNode" not in next(
            d for d in s["spec"]["devices"] if d["name"] == "pci-0000-10-1a-0")["attributes"],
            name=name, timeout=20, what="pci-0000-10-1a-0 without a numaNode attribute")
        others = [d for d in s["spec"]["devices"] if d["name"] != "pci-0000-10-1a-0"]
        assert all("dra.net/numaNode" in d["attributes"] for d in others)
    finally:
        dra.mutate(node, "reset")


def test_driver_restart_loses_no_claim(dra, dra_cluster):
    node = next(iter(dra_cluster.nodes))
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 4),
                         match=("resource.aws.com/devicegroup4_id", ["n"])), dra.pod("p", "c"))
    dra.assert_aligned("c")
    dra.pod_running("p")
    uid = dra.get_claim("c")["metadata"]["uid"]
    cdi = dra_cluster.nodes[node].cdi_dir  # None where CDI specs live inside the node (kind)
    assert cdi is None or list(cdi.glob(f"*{uid}*")), "prepared before the restart"
    dra_cluster.restart_driver(node, "refdriver-neuron")
    assert dra.get_claim("c")["status"]["allocation"], "the allocation survives the restart"
    dra.delete("Pod", "p")
    if cdi is not None:
        deadline = time.monotonic() + 20  # unprepare may follow the pod's removal, as with the kubelet
        while list(cdi.glob(f"*{uid}*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list(cdi.glob(f"*{uid}*")), "unprepared after the restart (from the driver's checkpoint)"
    events, _ = dra.kube.list("Event", namespace=dra.ns)
    assert not [e for e in events if e.get("reason") == "FailedUnprepareDynamicResources"], json.dumps(events)[:500]
