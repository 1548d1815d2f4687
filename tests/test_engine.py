"""The container engine kind needs here (`dra-harness engine`): capabilities computed from the
bounding set, a daemon config whose every network is allowed, the runc wrapper's edits of the
OCI spec, and, for real, dockerd started, `--privileged` containers running and exec'd into
through the wrapper (and failing without it), then everything undone."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.kind import engine

from .conftest import ROOT

WRAPPER = ROOT / "clusters/kind/runc-wrapper"
ALL_CAPS = {"bounding", "effective", "inheritable", "permitted", "ambient"}


def test_missing_capabilities_are_computed_from_the_bounding_set():
    assert engine.missing_caps("000001ffffffffff", 40) == []
    assert engine.missing_caps("000001fffeffffff", 40) == ["CAP_SYS_RESOURCE"]  # this machine
    assert engine.missing_caps("000000fffeffffff", 40) == ["CAP_SYS_RESOURCE", "CAP_CHECKPOINT_RESTORE"]
    assert engine.missing_caps("3fffffffff", 37) == []  # an older kernel knows fewer


@pytest.mark.parametrize("missing", [[], ["CAP_SYS_RESOURCE"]])
def test_every_daemon_network_is_allowed_and_the_wrapper_only_where_needed(missing):
    cfg = engine.daemon_config(missing)
    for net in engine.networks_of(cfg):
        assert net.subnet_of(ipaddress.ip_network("198.18.0.0/15")) and not net.overlaps(engine.NODE_VETHS), net
    assert ("default-runtime" in cfg) == bool(missing)
    if missing:
        assert cfg["runtimes"][engine.RUNTIME]["runtimeArgs"][-2:] == ["--drop", "CAP_SYS_RESOURCE"]
    # the check itself fails on Docker's defaults
    assert not all(n.subnet_of(ipaddress.ip_network("198.18.0.0/15")) for n in engine.networks_of({}))


def _fake_runc(tmp: Path) -> Path:
    fake = tmp / "runc"
    fake.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/argv\"\n")
    fake.chmod(0o755)
    return fake


def _caps(*names: str) -> dict:
    return {k: list(names) for k in ALL_CAPS}


def test_wrapper_drops_caps_for_create_and_exec_and_passes_arguments_through(tmp_path):
    fake = _fake_runc(tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"capabilities": _caps("CAP_SYS_ADMIN", "CAP_SYS_RESOURCE")}}))
    args = ["--root", "/run/x", "--log", "l.json", "create", "--bundle", str(bundle), "--pid-file", "p", "c1"]
    subprocess.run([sys.executable, str(WRAPPER), "--runc", str(fake), "--drop", "CAP_SYS_RESOURCE", *args], check=True)
    caps = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    assert all(caps[k] == ["CAP_SYS_ADMIN"] for k in ALL_CAPS)
    assert (tmp_path / "argv").read_text().split() == args
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh"], "capabilities": _caps("CAP_SYS_RESOURCE", "CAP_NET_ADMIN")}))
    subprocess.run([sys.executable, str(WRAPPER), "--runc", str(fake), "--drop", "CAP_SYS_RESOURCE",
                    "exec", "--process", str(proc), "--detach", "c1"], check=True)
    assert json.loads(proc.read_text())["capabilities"]["bounding"] == ["CAP_NET_ADMIN"]
    proc.write_text(json.dumps({"capabilities": _caps("CAP_SYS_RESOURCE")}))
    subprocess.run([sys.executable, str(WRAPPER), "--runc", str(fake), "exec", "--process", str(proc), "c1"], check=True)
    assert json.loads(proc.read_text())["capabilities"]["bounding"] == ["CAP_SYS_RESOURCE"]  # nothing to drop: untouched


def _busybox_image() -> str:
    tag = "localhost/dra-harness-busybox:1"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    bb = shutil.which("busybox")
    if not bb or "static" not in subprocess.run(["file", "-L", bb], capture_output=True, text=True).stdout:
        pytest.skip("a static busybox is needed for the test image (apt-get install busybox-static)")
    import tarfile
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(bb, arcname="bin/busybox")
        for name in ("sh", "grep", "sleep", "cat"):
            info = tarfile.TarInfo(f"bin/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    subprocess.run(["docker", "import", "-", tag], input=buf.getvalue(), check=True, capture_output=True)
    return tag


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="setting up an engine needs root")
def test_engine_up_runs_privileged_containers_and_down_undoes_it():
    if engine.answers() and not engine._ours_running(engine.EngineState.load()):
        pytest.skip("an engine not started by dra-harness answers; `up` would leave it as it is")
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        pytest.skip("no dockerd and no apt-get to install docker.io")
    st = engine.EngineState.load()  # an engine of ours already up: what it recorded is the "before"
    before = st.sysctls if engine._ours_running(st) and st.sysctls else engine.read_sysctls()
    lines: list[str] = []
    engine.up(say=lines.append)
    try:
        assert engine.answers()
        img = _busybox_image()
        run = subprocess.run(["docker", "run", "--rm", "--privileged", img, "grep", "CapBnd", "/proc/self/status"],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        name = "dra-harness-engine-test"
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "run", "-d", "--name", name, "--privileged", img, "sleep", "60"], check=True, capture_output=True)
        try:
            ex = subprocess.run(["docker", "exec", name, "grep", "CapBnd", "/proc/self/status"], capture_output=True, text=True)
            assert ex.returncode == 0, ex.stderr
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if engine.missing_caps():  # the failure the wrapper exists for, with Docker's own runc
            plain = subprocess.run(["docker", "run", "--rm", "--runtime", "runc", "--privileged", img, "true"],
                                   capture_output=True, text=True)
            assert plain.returncode != 0 and "apply caps" in plain.stderr, plain.stderr
        subnet = subprocess.run(["docker", "network", "inspect", "kind", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}"],
                                capture_output=True, text=True).stdout.strip()
        assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network("198.18.0.0/15"))
        # a kind node container a failed test left on the `kind` network: down removes it first
        subprocess.run(["docker", "run", "-d", "--name", "dra-harness-left-node", "--network", "kind",
                        "--label", "io.x-k8s.kind.cluster=left-behind", img, "sleep", "600"], check=True, capture_output=True)
    finally:
        engine.down(say=lines.append)
    assert any("removed node container dra-harness-left-node of kind cluster left-behind" in x for x in lines), lines
    assert any("removed the `kind` network" in x for x in lines), lines
    assert engine.answers() is None, lines
    assert not engine.DAEMON_JSON.exists() and not engine.WRAPPER.exists()
    assert engine.read_sysctls() == before, lines
    assert not Path("/sys/class/net/docker0").exists(), lines
    for table in ("filter", "nat"):
        rules = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True).stdout
        assert "DOCKER" not in rules and "docker0" not in rules, rules
