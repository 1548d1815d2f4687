"""Positive scenarios on the default cluster: claims land on devices that are really aligned."""

from __future__ import annotations

import json

import pytest

from .conftest import TRN1, TRN2

DG = "resource.aws.com/devicegroup{}_id"
NODES = [TRN1, TRN2]


@pytest.mark.parametrize("node", NODES)
def test_one_device(dra, on, node):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com")), dra.pod("p", "c", node=on(node)))
    v = dra.assert_aligned("c")
    assert v.node == on(node)
    dra.pod_running("p")


@pytest.mark.parametrize("k", [4, 8, 16])
@pytest.mark.parametrize("node", NODES)
def test_neuron_devices_aligned_by_devicegroup(dra, on, node, k):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", k), match=(DG.format(k), ["n"])),
               dra.pod("p", "c", node=on(node)))
    v = dra.assert_aligned("c")
    assert any(f"devicegroup{k}" in c for c in v.checks)


def test_whole_node_with_allocation_mode_all(dra, on):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", all=True)), dra.pod("p", "c", node=on(TRN1)))
    v = dra.assert_aligned("c")
    assert len(v.devices) == 16 and "all 16 usable devices" in " ".join(v.checks)


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("neurons,efas,k", [(16, 8, 16), (4, 2, 4)])
def test_neuron_and_efa_together(dra, on, node, neurons, efas, k):
    """AWS's examples: 16 Neuron + 8 EFA on devicegroup16_id, 4 + 2 on devicegroup4_id."""
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", neurons),
                         dra.request("e", "efa.networking.k8s.aws", efas), match=(DG.format(k), ["n", "e"])),
               dra.pod("p", "c", node=on(node)))
    v = dra.assert_aligned("c")
    assert len([d for d in v.devices if d["driver"] == "dra.net"]) == efas
    dra.pod_running("p")


@pytest.mark.parametrize("node", NODES)
def test_neuron_and_efa_on_one_pcie_root(dra, on, node):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com"), dra.request("e", "efa.networking.k8s.aws"),
                         match=("resource.kubernetes.io/pcieRoot", ["n", "e"])), dra.pod("p", "c", node=on(node)))
    v = dra.assert_aligned("c")
    assert len({d["root"] for d in v.devices}) == 1


@pytest.mark.parametrize("node", NODES)
def test_neuron_and_efa_on_one_numa_node(dra, on, node):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 2), dra.request("e", "efa.networking.k8s.aws"),
                         match=("resource.kubernetes.io/numaNode", ["n", "e"])), dra.pod("p", "c", node=on(node)))
    v = dra.assert_aligned("c")
    assert len({d["numa_node"] for d in v.devices}) == 1


def test_neuron_config_reaches_the_prepared_cdi_spec(dra, on, dra_cluster):
    info = dra_cluster.nodes[on(TRN2)]
    if info.cdi_dir is None:
        pytest.skip("this backend's CDI specs live inside the node")
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 2), match=(DG.format(4), ["n"]),
                         config=[dra.neuron_config(2, ["n"])]), dra.pod("p", "c", node=on(TRN2)))
    dra.assert_aligned("c")
    pod = dra.pod_running("p")
    uid = dra.get_claim("c")["metadata"]["uid"]
    spec = json.loads((info.cdi_dir / f"k8s.neuron.aws.com-neuron_{uid}.json").read_text())
    env = spec["containerEdits"]["env"]
    assert "NEURON_LOGICAL_NC_CONFIG=2" in env
    cores = next(e for e in env if e.startswith("NEURON_RT_VISIBLE_CORES="))
    assert cores.count("-") >= 1  # 2 devices x 4 logical cores (8 physical, LNC=2)
    ids = json.loads(pod["metadata"]["annotations"]["dra-harness.io/cdi-devices"])["c"]
    assert {f"k8s.neuron.aws.com/neuron={d['name']}" for d in spec["devices"]} <= set(ids)


def test_prioritized_list_prefers_eight_on_an_empty_node(dra, on):
    dra.create(dra.claim("c", dra.first_available("n", ("eight", "neuron.aws.com", 8), ("four", "neuron.aws.com", 4)),
                         match=[(DG.format(8), ["n/eight"]), (DG.format(4), ["n/four"])]), dra.pod("p", "c", node=on(TRN2)))
    v = dra.assert_aligned("c")
    assert {d["request"] for d in v.devices} == {"n/eight"}


def test_admin_access_sees_devices_in_use(dra, on):
    dra.allow_admin_access()
    sel = ["device.attributes['neuron.aws.com'].deviceId == 3"]
    dra.create(dra.claim("user", dra.request("n", "neuron.aws.com", selectors=sel)), dra.pod("p", "user", node=on(TRN1)))
    dra.assert_aligned("user")
    dra.create(dra.claim("admin", dra.request("n", "neuron.aws.com", selectors=sel, admin=True)),
               dra.pod("q", "admin", node=on(TRN1)))
    c = dra.allocated("admin")
    assert c["status"]["allocation"]["devices"]["results"][0].get("adminAccess") is True
    assert dra.judge("admin").ok, "admin access may share a device"
