"""kind for real on this machine: the engine (`dra-harness engine up` when none answers), a node
image built without a registry, `kind create cluster` with this host's settings, the reference
drivers registered with real kubelets and publishing, and a workload container started by
containerd with its claim's CDI devices: inside it, exactly the allocated /dev/neuronN nodes and
the matching NEURON_RT_VISIBLE_CORES. `down` leaves no node container and restores the host
sysctls the kubelets rewrote. In each worker, a fake IMDSv2 answers at 169.254.169.254 from pods,
and kind's containerd delivers NRI events to a plugin built on the NRI project's stub library.
Every container on a worker reads the worker's tree in /sys (nri-fakesys), and in-cluster
configuration reaches the API server through the `kubernetes` Service (kube-proxy).
Minutes the first time (images are cached by content after)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.backends import bins
from harness.backends.kind.backend import IMAGE, KindBackend, _read_sysctls
from harness.backends.spec import ClusterSpec, parse_nodes
from harness.kube import Kube

from .conftest import bins_or_skip

pytestmark = pytest.mark.slow
KIND = KindBackend()


@pytest.fixture(scope="module")
def cluster(docker_engine, tmp_path_factory):
    bins_or_skip()
    name = f"ko-{uuid.uuid4().hex[:5]}"
    before = _read_sysctls()
    # beside the reference drivers, upstream's e2e test driver as an image and a chart (nobody here wrote it)
    nodes = parse_nodes("trn1.32xlarge", drivers=["refdriver-neuron", "refdriver-efa", "e2e-test-driver"])
    c = KIND.up(ClusterSpec(name=name, nodes=nodes), tmp_path_factory.mktemp("kind"))
    yield c, before
    KIND.down(name)


def test_real_kubelets_register_the_drivers_and_they_publish(cluster):
    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    nodes, _ = kube.list("Node")
    assert len(nodes) == 2 and all(n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
                                   for n in nodes)
    worker = next(iter(c.nodes))
    slices, _ = kube.list("ResourceSlice")
    by_driver = {}
    for s in slices:
        if s["spec"].get("nodeName") == worker:
            by_driver[s["spec"]["driver"]] = by_driver.get(s["spec"]["driver"], 0) + len(s["spec"]["devices"])
    assert by_driver == {"neuron.aws.com": 16, "dra.net": 8, "test-driver.cdi.k8s.io": 4}


def test_upstreams_test_driver_from_its_image_prepares_a_claim_for_the_real_kubelet(cluster):
    """Upstream's e2e test driver, unmodified, from an image made of the binary `make bins` built
    and the chart in clusters/drivers: its devices allocated by the scheduler, prepared by the
    real kubelet over its socket, the pod Running with the driver's CDI edits applied; the
    oracle judges through the profile's identity, and a driver that states none is not judged."""
    from harness.judge.oracle import judge

    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    ns = f"td-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "two", "namespace": ns},
                "spec": {"devices": {"requests": [{"name": "t", "exactly": {"deviceClassName": "test-driver.cdi.k8s.io",
                                                                             "count": 2}}],
                                     "config": [{"opaque": {"driver": "test-driver.cdi.k8s.io",
                                                            "parameters": {"greeting": "hello-from-claim"}}}]}}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": ns},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "w", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sh", "-c", "env | grep -i greeting; sleep 3600"],
                                         "resources": {"claims": [{"name": "d"}]}}],
                         "resourceClaims": [{"name": "d", "resourceClaimName": "two"}]}})
    kube.wait("Pod", lambda p: p is not None and p["status"].get("phase") == "Running", what="workload running",
              timeout=120, namespace=ns, name="w")
    end = time.monotonic() + 30
    while "hello-from-claim" not in (log := kube.core.read_namespaced_pod_log("w", ns)) and time.monotonic() < end:
        time.sleep(0.5)
    assert "user_greeting=hello-from-claim" in log.lower() or "hello-from-claim" in log, log[-500:]
    claim = kube.get("ResourceClaim", "two", ns)
    results = claim["status"]["allocation"]["devices"]["results"]
    assert {r["driver"] for r in results} == {"test-driver.cdi.k8s.io"} and len(results) == 2
    v = judge(claim, c.truths(), [], c.identities())
    assert "not judged" in str(v), str(v)
    kube.core.delete_namespace(ns)


def test_inside_the_container_exactly_the_allocated_neuron_devices(cluster):
    """The kind-only scenario: containerd applies the CDI spec the driver wrote at prepare."""
    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    ns = f"ko-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "two", "namespace": ns},
                "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "count": 2}}],
                                     "constraints": [{"requests": ["n"], "matchAttribute": "resource.aws.com/devicegroup4_id"}]}}})
    script = "for d in /dev/neuron*; do echo DEV=$d; done; echo CORES=$NEURON_RT_VISIBLE_CORES; sleep 3600"
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": ns},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "w", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sh", "-c", script], "resources": {"claims": [{"name": "d"}]}}],
                         "resourceClaims": [{"name": "d", "resourceClaimName": "two"}]}})
    kube.wait("Pod", lambda p: p is not None and p["status"].get("phase") == "Running", what="workload running",
              timeout=120, namespace=ns, name="w")
    end = time.monotonic() + 30
    while "CORES=" not in (log := kube.core.read_namespaced_pod_log("w", ns)) and time.monotonic() < end:
        time.sleep(0.5)
    claim = kube.get("ResourceClaim", "two", ns)
    idx = sorted(int(r["device"].rsplit("-", 1)[1]) for r in claim["status"]["allocation"]["devices"]["results"])
    assert sorted(line[4:] for line in log.splitlines() if line.startswith("DEV=")) == sorted(f"/dev/neuron{i}" for i in idx)
    cores = [str(core) for i in idx for core in (2 * i, 2 * i + 1)]  # trn1: 2 NeuronCores per device, LNC=1
    got = next(line[6:] for line in log.splitlines() if line.startswith("CORES="))
    expanded = sorted(int(x) for part in got.split(",") for x in (
        range(int(part.split("-")[0]), int(part.split("-")[1]) + 1) if "-" in part else [int(part)]))
    assert expanded == sorted(int(x) for x in cores), got


IMDS_CLIENT = """
import json, urllib.request, urllib.error
B = "http://169.254.169.254/latest"
def call(method, path, headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(B + path, method=method, headers=headers), timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, "", {}
out = {"v1": call("GET", "/meta-data/instance-type", {})[0]}
code, token, h = call("PUT", "/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
out["ttl"] = h.get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds")
t = {"X-aws-ec2-metadata-token": token}
out["type"] = call("GET", "/meta-data/instance-type", t)[1]
out["doc"] = json.loads(call("GET", "/dynamic/instance-identity/document", t)[1])
out["macs"] = call("GET", "/meta-data/network/interfaces/macs/", t)[1]
print("IMDS=" + json.dumps(out))
"""


def _run_pod(kube: Kube, ns: str, name: str, script: str, host_network: bool = False, claim: str | None = None) -> str:
    """A pod of the drivers' image running `script` (python) to completion; its log."""
    spec = {"restartPolicy": "Never", "hostNetwork": host_network, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["python3", "-c", script]}]}
    if claim:
        spec["containers"][0]["resources"] = {"claims": [{"name": "d"}]}
        spec["resourceClaims"] = [{"name": "d", "resourceClaimName": claim}]
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec})
    kube.wait("Pod", lambda p: p is not None and p["status"].get("phase") in ("Succeeded", "Failed"),
              what=f"pod {name} done", timeout=120, namespace=ns, name=name)
    return kube.core.read_namespaced_pod_log(name, ns)


@pytest.mark.parametrize("host_network", [True, False], ids=["host-network", "pod-network"])
def test_a_fake_imdsv2_answers_inside_the_kind_node(cluster, host_network):
    """What external-drivers.md found DRANET asking for: IMDSv2 at the link-local address, with
    the node's instance type and its ENA MACs, and IMDSv1 refused."""
    import fakedev

    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    ns = f"ki-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    log = _run_pod(kube, ns, "imds", IMDS_CLIENT, host_network=host_network)
    got = json.loads(next(line[5:] for line in log.splitlines() if line.startswith("IMDS=")))
    worker = next(iter(c.nodes))
    topo = fakedev.load_preset(c.nodes[worker].topology)
    assert got["v1"] == 401 and got["ttl"] == "60"
    assert got["type"] == "trn1.32xlarge" and got["doc"]["instanceType"] == "trn1.32xlarge"
    node = kube.get("Node", worker)
    assert got["doc"]["privateIp"] == next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert got["macs"].split("\n") == [f"{fakedev.ena_mac(topo.instance_type, e.bdf)}/" for e in topo.ena]


def test_kind_containerd_delivers_nri_events_and_applies_a_plugins_adjustment(cluster, tmp_path):
    """containerd's own NRI (enabled in the kind config): a plugin on the node's
    /var/run/nri/nri.sock sees the workload's sandbox and container, with its claim's CDI
    devices, and its adjustment (an environment variable) reaches the container."""
    c, _ = cluster
    worker = next(iter(c.nodes))
    plugin = bins.bin_dir(c.k8s_version) / "nri-test-plugin"
    if not plugin.exists():
        pytest.skip("nri-test-plugin not built (make bins)")
    subprocess.run(["docker", "cp", str(plugin), f"{worker}:/usr/local/bin/nri-test-plugin"], check=True)
    subprocess.run(["docker", "exec", "-d", worker, "sh", "-c",
                    "exec /usr/local/bin/nri-test-plugin --events=/tmp/nri-events.jsonl >/tmp/nri-plugin.log 2>&1"], check=True)
    kube = Kube(str(c.kubeconfig))
    ns = f"kn-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    end = time.monotonic() + 20
    while b'"Configure"' not in subprocess.run(["docker", "exec", worker, "cat", "/tmp/nri-events.jsonl"],
                                               capture_output=True).stdout:
        assert time.monotonic() < end, subprocess.run(["docker", "exec", worker, "cat", "/tmp/nri-plugin.log"],
                                                      capture_output=True, text=True).stdout
        time.sleep(0.5)
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "one", "namespace": ns},
                "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com"}}]}}})
    log = _run_pod(kube, ns, "nri", "import os; print('ENV=' + os.environ.get('NRI_TEST_PLUGIN', ''))", claim="one")
    assert "ENV=nri" in log.splitlines()
    lines = [json.loads(x) for x in subprocess.run(["docker", "exec", worker, "cat", "/tmp/nri-events.jsonl"],
                                                    capture_output=True, text=True).stdout.splitlines()]
    conf = lines[0]
    assert conf["event"] == "Configure" and conf["runtime"] == "containerd", conf
    mine = [x for x in lines if x.get("pod") == f"{ns}/nri"]
    assert [x["event"] for x in mine][:3] == ["RunPodSandbox", "CreateContainer", "StartContainer"], mine
    create = next(x for x in mine if x["event"] == "CreateContainer")
    # the claim is deallocated once its pod is done: the CDI id names it by uid, then the device
    uid = kube.get("ResourceClaim", "one", ns)["metadata"]["uid"]
    published = {d["name"] for s in kube.list("ResourceSlice")[0] if s["spec"].get("nodeName") == worker
                 and s["spec"]["driver"] == "neuron.aws.com" for d in s["spec"]["devices"]}
    [cdi] = create["cdi_devices"]
    assert cdi.startswith(f"k8s.neuron.aws.com/neuron={uid}-") and cdi.split(f"{uid}-")[1] in published, cdi


SYS_READER = r"""
import json, os
def read(p):
    try:
        return open(p).read().strip()
    except OSError as e:
        return None
pci = sorted(os.listdir('/sys/bus/pci/devices'))
out = {"pci": pci,
       "vendors": {b: read(f'/sys/bus/pci/devices/{b}/vendor') for b in pci},
       "neuron": sorted(x for x in os.listdir('/sys/class/neuron_device') if x[6:].isdigit()) if os.path.isdir('/sys/class/neuron_device') else None,
       "infiniband": sorted(os.listdir('/sys/class/infiniband')) if os.path.isdir('/sys/class/infiniband') else None,
       "product": read('/sys/devices/virtual/dmi/id/product_name'),
       "numa": sorted(x for x in os.listdir('/sys/devices/system/node') if x.startswith('node')),
       "cgroup": os.path.isdir('/sys/fs/cgroup') and bool(os.listdir('/sys/fs/cgroup'))}
print("SYS=" + json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["plain", "privileged-host-network", "host-path-sys"])
def test_every_container_on_a_worker_sees_its_fake_node_in_sys(cluster, kind):
    """Issue 21 item 1: a container of any kind, started by the worker's containerd, reads the
    worker's fakedev tree where the machine's hardware would be (nri-fakesys), whatever its /sys
    is: the runtime's own sysfs, a privileged one, or a hostPath /sys volume."""
    import fakedev

    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    ns = f"ks-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    ctr = {"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["python3", "-c", SYS_READER]}
    spec: dict = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": [ctr]}
    if kind != "plain":
        spec["hostNetwork"] = True
        ctr["securityContext"] = {"privileged": True}
    if kind == "host-path-sys":
        spec["volumes"] = [{"name": "sys", "hostPath": {"path": "/sys"}}]
        ctr["volumeMounts"] = [{"name": "sys", "mountPath": "/sys"}]
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sys", "namespace": ns}, "spec": spec})
    kube.wait("Pod", lambda p: p is not None and p["status"].get("phase") in ("Succeeded", "Failed"),
              what="the /sys reader done", timeout=120, namespace=ns, name="sys")
    log = kube.core.read_namespaced_pod_log("sys", ns)
    got = json.loads(next(line[4:] for line in log.splitlines() if line.startswith("SYS=")))
    worker = next(iter(c.nodes))
    tree = c.nodes[worker].tree
    truth = fakedev.truth_of(tree)
    assert got["pci"] == sorted(os.listdir(tree / "sys/bus/pci/devices")), "the container's PCI bus is not the tree's"
    assert {d.bdf for d in truth.devices} <= set(got["pci"])
    assert all(got["vendors"][d.bdf] == "0x1d0f" for d in truth.devices if d.kind in ("neuron", "efa"))
    assert got["neuron"] == sorted(f"neuron{d.index}" for d in truth.of_kind("neuron")), got["neuron"]
    assert len(got["infiniband"] or []) == len(truth.of_kind("efa"))
    assert got["product"] == truth.dmi_product_name
    assert got["numa"] == sorted(f"node{n.id}" for n in truth.numa_nodes)
    assert got["cgroup"], "the container lost its cgroup filesystem under /sys"


IN_CLUSTER = """
from kubernetes import client, config
config.load_incluster_config()
print("NODES=%d" % len(client.CoreV1Api().list_node().items))
"""


@pytest.mark.parametrize("host_network", [False, True], ids=["pod-network", "host-network"])
def test_in_cluster_configuration_reaches_the_api_server(cluster, host_network):
    """Issue 21 item 2: what every chart does, the `kubernetes` Service with the pod's service
    account token, from a pod-network pod and a hostNetwork pod (kube-proxy built from the same
    module runs on every node; without it the ClusterIP answered with someone else's certificate)."""
    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    ns = f"kc-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{ns}-read-nodes"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]})
    log = _run_pod(kube, ns, "ic", IN_CLUSTER, host_network=host_network)
    assert f"NODES={len(kube.list('Node')[0])}" in log.splitlines(), log[-1500:]


def _numa_of_neuron0(kube: Kube, node: str) -> object:
    slices, _ = kube.list("ResourceSlice")
    dev = next(d for s in slices if s["spec"]["driver"] == "neuron.aws.com" and s["spec"].get("nodeName") == node
               for d in s["spec"]["devices"] if d["attributes"].get("deviceId", {}).get("int") == 0)
    return dev["attributes"].get("resource.kubernetes.io/numaNode")


def test_helm_upgrade_reconfigures_the_drivers_in_place(cluster):
    """One kind cluster serves every oracle-bug scenario: `reconfigure` is a `helm upgrade` with the
    bug's arguments, returning once the new pods are Ready (readiness = published), and back."""
    c, _ = cluster
    kube = Kube(str(c.kubeconfig))
    worker = next(iter(c.nodes))
    assert _numa_of_neuron0(kube, worker) == {"int": 0}  # kind runs the Neuron driver with --extended-attributes
    t0 = time.monotonic()
    assert KIND.reconfigure(c, {"refdriver-neuron": ["--inject-bug=swapped-numa"]}) == [f"{worker}.refdriver-neuron"]
    took = time.monotonic() - t0
    assert _numa_of_neuron0(kube, worker) == {"int": 1}, "returned before the new driver published"
    assert KIND.reconfigure(c, {"refdriver-neuron": ["--inject-bug=swapped-numa"]}) == []
    KIND.reconfigure(c, {})
    assert _numa_of_neuron0(kube, worker) == {"int": 0}
    print(f"kind reconfigure: {took:.1f} s")


def test_down_removes_the_nodes_and_restores_the_host(cluster):
    c, before = cluster
    KIND.down(c.name)
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    assert not [n for n in names if n.startswith(c.name + "-")]
    assert _read_sysctls() == before  # last: the module's cluster goes here
