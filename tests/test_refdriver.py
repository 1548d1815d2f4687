"""Reference drivers: what they publish equals what the ground truth implies, for every preset;
devicegroup ids follow the tree; each injected bug changes the output the way it says."""

from __future__ import annotations

import json
import re

import pytest
import yaml

import fakedev

from .conftest import PRESETS, cli, needs_tool


def dry_run(tree, kind: str, *extra: str) -> dict[str, dict]:
    r = cli("refdriver", kind, "--sysfs-root", str(tree), "--dry-run", *extra)
    assert r.returncode == 0, r.stderr
    slices = json.loads(r.stdout)
    assert all(s["spec"]["pool"]["resourceSliceCount"] == len(slices) for s in slices)
    return {d["name"]: {k: next(iter(v.values())) for k, v in d["attributes"].items()}
            for s in slices for d in s["spec"]["devices"]}


def _dev(truth: fakedev.Truth, did: str) -> fakedev.TruthDevice:
    return truth.device(did)


@needs_tool("umockdev-run")
@pytest.mark.parametrize("name", PRESETS)
def test_neuron_slices_match_truth(trees, name):
    truth = fakedev.truth_of(trees[name])
    got = dry_run(trees[name], "neuron", "--extended-attributes")
    neurons = truth.of_kind("neuron")
    assert set(got) == {f"neuron-device-{d.index}" for d in neurons}
    for d in neurons:
        a = got[f"neuron-device-{d.index}"]
        assert a["deviceId"] == d.index and a["instanceType"] == truth.instance_type
        assert a["resourceType"] == "neuron_device" and a["neuronDriverVersion"] == "2.24.7.0"
        assert a["topology4_id"] == d.index // 4
        if len(neurons) == 16:
            assert (a["topology_x"], a["topology_y"]) == d.torus
        for k, v in d.aws_ids.items():
            assert a[f"resource.aws.com/{k}"] == v, (d.id, k)
        if not truth.efa_enabled:
            assert not any(k.startswith("resource.aws.com/") for k in a)
        assert a["resource.kubernetes.io/pcieRoot"] == d.root
        assert a["resource.kubernetes.io/numaNode"] == d.numa_node


@needs_tool("umockdev-run")
@pytest.mark.parametrize("name", [p for p in PRESETS if fakedev.load_preset(p).efa])
def test_efa_slices_match_truth(trees, name):
    truth = fakedev.truth_of(trees[name])
    got = dry_run(trees[name], "efa")
    efas = truth.of_kind("efa")
    assert set(got) == {"pci-" + re.sub(r"[:.]", "-", d.bdf) for d in efas}
    for d in efas:
        a = got["pci-" + re.sub(r"[:.]", "-", d.bdf)]
        assert a["dra.net/pciAddress"] == d.bdf and a["dra.net/rdmaDevice"] == d.rdma and a["dra.net/rdma"] is True
        assert a["dra.net/pciVendor"] == "Amazon.com, Inc."
        assert a["dra.net/pciDevice"] == "Elastic Fabric Adapter (EFA)"
        assert a["dra.net/numaNode"] == a["resource.kubernetes.io/numaNode"] == d.numa_node
        assert a["resource.kubernetes.io/pcieRoot"] == d.root
        for k, v in d.aws_ids.items():
            assert a[f"resource.aws.com/{k}"] == v


def test_trn1_subsystem_name_as_observed(trees):
    a = dry_run(trees["trn1.32xlarge"], "efa")["pci-0000-10-19-0"]
    assert a["dra.net/pciSubsystem"] == "efa1"  # as in captured trn1.32xlarge slices (NE §2.1)
    assert a["resource.aws.com/devicegroup1_id"] == "0000:10:19.0"


def test_devicegroups_follow_the_tree_not_a_table(tmp_path):
    """A machine with its own Neuron->EFA wiring: the driver's ids follow it."""
    spec = yaml.safe_dump({"preset": "trn1.32xlarge", "neuron_devices": [
        {"index": 0, "efa": "0000:10:19.0"}, {"index": 12, "efa": "0000:10:1a.0"}]})
    fakedev.generate(fakedev.load_text(spec), tmp_path / "t")
    truth = fakedev.truth_of(tmp_path / "t")
    got = dry_run(tmp_path / "t", "neuron")
    assert got["neuron-device-0"]["resource.aws.com/devicegroup1_id"] == "0000:10:19.0"
    assert got["neuron-device-0"]["resource.aws.com/devicegroup4_id"] == _dev(truth, "neuron0").aws_ids["devicegroup4_id"]


def test_numa_minus_one_omits_the_attribute(tree):
    fakedev.Tree(tree).set_numa_none("0000:10:1a.0")
    a = dry_run(tree, "efa")["pci-0000-10-1a-0"]
    assert "dra.net/numaNode" not in a and "resource.kubernetes.io/numaNode" not in a
    n = dry_run(tree, "neuron", "--extended-attributes")
    assert all("resource.kubernetes.io/numaNode" in v for v in n.values())


def test_removed_device_is_not_published(tree):
    fakedev.Tree(tree).remove("neuron7")
    assert "neuron-device-7" not in dry_run(tree, "neuron")
    fakedev.Tree(tree).unbind("0000:90:19.0")
    assert "pci-0000-90-19-0" not in dry_run(tree, "efa")


def test_injected_bugs_change_the_output(trees):
    t = trees["trn2.48xlarge"]
    truth = fakedev.truth_of(t)
    ok = dry_run(t, "neuron", "--extended-attributes")
    shift = dry_run(t, "neuron", "--inject-bug", "efa-shift")
    assert shift["neuron-device-0"]["resource.aws.com/devicegroup1_id"] == _dev(truth, "neuron1").efa
    root = dry_run(t, "neuron", "--extended-attributes", "--inject-bug", "wrong-pcie-root")
    assert sum(root[d]["resource.kubernetes.io/pcieRoot"] != ok[d]["resource.kubernetes.io/pcieRoot"] for d in ok) >= 8
    numa = dry_run(t, "neuron", "--extended-attributes", "--inject-bug", "swapped-numa")
    assert all(numa[d]["resource.kubernetes.io/numaNode"] == 1 - ok[d]["resource.kubernetes.io/numaNode"] for d in ok)
    # On trn2 PCI order and index blocks of 4 coincide (the bug is harmless there); on trn1 they do not.
    probe = dry_run(t, "neuron", "--inject-bug", "group-by-probe-order")
    assert all(probe[d]["resource.aws.com/devicegroup4_id"] == ok[d]["resource.aws.com/devicegroup4_id"] for d in ok)
    t1 = trees["trn1.32xlarge"]
    ok1, probe1 = dry_run(t1, "neuron"), dry_run(t1, "neuron", "--inject-bug", "group-by-probe-order")
    g = "resource.aws.com/devicegroup4_id"
    assert probe1["neuron-device-13"][g] == probe1["neuron-device-0"][g]  # 10:1b and 10:1c probe together
    assert ok1["neuron-device-13"][g] != ok1["neuron-device-0"][g]


def test_unknown_bug_and_missing_tree_fail_cleanly(tmp_path):
    r = cli("refdriver", "neuron", "--dry-run", "--inject-bug", "nope")
    assert r.returncode == 2 and "unknown bug(s) nope" in r.stderr
    r = cli("refdriver", "neuron", "--dry-run", "--sysfs-root", str(tmp_path))
    assert r.returncode == 2 and "has no sys/ directory" in r.stderr
    r = cli("refdriver", "bugs", check=True)
    assert "efa-shift" in r.stdout and "stale-after-hotplug" in r.stdout


def test_deviceclasses_manifest():
    docs = list(yaml.safe_load_all(cli("refdriver", "deviceclasses", check=True).stdout))
    assert {d["metadata"]["name"] for d in docs} == {"neuron.aws.com", "efa.networking.k8s.aws"}


def test_slices_hold_at_most_128_devices():
    from refdriver.slices import build

    devices = [{"name": f"d{i}", "attributes": {}} for i in range(300)]
    slices = build("node-a", "neuron.aws.com", devices, 7)
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 128, 44]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {3}
    assert {s["spec"]["pool"]["generation"] for s in slices} == {7}
    assert len({s["metadata"]["name"] for s in slices}) == 3
