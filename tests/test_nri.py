"""NRI on fake nodes: the runtime stand-in (the NRI project's own adaptation library, in Go) on
each node's socket, plugins built on the NRI plugin library registering and synchronising, and
the kubelet stand-in's pods delivered as the runtime's sandbox and container events, with the
plugins' adjustments coming back. A plugin refusing a container keeps the pod from running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.backends import bins, procs
from harness.backends.local.backend import LocalBackend, control, load_state
from harness.backends.local.kubelet_standin import CDI_ANNOTATION, NRI_ANNOTATION
from harness.backends.profiles import DriverProfile
from harness.backends.spec import ClusterSpec, parse_nodes
from harness.kube import Kube

LOCAL = LocalBackend()


def _bin(name: str) -> Path:
    try:
        return bins.ensure(None, build=False) / name
    except bins.BinsError as e:
        pytest.skip(str(e))


def test_a_profile_that_is_an_nri_plugin_sees_the_socket_at_the_default_path():
    prof = DriverProfile(name="dranet-like", driver="dra.net", command=["dranet", "--hostname={node}"],
                         tree_access="fakedev-run", nri=True)
    argv = prof.argv([("/s/r/0/nri", "/var/run/nri")], node="n0", tree="/s/tree")
    assert argv[argv.index("--tree") + 2] == "--bind=/s/r/0/nri:/var/run/nri"
    assert argv[-2:] == ["dranet", "--hostname=n0"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _bin("nri-standin")
    name = f"n-{uuid.uuid4().hex[:6]}"
    spec = ClusterSpec(name=name, nodes=parse_nodes("trn1.2xlarge"), nri=True)
    c = LOCAL.up(spec, tmp_path_factory.mktemp("art"), attached=True, timeout=120)
    yield c
    LOCAL.down(name)


@pytest.fixture(scope="module")
def kube(cluster) -> Kube:
    return Kube(str(cluster.kubeconfig))


class Plugin:
    """nri-test-plugin (built on github.com/containerd/nri/pkg/stub) writing its events to a file."""

    def __init__(self, tmp: Path, name: str, argv_prefix: list[str] = (), socket: str | None = None, *extra: str):
        self.events = tmp / f"{name}.events"
        argv = [*argv_prefix, str(_bin("nri-test-plugin")), f"--name={name}", f"--events={self.events}", *extra]
        if socket:
            argv.append(f"--socket={socket}")
        self.proc, self.popen = procs.spawn(name, argv, tmp / f"{name}.log")

    def lines(self) -> list[dict]:
        return [json.loads(x) for x in self.events.read_text().splitlines()] if self.events.exists() else []

    def wait(self, pred, what: str, timeout: float = 15) -> list[dict]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self.lines()):
                return self.lines()
            assert procs.alive(self.proc), f"plugin exited: {Path(self.proc.log).read_text()[-2000:]}"
            time.sleep(0.05)
        raise AssertionError(f"{what}: plugin saw {self.lines()}")

    def stop(self) -> None:
        procs.stop(self.proc, popen=self.popen, timeout=2)


def _pod(kube: Kube, ns: str, name: str, claim: bool = True, host_network: bool = False) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "1"}]}],
                    "terminationGracePeriodSeconds": 0, "hostNetwork": host_network}}
    if claim:
        kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
                    "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com"}}]}}})
        pod["spec"]["containers"][0]["resources"] = {"claims": [{"name": "d"}]}
        pod["spec"]["resourceClaims"] = [{"name": "d", "resourceClaimName": name}]
    return kube.apply(pod)


def _running(kube: Kube, ns: str, name: str) -> dict:
    return kube.wait("Pod", lambda p: p is not None and p["status"].get("phase") == "Running",
                     what=f"pod {name} running", timeout=60, namespace=ns, name=name)


def _events(kube: Kube, ns: str, name: str) -> list[dict]:
    return [e for e in kube.list("Event", ns)[0] if e["involvedObject"]["name"] == name]


def test_pod_events_reach_a_plugin_and_its_adjustments_come_back(cluster, kube, tmp_path):
    node = next(iter(cluster.nodes))
    sock = load_state(cluster.name).nodes[node].nri_socket
    plug = Plugin(tmp_path, "test-plugin", (), sock)
    try:
        plug.wait(lambda ls: [x["event"] for x in ls][:2] == ["Configure", "Synchronize"], "registration")
        assert plug.lines()[0]["runtime"] == "dra-harness-nri-standin"
        ns = f"n-{uuid.uuid4().hex[:6]}"
        kube.create_namespace(ns)
        _pod(kube, ns, "p")
        pod = _running(kube, ns, "p")
        cdi = [d for ids in json.loads(pod["metadata"]["annotations"][CDI_ANNOTATION]).values() for d in ids]
        assert cdi, "the claim prepared no CDI device"
        adjust = json.loads(pod["metadata"]["annotations"][NRI_ANNOTATION])["c"]
        assert {"key": "NRI_TEST_PLUGIN", "value": "p"} in adjust["env"]
        assert adjust["annotations"]["nri-test-plugin/seen"] == "true"
        seen = [x for x in plug.lines() if x.get("pod") == f"{ns}/p"]
        assert [x["event"] for x in seen] == ["RunPodSandbox", "CreateContainer", "StartContainer"]
        assert seen[1]["cdi_devices"] == cdi  # the container carries its claim's CDI devices, as the kubelet passes them
        assert "50-test-plugin" in control(cluster, "status")["nri_plugins"][node]

        # A plugin connecting later is synchronised with what runs.
        late = Plugin(tmp_path, "late", (), sock, "--idx=70")
        try:
            sync = late.wait(lambda ls: any(x["event"] == "Synchronize" for x in ls), "late sync")
            assert next(x for x in sync if x["event"] == "Synchronize")["pods"] >= 1
        finally:
            late.stop()

        kube.core.delete_namespaced_pod("p", ns)
        plug.wait(lambda ls: [x["event"] for x in ls if x.get("pod") == f"{ns}/p"][3:] ==
                  ["StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"], "teardown events")
    finally:
        plug.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_each_pod_sandbox_has_its_own_network_namespace_in_the_nri_events(cluster, kube, tmp_path):
    """Issue 21 item 3: a pod-network pod's RunPodSandbox carries its sandbox's network namespace
    (linux.namespaces, as containerd sends it), with loopback and a veth `eth0` to the node, so
    an NRI plugin that moves interfaces (DRANET) does not take it for hostNetwork; a hostNetwork
    pod carries none; the namespace goes with the pod."""

    node = next(iter(cluster.nodes))
    plug = Plugin(tmp_path, "netns-plugin", (), load_state(cluster.name).nodes[node].nri_socket, "--idx=60")
    try:
        plug.wait(lambda ls: any(x["event"] == "Synchronize" for x in ls), "registration")
        ns = f"s-{uuid.uuid4().hex[:6]}"
        kube.create_namespace(ns)
        _pod(kube, ns, "pn", claim=False)
        _pod(kube, ns, "hn", claim=False, host_network=True)
        _running(kube, ns, "pn")
        _running(kube, ns, "hn")
        run = {x["pod"]: x for x in plug.lines() if x["event"] == "RunPodSandbox"}
        pn, hn = run[f"{ns}/pn"], run[f"{ns}/hn"]
        assert pn["netns"].startswith("/proc/") and pn["netns"].endswith("/ns/net"), pn
        assert "netns_error" not in pn and sorted(pn["interfaces"]) == ["eth0", "lo"], pn
        assert os.stat(pn["netns"]).st_ino != os.stat("/proc/self/ns/net").st_ino
        assert hn["netns"] == "" and "interfaces" not in hn, hn
        kube.core.delete_namespaced_pod("pn", ns)
        plug.wait(lambda ls: any(x["event"] == "RemovePodSandbox" and x.get("pod") == f"{ns}/pn" for x in ls),
                  "the sandbox removed")
        end = time.monotonic() + 10
        while os.path.exists(pn["netns"]):
            assert time.monotonic() < end, "the sandbox's network namespace outlived its pod"
            time.sleep(0.1)
    finally:
        plug.stop()


def test_a_plugin_refusing_a_container_keeps_the_pod_from_running(cluster, kube, tmp_path):
    node = next(iter(cluster.nodes))
    sock = load_state(cluster.name).nodes[node].nri_socket
    refuser = Plugin(tmp_path, "refuser", (), sock, "--fail-create", "--idx=60")
    try:
        refuser.wait(lambda ls: any(x["event"] == "Synchronize" for x in ls), "registration")
        ns = f"n-{uuid.uuid4().hex[:6]}"
        kube.create_namespace(ns)
        _pod(kube, ns, "q", claim=False)
        end = time.monotonic() + 30
        while not [e for e in _events(kube, ns, "q") if e["reason"] == "Failed"] and time.monotonic() < end:
            time.sleep(0.1)
        failed = [e for e in _events(kube, ns, "q") if e["reason"] == "Failed"]
        assert failed and "refuses container c" in failed[0]["message"], _events(kube, ns, "q")
        assert kube.core.read_namespaced_pod("q", ns).status.phase == "Pending"
        # The runtime cleaned up the sandbox it had made for the refused container.
        kinds = [x["event"] for x in refuser.lines() if x.get("pod") == f"{ns}/q"]
        assert kinds[:2] == ["RunPodSandbox", "CreateContainer"] and kinds[-1] == "RemovePodSandbox", kinds
    finally:
        refuser.stop()


def test_inside_the_nodes_mount_namespace_the_socket_is_at_var_run_nri(cluster, tmp_path):
    node = next(iter(cluster.nodes))
    st = load_state(cluster.name).nodes[node]
    prefix = [sys.executable, "-m", "fakedev.cli", "run", "--tree", st.tree,
              f"--bind={Path(st.nri_socket).parent}:/var/run/nri", "--"]
    inside = Plugin(tmp_path, "inside", prefix, None, "--idx=80")  # the plugin's default socket path
    try:
        inside.wait(lambda ls: any(x["event"] == "Synchronize" for x in ls), "registration from inside")
    finally:
        inside.stop()


def test_fakesys_plans_each_destination_once_and_covers_the_tree(tmp_path):
    """nri-fakesys (the kind workers' fake /sys, issue 21 item 1) against this machine's /sys:
    containerd refuses an adjustment that sets one mount destination twice (the first kind run
    failed so: a composite's real entry and a nested composite at /sys/devices/virtual), and
    every path the tree replaces must be covered by a bind of the tree."""
    import fakedev

    fakedev.generate(fakedev.load_preset("trn2.48xlarge"), tmp_path / "T")
    r = subprocess.run([str(_bin("nri-fakesys")), "--plan", f"--tree={tmp_path / 'T'}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    dsts = [row[-1] for row in rows]
    assert len(dsts) == len(set(dsts)), sorted(d for d in dsts if dsts.count(d) > 1)
    fake = {row[2]: row[1] for row in rows if row[0] == "bind" and row[1].startswith(str(tmp_path))}
    for must in ("/sys/bus/pci", "/sys/class/neuron_device", "/sys/class/infiniband", "/sys/devices/system/node",
                 "/sys/devices/virtual/dmi"):
        assert fake.get(must) == str(tmp_path / "T" / must.lstrip("/")), (must, fake)
    tmpfs = {row[1] for row in rows if row[0] == "tmpfs"}
    real = [row for row in rows if row[0] == "bind" and row[1] == row[2]]  # the node's own entries, kept
    assert real and all(os.path.dirname(row[2]) in tmpfs for row in real), "a real entry bound outside a composite"
