"""A running local cluster is its user's alone, and a driver's credential reaches only its own
node and driver (reliability probe F3-F8, issue 10 classes 8-10), checked against the real
etcd and API server: each check is also shown to be able to fail."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from harness.backends import procs
from harness.backends.local import backend
from harness.kube import Kube

from .conftest import ROOT, bins_or_skip, local_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "s", "trn1.2xlarge,inf2.xlarge")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_keys_kubeconfigs_and_state_dirs_are_private(cluster):
    root = cluster.state_dir
    assert _mode(root) == 0o700 and _mode(root.parent) == 0o700
    secrets = [p for p in root.rglob("*") if p.suffix in (".key", ".kubeconfig")]
    assert len(secrets) >= 8 and {p.name for p in secrets} >= {"sa.key", "admin.kubeconfig", "etcd-server.key"}
    loose = [str(p) for p in secrets if _mode(p) & 0o077]
    assert loose == []
    # the check can fail: a world-readable key is reported
    probe = root / "control" / "pki" / "probe-loose.key"
    probe.write_text("x")
    probe.chmod(0o644)
    assert [p for p in root.rglob("*.key") if _mode(p) & 0o077] == [probe]
    probe.unlink()


def _etcd_get(port: int, cert: tuple[Path, Path] | None, ca: Path) -> int | str:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(*cert)
    req = urllib.request.Request(f"https://127.0.0.1:{port}/v3/kv/range", data=b'{"key":"L3JlZ2lzdHJ5Lw=="}',
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (ssl.SSLError, ConnectionError, urllib.error.URLError) as e:
        return f"refused: {e}"


def test_etcd_serves_tls_to_the_api_server_only(cluster):
    st = backend.load_state(cluster.name)
    etcd = next(p for p in st.procs if p["name"] == "etcd")
    port = int(next(a for a in etcd["argv"] if a.startswith("--listen-client-urls=")).rsplit(":", 1)[1])
    epki, pki = cluster.state_dir / "control/etcd-pki", cluster.state_dir / "control/pki"
    ca = epki / "etcd-ca.crt"
    assert _etcd_get(port, (epki / "apiserver-etcd-client.crt", epki / "apiserver-etcd-client.key"), ca) == 200
    assert str(_etcd_get(port, None, ca)).startswith("refused")  # no client certificate
    assert str(_etcd_get(port, (pki / "admin.crt", pki / "admin.key"), ca)).startswith("refused")  # the cluster CA's
    with pytest.raises(Exception):  # plain HTTP is not served at all
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v3/kv/range", data=b"{}", timeout=5)


def _listening_inodes(pid: int | str = "self") -> dict[int, str]:
    """socket inode -> local address of every TCP socket in LISTEN state (IPv4 and IPv6) in the
    network namespace of process `pid`."""
    out = {}
    for f in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        for line in Path(f).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A":  # LISTEN
                out[int(parts[9])] = parts[1]
    return out


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net shows them
IMDS = "FEA9FEA9"  # 169.254.169.254: on a node's own loopback device, inside its namespace only


def test_nothing_listens_beyond_loopback(cluster):
    """Every listening socket of the cluster (control plane, supervisor, drivers), each read in
    its own process's network namespace: the host's loopback, or inside a node's namespace its
    loopback and the IMDS address on its lo device; never a routable address."""
    st = backend.load_state(cluster.name)
    sup = __import__("json").loads((cluster.state_dir / "supervisor.json").read_text())
    host_ns = os.stat("/proc/self/ns/net").st_ino
    everyone = [*st.procs, sup]
    tables: dict[int, tuple[str, bool]] = {}  # inode -> (address, in a node's namespace), from every namespace
    for p in everyone:
        in_node = os.stat(f"/proc/{p['pid']}/ns/net").st_ino != host_ns
        tables.update({i: (a, in_node) for i, a in _listening_inodes(p["pid"]).items()})
    seen = [(p["name"], *tables[i]) for p in everyone for i in _socket_inodes(p["pid"]) if i in tables]
    seen = [(name, addr.split(":")[0], in_node) for name, addr, in_node in seen]
    assert any(s[1] == IMDS for s in seen), "the IMDS listeners inside the nodes are among those checked"
    assert len(seen) >= 6, seen  # etcd x2, apiserver, kcm, scheduler, health ports, forwarders
    assert [s for s in seen if s[1] not in LOOPBACK and not (s[2] and s[1] == IMDS)] == []
    # the check can fail: a socket on 0.0.0.0 is seen as such
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        mine = _socket_inodes(os.getpid()) & set(_listening_inodes())
        assert any(_listening_inodes()[i].split(":")[0] not in LOOPBACK for i in mine)


def _slice(node: str, driver: str, name: str) -> dict:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": name},
            "spec": {"driver": driver, "nodeName": node, "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": "evil"}]}}


def _try(kube: Kube, fn) -> int:
    from kubernetes.client.rest import ApiException

    try:
        fn(kube)
        return 200
    except ApiException as e:
        return e.status


def test_a_driver_credential_writes_only_its_own_node_and_driver(cluster):
    nodes = sorted(cluster.nodes)
    me, other = nodes[0], nodes[1]
    kc = cluster.state_dir / "nodes" / me / "refdriver-neuron.kubeconfig"
    drv = Kube(str(kc))
    admin = Kube(str(cluster.kubeconfig))
    create = lambda body: (lambda k: k.res.create_resource_slice(body, dry_run="All"))  # noqa: E731
    assert _try(drv, create(_slice(me, "neuron.aws.com", "own-dry-run"))) == 200
    assert _try(drv, create(_slice(other, "neuron.aws.com", "cross-node"))) == 403
    assert _try(drv, create(_slice(me, "dra.net", "cross-driver"))) == 403
    theirs, _ = admin.list("ResourceSlice", field_selector=f"spec.driver=dra.net,spec.nodeName={me}")
    victim = theirs[0]["metadata"]["name"]
    assert _try(drv, lambda k: k.res.delete_resource_slice(victim, dry_run="All")) == 403
    other_node, _ = admin.list("ResourceSlice", field_selector=f"spec.driver=neuron.aws.com,spec.nodeName={other}")
    assert _try(drv, lambda k: k.res.delete_resource_slice(other_node[0]["metadata"]["name"], dry_run="All")) == 403
    # the rights real drivers need: claims, DeviceClasses, events; and nothing like secrets
    assert _try(drv, lambda k: k.res.list_resource_claim_for_all_namespaces(limit=1)) == 200
    assert _try(drv, lambda k: k.res.read_device_class("neuron.aws.com")) == 200
    ev = {"metadata": {"generateName": "probe-", "namespace": "default"}, "involvedObject": {"kind": "Node", "name": me},
          "reason": "Probe", "message": "x", "type": "Normal"}
    assert _try(drv, lambda k: k.core.create_namespaced_event("default", ev, dry_run="All")) == 200
    assert _try(drv, lambda k: k.core.list_secret_for_all_namespaces(limit=1)) == 403
    assert _try(drv, lambda k: k.core.list_node(limit=1)) == 403
    # the check can fail: with the policy's binding gone, the cross-node write goes through
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": "dra-harness-driver-slices"}}
    saved = admin.dyn.resources.get(api_version="admissionregistration.k8s.io/v1",
                                    kind="ValidatingAdmissionPolicyBinding").get(name="dra-harness-driver-slices").to_dict()
    admin.delete(binding)
    try:
        deadline = time.monotonic() + 20
        while _try(drv, create(_slice(other, "neuron.aws.com", "cross-node"))) != 200:
            assert time.monotonic() < deadline, "without the policy the write should pass"
            time.sleep(0.2)
    finally:
        saved["metadata"] = {"name": saved["metadata"]["name"]}
        admin.apply(saved)


def test_sigterm_during_up_stops_everything_within_two_seconds(tmp_path):
    bins_or_skip()
    name = f"s-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--name", name, "--nodes", "trn1.32xlarge",
                             "--artifacts", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sup = backend.state_dir(name) / "supervisor.json"
    deadline = time.monotonic() + 30
    while not (backend.state_dir(name) / "control/pki/sa.key").exists():  # well into the bring-up
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    import json

    sup_proc = procs.Proc(**json.loads(sup.read_text()))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    took = time.monotonic() - t0
    assert not procs.alive(sup_proc) and not backend.state_dir(name).exists()
    assert took <= 2.0, f"stopping took {took:.2f}s"
    assert proc.returncode in (130, 143) and "interrupted" in proc.stderr.read().decode()
