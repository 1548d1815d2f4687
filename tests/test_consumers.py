"""Independent consumers cannot tell the trees from real nodes: lspci, pyudev (inside
`fakedev run` and under umockdev), hwloc's lstopo. `fakedev run` never touches the host."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

import fakedev

from .conftest import PRESETS, ROOT, needs_root, needs_tool


def _lspci(tree, *args):
    return subprocess.run(["lspci", "-A", "linux-sysfs", "-O", f"sysfs.path={tree}/sys/bus/pci", *args],
                          capture_output=True, text=True, check=True).stdout


@needs_tool("lspci")
@pytest.mark.parametrize("name", PRESETS)
def test_lspci_lists_devices_and_tree(trees, name):
    topo = fakedev.load_preset(name)
    out = _lspci(trees[name], "-D")
    # Trainium2 is unnamed in Debian 12's pci.ids (2023); udev's hwdb, when installed (e.g. with
    # chromium), names it: lspci prefers the hwdb.
    names = {"trn1": "NeuronDevice \\(Trainium\\)", "inf2": "NeuronDevice \\(Inferentia2\\)",
             "trn2": "(Device 7364|NeuronDevice \\(Trainium2\\))"}
    for n in topo.neuron:
        assert re.search(rf"^{re.escape(n.bdf)} System peripheral: Amazon.com, Inc. {names[topo.generation]}$",
                         out, re.M), n.bdf
    for e in topo.efa:
        assert re.search(rf"^{re.escape(e.bdf)} Ethernet controller: Amazon.com, Inc. Elastic Fabric Adapter \(EFA\)",
                         out, re.M)
    tree = _lspci(trees[name], "-t")
    for r in topo.roots:
        assert f"[{r.domain:04x}:{r.bus:02x}]" in tree
    if topo.switches:  # each device hangs below root port -> upstream -> downstream bridges
        assert re.search(r"01\.0-\[[0-9a-f]{2}-[0-9a-f]{2}\]----00\.0-\[[0-9a-f]{2}-[0-9a-f]{2}\]--", tree)


@needs_tool("lstopo-no-graphics")
@pytest.mark.parametrize("name", ["trn1.32xlarge", "trn2.48xlarge"])
def test_hwloc_sees_numa_and_pci_locality(trees, name):
    env = {**os.environ, "HWLOC_FSROOT": str(trees[name]), "HWLOC_COMPONENTS": "-x86"}
    out = subprocess.run(["lstopo-no-graphics", "--whole-io", "-p", "--of", "xml"], env=env,
                         capture_output=True, text=True, check=True).stdout
    import xml.etree.ElementTree as ET

    root = ET.fromstring(out)
    numa = root.findall(".//object[@type='NUMANode']")
    assert len(numa) == 2
    topo = fakedev.load_preset(name)
    # Every Neuron PCI device sits below the Package of its true NUMA node.
    for pkg in root.findall(".//object[@type='Package']"):
        node = int(pkg.find(".//object[@type='NUMANode']").get("os_index"))
        for pci in pkg.findall(".//object[@type='PCIDev']"):
            bdf = pci.get("pci_busid")
            dev = next((f for f in topo.functions() if f.bdf == bdf), None)
            if dev is not None:
                assert topo.numa_of(dev) == node, bdf
    busids = {p.get("pci_busid") for p in root.findall(".//object[@type='PCIDev']")}
    assert {n.bdf for n in topo.neuron} <= busids
    rdma = {o.get("name") for o in root.findall(".//object[@type='OSDev']")}
    assert {e.rdma for e in topo.efa} <= rdma


PYUDEV_PROBE = """
import json, pyudev
ctx = pyudev.Context()
out = {}
for sub in ("pci", "neuron_device", "infiniband", "infiniband_verbs"):
    out[sub] = [{"name": d.sys_name, "driver": d.driver,
                 "parent": d.parent.sys_name if d.parent else None,
                 "pci_parent": (d.find_parent("pci").sys_name if d.find_parent("pci") else None)}
                for d in ctx.list_devices(subsystem=sub)]
print(json.dumps(out))
"""


def _check_pyudev(out: dict, topo) -> None:
    pci = {d["name"]: d for d in out["pci"]}
    for n in topo.neuron:
        assert pci[n.bdf]["driver"] == "neuron-driver"
    for e in topo.efa:
        assert pci[e.bdf]["driver"] == "efa"
    assert sorted(d["name"] for d in out["neuron_device"]) == sorted(f"neuron{n.index}" for n in topo.neuron)
    ib = {d["name"]: d for d in out["infiniband"]}
    for e in topo.efa:
        assert ib[e.rdma]["pci_parent"] == e.bdf
    verbs = {d["name"]: d for d in out["infiniband_verbs"]}
    for e in topo.efa:
        assert verbs[f"uverbs{e.uverbs}"]["pci_parent"] == e.bdf


@needs_root
@pytest.mark.parametrize("name", ["trn1.32xlarge", "trn2.48xlarge"])
def test_pyudev_inside_fakedev_run(trees, name):
    r = subprocess.run([sys.executable, "-m", "fakedev.cli", "run", "--tree", str(trees[name]), "--",
                        sys.executable, "-c", PYUDEV_PROBE], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    _check_pyudev(json.loads(r.stdout), fakedev.load_preset(name))


@needs_tool("umockdev-run")
@pytest.mark.parametrize("name", ["trn1.32xlarge", "trn2.48xlarge"])
def test_pyudev_under_umockdev(trees, name):
    lib = next((p for p in ("/usr/lib/x86_64-linux-gnu/libumockdev-preload.so.0",
                            "/usr/lib/aarch64-linux-gnu/libumockdev-preload.so.0") if os.path.exists(p)), None)
    if lib is None:
        pytest.skip("libumockdev-preload not found")
    env = {**os.environ, "UMOCKDEV_DIR": str(trees[name]), "LD_PRELOAD": lib}
    r = subprocess.run([sys.executable, "-c", PYUDEV_PROBE], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _check_pyudev(json.loads(r.stdout), fakedev.load_preset(name))


def _mounts() -> str:
    return open("/proc/self/mountinfo").read()


@needs_root
def test_fakedev_run_leaves_host_mounts_unchanged(trees, tmp_path):
    before = _mounts()
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "fakedev.cli", "run", "--tree", str(trees["trn1.32xlarge"]), "--",
                             "sh", "-c", f"cat /sys/class/dmi/id/product_name > {ready}; sleep 30"], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text():
            assert time.monotonic() < deadline, "the program never started"
            assert proc.poll() is None, "fakedev run exited early"
            time.sleep(0.05)
        assert ready.read_text() == "trn1.32xlarge\n"
        assert _mounts() == before, "the host mount table changed while the program ran"
        assert not os.path.exists("/sys/class/neuron_device")
    finally:
        proc.kill()
        proc.wait()
    assert _mounts() == before


@needs_root
def test_fakedev_run_passes_exit_status_and_refuses_non_trees(trees, tmp_path):
    from .conftest import cli

    r = cli("fakedev", "run", "--tree", str(trees["inf2.xlarge"]), "--", "sh", "-c", "exit 7")
    assert r.returncode == 7
    r = cli("fakedev", "run", "--tree", str(tmp_path), "--", "true")
    assert r.returncode == 2 and "not a fakedev tree" in r.stderr


FIDELITY_PROBE = r"""
import json, os
n0 = "/sys/devices/system/node/node0"
cpus = sorted(int(c[3:]) for c in os.listdir(n0) if c.startswith("cpu") and c[3:].isdigit())
first = os.path.realpath(f"{n0}/cpu{cpus[0]}")
ena = os.path.realpath("/sys/class/net/ens5/device")
print(json.dumps({"cpus": len(cpus), "core_id": open(first + "/topology/core_id").read().strip(),
                  "ena": os.path.basename(ena), "hugepages": os.listdir(n0 + "/hugepages"),
                  "lo": os.path.exists("/sys/class/net/lo/ifindex")}))
"""


@needs_root
def test_fakedev_run_shows_the_trees_cpus_net_and_hugepages(trees):
    """What a real driver (DRANET) exposed: node0/cpuN must resolve to the tree's CPUs (not the
    host's), the ENA's interface must lead back to its PCI function, hugepage pools exist."""
    r = subprocess.run([sys.executable, "-m", "fakedev.cli", "run", "--tree", str(trees["trn1.32xlarge"]), "--",
                        sys.executable, "-c", FIDELITY_PROBE], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    t = fakedev.load_preset("trn1.32xlarge")
    assert got["cpus"] == len(t.numa_nodes[0].cpus) == 64 and got["core_id"].isdigit()
    assert got["ena"] == t.ena[0].bdf and sorted(got["hugepages"]) == ["hugepages-1048576kB", "hugepages-2048kB"]
    assert got["lo"]
