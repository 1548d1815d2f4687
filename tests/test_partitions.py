"""NeuronCores as partitions, without a cluster: what `refdriver neuron --partition-cores`
publishes (counter sets, the full device and its core groups, the slice shape of each version,
valid against each version's schema), and the oracle's verdicts on partitions both ways: it
passes what the chip allows and names every way of handing out more cores than it has."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import fakedev
from harness.judge.oracle import judge
from refdriver import partitions
from refdriver.slices import build

from .conftest import ROOT
from .openapi_strict import validate


@pytest.fixture(scope="module")
def trn2_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("trn2")
    fakedev.generate(fakedev.load_preset("trn2.48xlarge"), out)
    return out


def _dry_run(tree, *args: str) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "refdriver.cli", "neuron", "--sysfs-root", str(tree), "--dry-run",
                        "--node-name", "n", *args], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(r.stdout)


def test_each_chip_publishes_a_counter_set_the_full_device_and_its_logical_core_groups(trn2_tree):
    slices = _dry_run(trn2_tree, "--partition-cores")
    sets = {c["name"]: c["counters"] for s in slices for c in s["spec"].get("sharedCounters") or []}
    devices = {d["name"]: d for s in slices for d in s["spec"].get("devices") or []}
    assert len(sets) == 16 and sets["neuron-device-3-counters"] == {"cores": {"value": "8"}, "memory": {"value": "96Gi"}}
    # trn2: 8 physical cores, LNC 2 -> 4 partitions of 2 cores (and 24 GiB) each, beside the full device
    mine = sorted(n for n in devices if n.startswith("neuron-device-3-") or n == "neuron-device-3")
    assert mine == ["neuron-device-3", "neuron-device-3-cores-0-1", "neuron-device-3-cores-2-3",
                    "neuron-device-3-cores-4-5", "neuron-device-3-cores-6-7"]
    part = devices["neuron-device-3-cores-4-5"]
    assert part["consumesCounters"] == [{"counterSet": "neuron-device-3-counters",
                                         "counters": {"cores": {"value": "2"}, "memory": {"value": "24Gi"}}}]
    assert part["attributes"]["resourceType"] == {"string": "neuron_cores"}
    assert part["attributes"]["coreStart"] == {"int": 4} and part["attributes"]["coreCount"] == {"int": 2}
    full = devices["neuron-device-3"]
    assert full["attributes"]["resourceType"] == {"string": "neuron_device"}
    assert full["consumesCounters"][0]["counters"]["cores"] == {"value": "8"}
    # topology attributes stay on every partition, so matchAttribute still aligns them
    assert part["attributes"]["resource.aws.com/devicegroup4_id"] == full["attributes"]["resource.aws.com/devicegroup4_id"]
    lnc1 = {d["name"] for s in _dry_run(trn2_tree, "--partition-cores", "--partition-lnc", "1")
            for d in s["spec"].get("devices") or []}
    assert {f"neuron-device-3-cores-{c}-{c}" for c in range(8)} <= lnc1
    plain = _dry_run(trn2_tree)
    assert not any(s["spec"].get("sharedCounters") for s in plain) and \
        {d["name"] for s in plain for d in s["spec"]["devices"]} == {f"neuron-device-{i}" for i in range(16)}


@pytest.mark.parametrize("version", ["v1.34.4", "v1.35.4", "v1.36.3", "v1.37.2"])
def test_the_slice_shape_of_each_version_is_valid_against_its_schema(trn2_tree, version):
    """1.34: counter sets beside their devices in one slice; 1.35+: slices of counter sets (8
    each) and slices of devices (64 each, as they consume counters), one pool, one count."""
    sets, devices = partitions.partition(
        [d for s in _dry_run(trn2_tree) for d in s["spec"]["devices"]], {i: 8 for i in range(16)})
    split = version >= "v1.35"
    slices = build("n", "neuron.aws.com", devices, 3, None, 64 if split else 128, sets, split)
    for s in slices:
        assert validate(s, version) == [], (version, s["metadata"]["name"])
        assert s["spec"]["pool"] == {"name": "n", "generation": 3, "resourceSliceCount": len(slices)}
    if split:
        assert [bool(s["spec"].get("sharedCounters")) for s in slices] == [True, True, False, False]
        assert all(not (s["spec"].get("sharedCounters") and s["spec"].get("devices")) for s in slices)
        assert all(len(s["spec"].get("sharedCounters") or []) <= 8 and len(s["spec"].get("devices") or []) <= 64
                   for s in slices)
    else:
        assert len(slices) == 1 and len(slices[0]["spec"]["sharedCounters"]) == 16
        assert sum(len(c["counters"]) for c in slices[0]["spec"]["sharedCounters"]) <= 32  # the 1.34 limit


def test_the_injected_bug_publishes_partitions_that_consume_nothing(trn2_tree):
    slices = _dry_run(trn2_tree, "--partition-cores", "--inject-bug", "partition-no-counters")
    parts = [d for s in slices for d in s["spec"].get("devices") or [] if partitions.parse(d["name"])]
    assert parts and not any(p.get("consumesCounters") for p in parts)


# -- the oracle --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def truths(trn2_tree):
    return {"n": fakedev.truth_of(trn2_tree)}


def _claim(name: str, *devices: str) -> dict:
    return {"metadata": {"name": name, "namespace": "t", "uid": name},
            "spec": {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "c", "count": len(devices)}}]}},
            "status": {"allocation": {"devices": {"results": [
                {"request": "r", "driver": "neuron.aws.com", "pool": "n", "device": d} for d in devices]}}}}


def test_the_oracle_passes_partitions_the_chip_can_hold(truths):
    a = _claim("a", "neuron-device-2-cores-0-1", "neuron-device-2-cores-2-3")
    b = _claim("b", "neuron-device-2-cores-4-5")
    v = judge(a, truths, [b])
    assert v.ok, v
    assert "neuron2: 3 allocation(s) hold 6 of its 8 cores, none twice" in v.checks
    assert [d["truth_id"] for d in v.devices] == ["neuron2", "neuron2"]


@pytest.mark.parametrize("mine, others, said", [
    (("neuron-device-2",), [("neuron-device-2-cores-0-1",)], "the whole device (t/a r) is allocated beside its partition"),
    (("neuron-device-2-cores-2-3",), [("neuron-device-2-cores-2-3",)], "core 2 is handed out twice"),
    (("neuron-device-2-cores-8-9",), [], "cores 8-9 do not lie on neuron2, which has 8 cores"),
    (("neuron-device-2-cores-0-3",), [("neuron-device-2-cores-2-5",), ("neuron-device-2-cores-6-7",)],
     "core 2 is handed out twice"),
    (("neuron-device-2-cores-0-1", "neuron-device-2-cores-0-1"), [], "core 0 is handed out twice"),
])
def test_the_oracle_names_every_way_of_handing_out_more_cores_than_the_chip_has(truths, mine, others, said):
    v = judge(_claim("a", *mine), truths, [_claim(f"o{i}", *o) for i, o in enumerate(others)])
    assert not v.ok and any(said in r for r in v.reasons), v


def test_an_over_commit_by_counts_alone_is_named_too(truths):
    parts = [f"neuron-device-2-cores-{c}-{c + 1}" for c in (0, 2, 4, 6)]
    v = judge(_claim("a", *parts), truths, [_claim("b", "neuron-device-2-cores-6-7")])
    assert not v.ok and any("take 10 cores, but the chip has 8: over-committed" in r for r in v.reasons), v
