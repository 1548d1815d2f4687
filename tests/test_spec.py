"""Spec loading: presets, overrides, and one-line errors naming the field path."""

from __future__ import annotations

import pytest
import yaml

import fakedev
from fakedev import presets, spec
from fakedev.model import driver_connected_devices

from .conftest import PRESETS, cli


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_reloads_from_its_dump(name):
    t = fakedev.load_preset(name)
    again = spec.load_data(spec.dump(t))
    assert spec.dump(again) == spec.dump(t)


def test_preset_facts_from_research():
    trn1 = fakedev.load_preset("trn1.32xlarge")
    assert [n.bdf for n in trn1.neuron][:3] == ["0000:10:1c.0", "0000:10:1d.0", "0000:a0:1c.0"]
    assert len({n.efa for n in trn1.neuron}) == 8 and len(trn1.roots) == 4 and len(trn1.numa_nodes) == 2
    assert trn1.neuron[0].connected == [12, 3, 4, 1]
    assert {trn1.numa_of(n) for n in trn1.neuron if n.index in (0, 1, 4, 5, 8, 9, 12, 13)} == {0}
    trn2 = fakedev.load_preset("trn2.48xlarge")
    assert len(trn2.neuron) == 16 and len(trn2.efa) == 16 and len(trn2.switches) == 8
    for sw in trn2.switches:
        kinds = sorted(type(f).__name__ for f in trn2.functions() if f.parent == sw.name)
        assert kinds == ["EfaDevice", "EfaDevice", "NeuronDevice", "NeuronDevice"]
    assert trn2.neuron[0].connected == [12, 1, 3, 4]
    inf2 = fakedev.load_preset("inf2.48xlarge")
    assert inf2.neuron[0].connected == [11, 1] and inf2.neuron[0].torus is None
    assert driver_connected_devices("inf2", 0, 6) == [1]
    assert fakedev.load_preset("trn2u.48xlarge").ultraserver.node_id_4 == 0


def test_preset_with_overrides_merges_by_key():
    t = fakedev.load_text("""
preset: trn1.32xlarge
neuron_devices:
  - {index: 3, numa_node: 0}
  - {index: 15, remove: true}
efa_devices:
  - {bdf: "0000:10:1a.0", rate: "400 Gb/sec (4X NDR)"}
""")
    assert len(t.neuron) == 15
    assert t.numa_of(next(n for n in t.neuron if n.index == 3)) == 0
    assert t.efa_by_bdf()["0000:10:1a.0"].rate.startswith("400")


def test_custom_topology_that_does_not_exist_yet():
    t = fakedev.load_text("""
instance_type: trn9.mega
neuron_generation: trn2
cpu: {sockets: 4, cores_per_socket: 8}
pci_roots:
  - {name: "pci0001:00", numa_node: 3}
pcie_switches:
  - {name: big, root: "pci0001:00"}
neuron_devices:
  - {index: 0, bdf: "0001:05:00.0", parent: big, efa: "0001:06:00.0", connected: [1]}
  - {index: 1, bdf: "0001:07:00.0", parent: big, efa: "0001:06:00.0", connected: [0]}
efa_devices:
  - {bdf: "0001:06:00.0", parent: big}
""")
    assert t.switches[0].upstream_bus == 3 and t.switches[0].downstream_bus == 4
    assert len(t.numa_nodes) == 4 and t.nr_cpus == 64


ERRORS = [
    ("instance_type: x\nbogus: 1\n", "bogus: unknown key"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 0, bdf: '0000:10:1d.0'}\n",
     "neuron_devices[1].bdf: PCI address 0000:10:1d.0 is already used by neuron_devices[0]"),
    ("preset: trn1.32xlarge\npci_roots:\n  - {name: 'pci0000:10', numa_node: 7}\n",
     "pci_roots[0].numa_node: NUMA node 7 does not exist"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 0, efa: '0000:10:1f.0'}\n",
     "neuron_devices[0].efa: EFA 0000:10:1f.0 is not in efa_devices"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 0, connected: [12, 3, 4, 1, 6]}\n",
     "neuron_devices[0].connected: link 0->6 is one-way"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 0, connected: [12, 3, 4, 5]}\n",
     "neuron_devices[0].connected: link 0->5 is one-way"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 0, torus: [2, 2]}\n",
     "neuron_devices[10].torus: coordinates [2, 2] are already taken by device 0"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 0, torus: [0, 2]}\n  - {index: 2, torus: [0, 0]}\n",
     "neuron_devices[0].connected: neighbour 12 at [3, 0] is not adjacent to [0, 2] on a 4x4 torus"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 16, bdf: '0000:10:05.0', parent: pci0000:77}\n",
     "neuron_devices[16].parent: 'pci0000:77' is neither a root"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 16, bdf: '0000:11:05.0', parent: 'pci0000:10'}\n",
     "bus 11 is not the root bus of pci0000:10"),
    ("preset: nope\n", "preset: unknown preset 'nope'"),
    ("preset: trn1.32xlarge\ncpu: {sockets: 0}\n", "cpu.sockets: 0 is out of range 1..16"),
    ("preset: trn1.32xlarge\nneuron_devices:\n  - {index: 99, remove: true}\n", "cannot remove index=99"),
    ("instance_type: [\n", "invalid YAML"),
    ("- 1\n- 2\n", "<top>: expected a mapping, got list"),
]


@pytest.mark.parametrize("text,message", ERRORS)
def test_errors_name_the_field(text, message):
    with pytest.raises(spec.SpecError) as e:
        fakedev.load_text(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_error_is_one_line_exit_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("preset: trn2.48xlarge\nefa_devices:\n  - {bdf: '0000:56:00.0', uverbs: 3}\n  - {bdf: '0000:57:00.0', uverbs: 3}\n")
    r = cli("fakedev", "generate", "--spec", str(f), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"fakedev: {f}: efa_devices[") and "duplicate uverbs index 3" in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_presets_list_and_print():
    r = cli("fakedev", "presets", check=True)
    assert all(p in r.stdout for p in presets.names())
    r = cli("fakedev", "presets", "trn1.32xlarge", check=True)
    assert yaml.safe_load(r.stdout)["instance_type"] == "trn1.32xlarge"
