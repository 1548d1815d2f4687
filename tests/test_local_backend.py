"""The local backend with the real kube-apiserver, scheduler and controller-manager: allocation
by the real scheduler, the kubelet plugin over real gRPC, hotplug republishing, and nothing
left behind (processes, ports, directories) after down, Ctrl-C or a crashed component."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.backends import bins, procs
from harness.backends.local import backend
from harness.backends.local.backend import LocalBackend, control
from harness.backends.local.kubelet_standin import call, register
from harness.backends.spec import ClusterSpec, parse_nodes
from harness.kube import Kube

from .cdi_check import problems, qualified
from .conftest import ROOT

pytestmark = pytest.mark.slow
LOCAL = LocalBackend()


def _bins_or_skip():
    try:
        bins.ensure(None, build=False)
    except bins.BinsError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _bins_or_skip()
    name = f"t-{uuid.uuid4().hex[:6]}"
    spec = ClusterSpec(name=name, nodes=parse_nodes("trn1.32xlarge,trn2.48xlarge"))
    c = LOCAL.up(spec, tmp_path_factory.mktemp("artifacts"), attached=True, timeout=120)
    yield c
    LOCAL.down(name)


@pytest.fixture
def kube(cluster) -> Kube:
    return Kube(str(cluster.kubeconfig))


@pytest.fixture
def ns(kube):
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    yield name
    kube.core.delete_namespace(name)


def claim(name, ns, requests, constraints=(), config=()):
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
            "spec": {"devices": {"requests": requests, "constraints": list(constraints), "config": list(config)}}}


def pod(name, ns, claim_name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"claims": [{"name": "x"}]}}],
                     "resourceClaims": [{"name": "x", "resourceClaimName": claim_name}]}}


def allocated(c):
    return bool(c and (c.get("status") or {}).get("allocation"))


def test_up_publishes_every_driver_of_every_node(cluster, kube):
    slices, _ = kube.list("ResourceSlice")
    got = {(s["spec"]["nodeName"], s["spec"]["driver"]): len(s["spec"]["devices"]) for s in slices}
    assert got == {("trn1-32xlarge-0", "neuron.aws.com"): 16, ("trn1-32xlarge-0", "dra.net"): 8,
                   ("trn2-48xlarge-1", "neuron.aws.com"): 16, ("trn2-48xlarge-1", "dra.net"): 16}
    nodes, _ = kube.list("Node")
    assert all(not n["spec"].get("taints") for n in nodes)


def test_scheduler_allocates_aligned_claim_and_pod_runs(cluster, kube, ns):
    kube.apply(claim("four", ns, [
        {"name": "neurons", "exactly": {"deviceClassName": "neuron.aws.com", "count": 4}},
        {"name": "efas", "exactly": {"deviceClassName": "efa.networking.k8s.aws", "count": 2}}],
        [{"requests": ["neurons", "efas"], "matchAttribute": "resource.aws.com/devicegroup4_id"}],
        [{"requests": ["neurons"], "opaque": {"driver": "neuron.aws.com", "parameters": {
            "apiVersion": "neuron.aws.com/v1", "kind": "NeuronConfig", "logicalNeuronCore": 1}}}]))
    kube.apply(pod("p", ns, "four"))
    c = kube.wait("ResourceClaim", allocated, namespace=ns, name="four", timeout=30, what="claim four allocated")
    results = c["status"]["allocation"]["devices"]["results"]
    node = {r["pool"] for r in results}
    assert len(node) == 1 and len([r for r in results if r["driver"] == "neuron.aws.com"]) == 4
    truth = cluster.nodes[node.pop()].truth()
    groups = {d.align.devicegroup4 for d in truth.devices
              if any(r["device"] in (f"neuron-device-{d.index}", "pci-" + d.bdf.replace(":", "-").replace(".", "-"))
                     for r in results)}
    assert len(groups) == 1, "the real scheduler honoured matchAttribute: one EFA group of 4"
    p = kube.wait("Pod", lambda o: o and o["status"].get("phase") == "Running", namespace=ns, name="p", timeout=30,
                  what="pod p Running (prepared by the kubelet stand-in)")
    cdi = json.loads(p["metadata"]["annotations"]["dra-harness.io/cdi-devices"])["four"]
    assert len(cdi) == 6 and all(re.match(r"^k8s\.(neuron\.aws\.com/neuron|dra\.net/efa)=[0-9a-f-]+-[a-z0-9-]+$", x) for x in cdi)
    info = cluster.nodes[p["spec"]["nodeName"]]
    spec = json.loads(next(info.cdi_dir.glob(f"k8s.neuron.aws.com-neuron_{c['metadata']['uid']}.json")).read_text())
    assert spec["cdiVersion"] == "0.5.0" and "NEURON_LOGICAL_NC_CONFIG=1" in spec["containerEdits"]["env"]
    for f in info.cdi_dir.glob(f"*{c['metadata']['uid']}.json"):
        assert problems(json.loads(f.read_text())) == [], f.name
    assert all(qualified(x) for x in cdi)
    assert all(d["containerEdits"]["deviceNodes"][0]["major"] == 240 for d in spec["devices"])
    kube.delete(pod("p", ns, "four"), wait=True, timeout=30)
    assert _gone(info.cdi_dir, c["metadata"]["uid"]), "unprepare removed the CDI spec"





def test_kubelet_plugin_handshake_prepare_errors_and_checkpoint(cluster, kube, ns):
    info = cluster.nodes["trn1-32xlarge-0"]
    reg_dir = info.plugins_dir.parent / "plugins_registry"  # the node's kubelet root
    plugin = register(reg_dir / "neuron.aws.com-reg.sock")
    assert plugin.driver == "neuron.aws.com" and plugin.service == "v1.DRAPlugin"
    kube.apply(claim("one", ns, [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com",
                                                          "selectors": [{"cel": {"expression": "device.attributes['neuron.aws.com'].deviceId == 5"}}]}}]))
    c = kube.get("ResourceClaim", "one", ns)
    # Not allocated yet: a per-claim error that explains itself.
    r = call(plugin, "prepare", [{"namespace": ns, "name": "one", "uid": c["metadata"]["uid"]}])
    assert "is not allocated" in r[c["metadata"]["uid"]]["error"]
    r = call(plugin, "prepare", [{"namespace": ns, "name": "one", "uid": "0000-wrong"}])
    assert "the claim was deleted and recreated" in r["0000-wrong"]["error"]
    p = pod("q", ns, "one")
    p["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "trn1-32xlarge-0"}
    kube.apply(p)
    kube.wait("Pod", lambda o: o and o["status"].get("phase") == "Running", namespace=ns, name="q", timeout=30,
              what="pod q Running")
    uid = kube.get("ResourceClaim", "one", ns)["metadata"]["uid"]
    again = call(plugin, "prepare", [{"namespace": ns, "name": "one", "uid": uid}])[uid]
    assert again["error"] == "" and again["devices"][0]["device"] == "neuron-device-5", "prepare is idempotent"
    cluster.restart_driver("trn1-32xlarge-0", "refdriver-neuron")
    deadline = time.monotonic() + 20
    while not (reg_dir / "neuron.aws.com-reg.sock").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    plugin = register(reg_dir / "neuron.aws.com-reg.sock")
    kube.delete(pod("q", ns, "one"), wait=True, timeout=30)
    assert _gone(info.cdi_dir, uid), "unprepare after a driver restart used the checkpoint"


def test_driver_health_endpoints(cluster):
    import urllib.request

    st = backend.load_state(cluster.name)
    drivers = [p for p in st.procs if "refdriver" in p["name"]]
    assert len(drivers) == 4
    for p in drivers:
        port = p["argv"][p["argv"].index("--health-port") + 1]
        deadline = time.monotonic() + 10  # a driver restarted by an earlier test may still be starting its server
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline, f"no health answer from {p['name']}"
                time.sleep(0.1)
        assert r.status == 200 and body["serving"] and body["devices"] in (8, 16) and body["error"] == ""


def test_explain_cli_and_existing_backend(cluster, kube, ns, tmp_path):
    kube.apply(claim("dg1", ns, [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "count": 4}},
                                 {"name": "e", "exactly": {"deviceClassName": "efa.networking.k8s.aws", "count": 2}}],
                     [{"requests": ["n", "e"], "matchAttribute": "resource.aws.com/devicegroup1_id"}]))
    r = subprocess.run([sys.executable, "-m", "harness.cli", "explain", "--name", cluster.name, f"{ns}/dg1"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "cannot be satisfied with this topology" in r.stdout and "trn2-48xlarge-1" in r.stdout
    # --backend existing on this cluster's kubeconfig finds the ground truth through the local state
    suite = tmp_path / "test_existing.py"
    suite.write_text("def test_truth_known(dra, dra_truth):\n"
                     "    assert set(dra_truth) == {'trn1-32xlarge-0', 'trn2-48xlarge-1'}\n"
                     "    dra.create(dra.claim('c', dra.request('n', 'neuron.aws.com')), dra.pod('p', 'c'))\n"
                     "    dra.assert_aligned('c')\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--backend", "existing",
                        "--artifacts", str(tmp_path / "art"), str(suite)], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, timeout=300)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:]
    from harness.backends.paths import state_root

    assert not list(state_root().glob("pt-*.lock")) + list(state_root().glob("pt-*.refs")), "sharing files left"


def test_v1beta1_service_answers_too(cluster):
    info = cluster.nodes["trn2-48xlarge-1"]
    from harness.backends.local.kubelet_standin import Plugin

    p = Plugin("dra.net", str(info.plugins_dir / "dra.net" / "dra.sock"), "v1beta1.DRAPlugin")
    r = call(p, "unprepare", [{"namespace": "x", "name": "y", "uid": "never-prepared"}])
    assert r == {"never-prepared": {"error": ""}}


def test_hotplug_republishes_with_a_new_generation(cluster, kube):
    node = "trn1-32xlarge-0"
    sel = f"spec.driver=neuron.aws.com,spec.nodeName={node}"
    before, _ = kube.list("ResourceSlice", field_selector=sel)
    gen = before[0]["spec"]["pool"]["generation"]
    cluster.mutate(node, "remove", "neuron9")
    try:
        s = kube.wait("ResourceSlice", lambda o: o and o["spec"]["pool"]["generation"] > gen,
                      what="a new slice generation without neuron-device-9", timeout=20, name=before[0]["metadata"]["name"])
        assert "neuron-device-9" not in {d["name"] for d in s["spec"]["devices"]}
    finally:
        cluster.mutate(node, "add", "neuron9")
    s = kube.wait("ResourceSlice", lambda o: o and len(o["spec"]["devices"]) == 16, name=before[0]["metadata"]["name"],
                  what="neuron-device-9 back", timeout=20)
    assert s["spec"]["pool"]["generation"] >= gen + 2


# -- nothing left behind ------------------------------------------------------------------------


def _leftovers(state_dir: Path, procs_: list[dict]) -> list[str]:
    out = [p["name"] for p in procs_ if procs.alive(procs.Proc(**p))]
    if state_dir.exists():
        out.append(f"state dir {state_dir}")
    return out


def _gone(cdi_dir: Path, uid: str, timeout: float = 20) -> bool:
    """Unprepare may follow the pod's removal from the API, as with the kubelet: a bounded wait."""
    deadline = time.monotonic() + timeout
    while list(cdi_dir.glob(f"*{uid}*")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_up_down_leaves_nothing(tmp_path):
    _bins_or_skip()
    name = f"t-{uuid.uuid4().hex[:6]}"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "up", "--name", name, "--nodes", "inf2.xlarge",
                        "--artifacts", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "export KUBECONFIG=" in r.stdout and "neuron.aws.com: 1" in r.stdout
    st = backend.load_state(name)
    port = int(st.server.rsplit(":", 1)[1])
    s = subprocess.run([sys.executable, "-m", "harness.cli", "status", "--name", name], capture_output=True, text=True, cwd=ROOT)
    assert s.returncode == 0 and json.loads(s.stdout)["state"] == "running"
    d = subprocess.run([sys.executable, "-m", "harness.cli", "down", "--name", name], capture_output=True, text=True, cwd=ROOT)
    assert d.returncode == 0 and "killed leftovers" not in d.stdout
    assert _leftovers(backend.state_dir(name), st.procs) == []
    assert _port_free(port)
    assert (tmp_path / "logs" / "kube-apiserver.log").exists(), "logs stay in the artifacts"


@pytest.mark.parametrize("after", [0.5, 2.0, 4.0])
def test_ctrl_c_during_up_leaves_nothing(tmp_path, after):
    _bins_or_skip()
    name = f"t-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--name", name, "--nodes", "trn1.32xlarge",
                             "--artifacts", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    time.sleep(after)  # interrupt at different moments of the bring-up
    seen = _all_pids_below(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole foreground group
    proc.wait(timeout=90)
    if proc.returncode == 0:  # it finished before the interrupt: bring it down normally
        LOCAL.down(name)
    deadline = time.monotonic() + 30
    while any(_pid_alive(p) for p in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in seen if _pid_alive(p)], "processes survived Ctrl-C"
    assert not backend.state_dir(name).exists() or backend.load_state(name) is None and not any(
        _pid_alive(p) for p in seen)
    LOCAL.down(name)


def test_crashed_component_is_restarted_and_down_cleans_up(tmp_path):
    _bins_or_skip()
    name = f"t-{uuid.uuid4().hex[:6]}"
    c = LOCAL.up(ClusterSpec(name=name, nodes=parse_nodes("trn1.2xlarge")), tmp_path, attached=False, timeout=120)
    st = backend.load_state(name)
    try:
        etcd = next(p for p in st.procs if p["name"] == "etcd")
        os.kill(etcd["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while (now := next(p for p in control(c, "status")["state"]["procs"] if p["name"] == "etcd"))["pid"] == etcd["pid"]:
            assert time.monotonic() < deadline, "the supervisor did not start etcd again"
            time.sleep(0.1)
        assert "restart 1 within 60 s" in (tmp_path / "logs" / "supervisor.log").read_text()
        after = backend.load_state(name).procs
    finally:  # a detached cluster must not outlive a failing test
        LOCAL.down(name)
    assert _leftovers(backend.state_dir(name), st.procs + after) == []


def test_killed_supervisor_takes_everything_with_it(tmp_path):
    _bins_or_skip()
    name = f"t-{uuid.uuid4().hex[:6]}"
    LOCAL.up(ClusterSpec(name=name, nodes=parse_nodes("trn1.2xlarge")), tmp_path, attached=False, timeout=120)
    st = backend.load_state(name)
    try:
        os.kill(st.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while any(procs.alive(procs.Proc(**p)) for p in st.procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p["name"] for p in st.procs if procs.alive(procs.Proc(**p))], "children outlived the supervisor"
    finally:
        leftovers = LOCAL.down(name)
    assert leftovers == []
    assert not backend.state_dir(name).exists()


def _all_pids_below(root: int) -> set[int]:
    """The process tree below root, sampled repeatedly while it grows."""
    seen = {root}
    for _ in range(3):
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError):
                    continue
                if ppid in seen:
                    seen.add(int(d.name))
    return seen


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
