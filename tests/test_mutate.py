"""Runtime changes: hotplug and faults, applied in place, one device at a time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fakedev
from fakedev import MutationError

from .conftest import cli


def test_remove_and_replug_a_neuron_device(tree):
    pci_devices = tree / "sys/bus/pci/devices"
    inode = os.stat(pci_devices).st_ino
    t = fakedev.Tree(tree)
    t.remove("neuron3")
    assert not (tree / "sys/class/neuron_device/neuron3").exists()
    assert not (tree / "dev/neuron3").exists()
    assert not (pci_devices / "0000:a0:1d.0").exists()
    assert not (tree / "sys/devices/pci0000:a0/0000:a0:1d.0").exists()
    assert (tree / "sys/class/neuron_device/neuron2").exists()
    assert os.stat(pci_devices).st_ino == inode, "mutations must be in place (bind mounts pin inodes)"
    truth = fakedev.truth_of(tree)
    assert truth.device("neuron3").present is False
    t.add("neuron3")
    assert (tree / "sys/class/neuron_device/neuron3/core_count").read_text() == "2"
    assert (tree / "dev/neuron3").exists()
    assert not list(tree.glob(".fakedev-st*")) + list(tree.glob(".fakedev-trash")), "no staging left behind"


def test_numa_none_drops_locality(tree):
    fakedev.Tree(tree).set_numa_none("0000:10:1a.0")
    d = tree / "sys/bus/pci/devices/0000:10:1a.0"
    assert (d / "numa_node").read_text() == "-1\n"
    assert (d / "local_cpulist").read_text() == "0-127\n"
    truth = fakedev.truth_of(tree)
    efa = truth.device("0000:10:1a.0")
    assert efa.numa_node == 0 and efa.faults == ("numa_node=-1",), "truth keeps the real NUMA node"


def test_unbind_efa_removes_rdma_devices(tree):
    t = fakedev.Tree(tree)
    t.unbind("rdmap16s26")
    assert not (tree / "sys/class/infiniband/rdmap16s26").exists()
    assert not (tree / "sys/bus/pci/devices/0000:10:1a.0/driver").exists()
    assert (tree / "sys/bus/pci/devices/0000:10:1a.0/vendor").exists()
    t.bind("0000:10:1a.0")
    assert (tree / "sys/class/infiniband/rdmap16s26/ports/1/state").exists()


def test_duplicate_routing_id_keeps_pci_function(tree):
    fakedev.Tree(tree).duplicate_routing_id("neuron5")
    assert not (tree / "sys/class/neuron_device/neuron5").exists()
    assert (tree / "sys/bus/pci/devices/0000:20:1c.0/vendor").exists()
    assert not (tree / "sys/bus/pci/devices/0000:20:1c.0/driver").exists()
    dev = fakedev.truth_of(tree).device("neuron5")
    assert dev.present and not dev.usable


def test_drop_and_corrupt_attributes(tree):
    t = fakedev.Tree(tree)
    t.attr("neuron0", "connected_devices", "drop")
    assert not (tree / "sys/class/neuron_device/neuron0/connected_devices").exists()
    t.attr("neuron1", "pci/numa_node", "corrupt", "banana\n")
    assert (tree / "sys/bus/pci/devices/0000:10:1d.0/numa_node").read_text() == "banana\n"
    t.reset()
    assert (tree / "sys/class/neuron_device/neuron0/connected_devices").read_text() == "12, 3, 4, 1\n"
    with pytest.raises(MutationError, match="no attribute file"):
        t.attr("neuron0", "nope", "drop")


def test_instance_type_and_new_device(tree):
    t = fakedev.Tree(tree)
    t.set_instance_type("trn1n.32xlarge")
    assert (tree / "sys/class/dmi/id/product_name").read_text() == "trn1n.32xlarge\n"
    t.add_new("efa", {"bdf": "0000:10:10.0", "parent": "pci0000:10"})
    assert (tree / "sys/bus/pci/devices/0000:10:10.0/driver").exists()
    assert (tree / "sys/class/infiniband/rdmap16s16").exists()
    with pytest.raises(MutationError, match="already used"):
        t.add_new("efa", {"bdf": "0000:10:10.0", "parent": "pci0000:10"})


def test_cli_mutate_errors(tree):
    r = cli("fakedev", "mutate", str(tree), "remove", "neuron99")
    assert r.returncode == 2 and "no device 'neuron99'" in r.stderr
    r = cli("fakedev", "mutate", str(tree), "explode", "neuron1")
    assert r.returncode == 2 and "unknown operation" in r.stderr
    r = cli("fakedev", "mutate", str(tree), "remove", "neuron1", check=True)
    assert "remove neuron1" in r.stdout
    r = cli("fakedev", "show", str(tree), check=True)
    assert "removed" in r.stdout and "mutations: remove neuron1" in r.stdout


# -- concurrency: mutations of one tree are serialised (reliability probe C4)


def _mutator(root: str, ops: list[tuple[str, str]]) -> None:
    t = fakedev.Tree(root)
    for op, dev in ops:
        try:
            getattr(t, op)(dev)
        except fakedev.MutationError:
            pass  # e.g. removing what another mutator removed first: refused, never corrupting


def _tree_shows(root: Path, dev: str) -> bool:
    return (root / "sys/class/neuron_device" / dev).exists() and (root / "dev" / dev).exists()


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

plans = st.lists(st.lists(st.tuples(st.sampled_from(["remove", "add"]), st.sampled_from(["neuron3", "neuron7", "neuron9"])),
                          min_size=2, max_size=6), min_size=2, max_size=4)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans)
def test_concurrent_mutators_keep_truth_and_tree_equal(tmp_path_factory, plan):
    import multiprocessing

    root = tmp_path_factory.mktemp("conc") / "node"
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), root)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_mutator, args=(str(root), ops)) for ops in plan]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    truth = fakedev.truth_of(root)
    for dev in ("neuron3", "neuron7", "neuron9"):
        assert truth.device(dev).present == _tree_shows(root, dev), dev
    assert not list(root.glob(".fakedev-staging")) + list(root.glob(".fakedev-trash")), "no staging or trash left"
    fakedev.Tree(root).reset()
    assert all(_tree_shows(root, f"neuron{i}") for i in range(16))
