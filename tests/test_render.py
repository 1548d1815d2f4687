"""Rendering: exact file formats from the research tables, safety and atomicity."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import fakedev
from fakedev.tree import TreeError

from .conftest import PRESETS, is_root


def read(p: Path) -> str:
    return p.read_text()


def test_neuron_class_device_formats(trees):
    t = trees["trn1.32xlarge"]
    d = t / "sys/class/neuron_device/neuron0"
    assert os.readlink(d) == "../../devices/virtual/neuron_device/neuron0"
    assert read(d / "core_count") == "2"  # no trailing newline
    assert read(d / "connected_devices") == "12, 3, 4, 1\n"
    assert read(d / "info/architecture/arch_type") == "NDv2\n"
    assert read(d / "info/architecture/instance_type") == "Trn1\n"
    assert read(d / "info/architecture/device_name") == "Trainium1\n"
    assert read(d / "neuron_core1/info/architecture/arch_type") == "NCv2"
    assert read(d / "neuron_core0/stats/status/hw_repairable_hbm_ue_error/total") == "0\n"
    assert read(d / "dev") == "240:0\n" and not (d / "device").exists()
    assert stat.S_IMODE(os.stat(d / "core_count").st_mode) == 0o400
    cls = t / "sys/class/neuron_device"
    assert read(cls / "node_id_4") == "-1\n" and read(cls / "server_id_2") == "0000000000000000\n"
    assert read(cls / "ultraserver_mode") == "\n"
    assert read(trees["trn1.2xlarge"] / "sys/class/neuron_device/neuron0/connected_devices") == "\n"
    assert read(trees["trn2.48xlarge"] / "sys/class/neuron_device/neuron0/core_count") == "8"
    assert sorted(os.listdir(trees["trn2.48xlarge"] / "sys/class/neuron_device/neuron0")).count("neuron_core7") == 1
    u = trees["trn2u.48xlarge"] / "sys/class/neuron_device"
    assert read(u / "node_id_4") == "0\n" and read(u / "ultraserver_mode") == "1,2,3,4\n"


def test_pci_function_files(trees):
    t = trees["trn1.32xlarge"]
    d = t / "sys/bus/pci/devices/0000:10:1c.0"
    assert os.readlink(d) == "../../../devices/pci0000:10/0000:10:1c.0"
    assert read(d / "vendor") == "0x1d0f\n" and read(d / "device") == "0x7164\n"
    assert read(d / "numa_node") == "0\n" and read(d / "local_cpulist") == "0-31,64-95\n"
    assert os.path.basename(os.readlink(d / "driver")) == "neuron-driver"
    assert (t / "sys/bus/pci/drivers/neuron-driver/0000:10:1c.0").resolve() == d.resolve()
    assert "DRIVER=neuron-driver\n" in read(d / "uevent")
    assert read(d / "modalias").startswith("pci:v00001D0Fd00007164sv00001D0Fsd00000000bc08sc80i00")
    cfg = (d / "config").read_bytes()
    assert len(cfg) == 256 and cfg[0:4] == bytes.fromhex("0f1d6471")
    assert read(t / "sys/module/neuron/version") == "2.24.7.0\n"
    assert read(t / "sys/devices/virtual/dmi/id/product_name") == "trn1.32xlarge\n"
    assert read(t / "sys/class/dmi/id/product_name") == "trn1.32xlarge\n"


def test_efa_rdma_layout(trees):
    t = trees["trn1.32xlarge"]
    ib = t / "sys/class/infiniband/rdmap16s26"  # 0000:10:1a.0 in decimal (NE §2.2)
    assert os.path.basename(os.path.realpath(ib / "device")) == "0000:10:1a.0"
    assert read(ib / "ports/1/state") == "4: ACTIVE\n" and read(ib / "node_type") == "7: unspecified\n"
    assert read(t / "sys/class/infiniband_verbs/abi_version") == "6\n"
    uverbs = sorted(os.listdir(t / "sys/class/infiniband_verbs"))
    assert uverbs[:2] == ["abi_version", "uverbs0"] and len(uverbs) == 9
    assert read(t / "sys/class/infiniband_verbs/uverbs0/ibdev") == "rdmap16s25\n"  # lowest BDF probes first
    assert read(t / "sys/bus/pci/devices/0000:10:1a.0/class") == "0x020000\n"
    assert os.path.isdir(t / "sys/bus/pci/devices/0000:10:1a.0/infiniband/rdmap16s26")
    assert (t / "dev/infiniband/uverbs0").exists() and (t / "dev/infiniband/rdma_cm").exists()
    assert len(list((t / "dev").glob("neuron*"))) == 16


def test_numa_and_cpu(trees):
    t = trees["trn2.48xlarge"]
    assert read(t / "sys/devices/system/node/online") == "0-1\n"
    assert read(t / "sys/devices/system/node/node1/cpulist") == "48-95,144-191\n"
    assert read(t / "sys/devices/system/node/node0/distance") == "10 20\n"
    assert read(t / "sys/devices/system/cpu/cpu100/topology/core_siblings_list") == "0-47,96-143\n"
    assert read(t / "sys/devices/system/cpu/cpu100/topology/thread_siblings_list") == "4,100\n"


@pytest.mark.parametrize("name", PRESETS)
def test_links_stay_inside_the_tree(trees, name):
    root = trees[name].resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink():
                target = Path(os.path.normpath(p.parent / os.readlink(p)))
                assert target.is_relative_to(root), f"{p} -> {target} leaves the tree"
                assert not os.path.isabs(os.readlink(p)), f"{p} has an absolute link"


def test_device_nodes_kind(trees):
    node = trees["trn1.32xlarge"] / "dev/neuron3"
    if is_root:
        st = os.stat(node)
        assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (240, 3)
    else:
        assert node.is_file()


@pytest.mark.parametrize("bad", ["/", "/sys", "/sys/bus", "/dev", "/dev/pts/x", "/proc/1"])
def test_refuses_system_directories(bad):
    with pytest.raises(TreeError, match="refusing"):
        fakedev.generate(fakedev.load_preset("inf2.xlarge"), bad)


def test_refuses_foreign_non_empty_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(TreeError, match="not created by fakedev"):
        fakedev.generate(fakedev.load_preset("inf2.xlarge"), tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_rerender_is_idempotent_and_atomic(tmp_path):
    out = tmp_path / "node"
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), out)
    first = _snapshot(out)
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), out)
    assert _snapshot(out) == first
    fakedev.generate(fakedev.load_preset("inf2.xlarge"), out)  # replacing with another topology
    assert read(out / "sys/class/dmi/id/product_name") == "inf2.xlarge\n"
    assert not (out / "sys/class/infiniband").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["node"], "no staging directory left behind"


def test_failed_render_leaves_nothing(tmp_path, monkeypatch):
    import fakedev.writer as writer

    def boom(self, g):
        raise OSError("disk full")

    monkeypatch.setattr(writer.TreeWriter, "write", boom)
    with pytest.raises(OSError):
        fakedev.generate(fakedev.load_preset("inf2.xlarge"), tmp_path / "node")
    assert list(tmp_path.iterdir()) == []


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = ("chr", os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
    return out


def test_stale_staging_of_a_killed_render_is_swept(tmp_path):
    """A render killed by SIGKILL leaves its staging directory; the next render of that tree
    removes it (its process is gone), and leaves a live render's staging alone."""
    dead = tmp_path / f".node.fakedev-{2**22 + 7}-x1"  # above pid_max: no such process
    live = tmp_path / f".node.fakedev-{os.getpid()}-x2"
    for d in (dead, live):
        (d / "sys").mkdir(parents=True)
    fakedev.generate(fakedev.load_preset("inf2.xlarge"), tmp_path / "node")
    assert not dead.exists() and live.exists()
