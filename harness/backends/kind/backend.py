"""The kind backend, driven through the kind, docker and helm CLIs as every peer project does.

up: render each node's tree on the host; generate the kind config (one labelled worker per node,
its tree mounted with extraMounts; settings for hosts like this one, config.py); pick the node
image (the pinned one where a registry answers, else one built here: node_image); `kind create
cluster`; give each node its static CNI conflist and wait for Ready; `mknod` the device nodes
inside each worker (kind cannot mount into /dev; research/anchors.md §2); build (offline on the
debootstrap base when needed) and `kind load` the driver image; start a fake IMDSv2 on each
worker at 169.254.169.254 (kind/imds.py); install each driver profile's Helm chart with its
values; wait until every node's slices are published. The host sysctls the
nodes' kubelets rewrite are recorded first and restored at down. down: `kind export logs` into
the artifacts when asked, thaw frozen cgroups, `kind delete cluster`. --keep-cluster keeps it.

The harness keeps each kind cluster's trees and handle under the state root
(`<state root>/.kind/<name>/`), so `find` and `down` work from any process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fakedev
from fakedev import Truth

from .. import binimage, bins, imds, profiles, registration, shared
from ..base import BackendError
from ..handle import Cluster, NodeInfo
from ..paths import MARKER, check_name, check_root, ensure_root, inside, remove_marked, state_root, write_private
from ..spec import ClusterSpec
from . import config as kindcfg
from . import imds as kindimds

IMAGE = "localhost/dra-harness-refdriver:dev"


class KindError(BackendError):
    pass


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        raise KindError(f"`{' '.join(cmd[:4])} ...` failed ({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")
    return r


TOOL_VERSIONS = {"kind": "v0.33.0", "helm": "v3.22.0"}


def _need(tool: str) -> str:
    """A tool on PATH, else (kind, helm) the pinned one built from its Go module into the cache
    by clusters/kind/tools.sh (a minute the first time)."""
    path = shutil.which(tool)
    if path:
        return path
    if tool in TOOL_VERSIONS:
        r = subprocess.run([str(bins.ROOT / "clusters/kind/tools.sh"), tool], capture_output=True, text=True)
        built = Path(r.stdout.strip() or "/nonexistent") / f"{tool}-{TOOL_VERSIONS[tool]}"
        if r.returncode == 0 and built.exists():
            return str(built)
    raise KindError(f"the kind backend needs `{tool}` (kind {kindcfg.kind_versions()['KIND_VERSION']}, docker, "
                    "helm v3); `dra-harness engine up` provides docker")


def node_image(version: str | None, mode: str, say=print) -> tuple[str, bool]:
    """(image, offline): the pinned kindest/node image where a registry answers (`pinned`, or
    `auto` when the pull works), else one built here without a registry (node-image.sh)."""
    pinned = kindcfg.node_image(version)
    if mode in ("auto", "pinned"):
        if subprocess.run(["docker", "image", "inspect", pinned], capture_output=True).returncode == 0:
            return pinned, False
        try:
            pulled = subprocess.run(["docker", "pull", pinned], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pulled = None
        if pulled is not None and pulled.returncode == 0:
            return pinned, False
        if mode == "pinned":
            raise KindError(f"cannot pull the pinned node image {pinned}; use --node-image offline")
        say("kind: no registry answers; building the node image offline (cached after the first time)")
    r = subprocess.run([str(bins.ROOT / "clusters/kind/node-image.sh"), bins.resolve(version)], capture_output=True, text=True)
    if r.returncode != 0:
        raise KindError(f"building the offline node image failed: {r.stderr[-2000:]}")
    return r.stdout.strip(), True


def static_cni(node_name: str, pod_cidr: str) -> str:
    """The conflist a node gets instead of kindnetd: ptp + host-local on its podCIDR, portmap.
    Pods get node-local addresses, masqueraded when they leave the node (the API server on the
    control plane); the suites need no pod-to-pod traffic across nodes."""
    conf = {"cniVersion": "1.0.0", "name": "dra-harness", "plugins": [
        {"type": "ptp", "ipMasq": True, "mtu": 1500,  # masquerade: other nodes have no routes to this podCIDR
         "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    return json.dumps(conf)


# Every kind node's kubelet, containerd and systemd take inotify instances from the host's
# per-user budget (128 by default): a fourth or fifth node's kubelet then dies with
# "inotify_init: too many open files" and kubeadm join hangs (seen with nine workers here).
# The floors kind's known-issues page gives; raised for the cluster's life, restored at down.
INOTIFY_FLOORS = {"fs/inotify/max_user_instances": 512, "fs/inotify/max_user_watches": 524288}


def _read_sysctls() -> dict[str, str]:
    """The host sysctls a privileged node's kubelet rewrites, and the inotify limits `up` may
    raise, as they are now."""
    from .engine import KUBELET_SYSCTLS, read_sysctls

    return read_sysctls((*KUBELET_SYSCTLS, *INOTIFY_FLOORS))


def raise_inotify_limits(say=print) -> None:
    for key, floor in INOTIFY_FLOORS.items():
        path = Path("/proc/sys", key)
        try:
            now = int(path.read_text())
            if now < floor:
                path.write_text(f"{floor}\n")
                say(f"kind: raised {key.replace('/', '.')} {now} -> {floor} for the nodes' kubelets (restored at down)")
        except (OSError, ValueError) as e:
            say(f"kind: could not raise {key.replace('/', '.')} to {floor} ({e}); many nodes may not start")


def state_dir(name: str) -> Path:
    """Trees and the handle of kind cluster `name` (checked before it becomes a path). Creates
    nothing: `status` and `down` of a cluster that never was must leave the state root alone."""
    root = state_root()
    if root.exists() or root.is_symlink():
        check_root(root)
    return inside(root, ".kind", check_name(name, "cluster name"))


FAKESYS_LOG = "/var/log/nri-fakesys.log"
KUBE_PROXY_LOG = "/var/log/kube-proxy.log"
# kube-proxy reads Services and EndpointSlices with the node's own credentials (kubelet.conf), as
# the role upstream binds to system:kube-proxy allows
NODE_PROXIER = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "dra-harness:node-proxier"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]}


def start_kube_proxy(node: str, version: str | None) -> None:
    """kube-proxy (built from the same module as the other components, `make bins`) on a kind
    node, so the `kubernetes` Service and ClusterIP Services reach their endpoints and in-cluster
    configuration works (issue 21 item 2). No image exists offline, so it runs in the node
    container as its CNI config does. Host settings are left alone: conntrack limits and timeouts
    are not written (0), and localhost NodePorts are off (no route_localnet)."""
    binary = bins.bin_dir(version) / "kube-proxy"
    if not binary.exists():
        raise KindError(f"{binary} is missing; run `make bins`")
    _run(["docker", "cp", str(binary), f"{node}:/usr/local/bin/kube-proxy"])
    flags = ["--kubeconfig=/etc/kubernetes/kubelet.conf", f"--hostname-override={node}", "--proxy-mode=iptables",
             f"--cluster-cidr={kindcfg.POD_SUBNET}", "--conntrack-max-per-core=0", "--conntrack-min=0",
             "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
             "--iptables-localhost-nodeports=false", "--metrics-bind-address=127.0.0.1:10249",
             "--healthz-bind-address=127.0.0.1:10256"]
    _run(["docker", "exec", "-d", node, "sh", "-c", f"exec /usr/local/bin/kube-proxy {' '.join(flags)} >{KUBE_PROXY_LOG} 2>&1"])


def kube_proxy_synced(node: str) -> bool:
    """kube-proxy has written the rule for the `kubernetes` Service in the node's nat table."""
    r = subprocess.run(["docker", "exec", node, "iptables", "-t", "nat", "-S", "KUBE-SERVICES"], capture_output=True, text=True)
    return r.returncode == 0 and "default/kubernetes:https" in r.stdout


def start_fakesys(node: str, version: str | None, timeout: float = 20) -> None:
    """The worker's fake node for every container it starts: nri-fakesys (clusters/nri), an NRI
    plugin on the worker's own containerd (NRI is on in the kind config), which mounts the tree
    over /sys at CreateContainer as `fakedev run` does for a process. Runs in the node container
    like its static CNI config: the harness's plumbing, not a workload. Returns once the runtime
    has configured it, so no workload container is created before."""
    plugin = bins.bin_dir(version) / "nri-fakesys"
    if not plugin.exists():
        raise KindError(f"{plugin} is missing; run `make bins`")
    _run(["docker", "cp", str(plugin), f"{node}:/usr/local/bin/nri-fakesys"])
    _run(["docker", "exec", "-d", node, "sh", "-c", f"exec /usr/local/bin/nri-fakesys --tree {kindcfg.TREE_IN_NODE} "
          f"--skip-namespaces kube-system >{FAKESYS_LOG} 2>&1"])
    deadline = time.monotonic() + timeout
    while True:
        log = subprocess.run(["docker", "exec", node, "cat", FAKESYS_LOG], capture_output=True, text=True).stdout
        if "configured by" in log:
            return
        if time.monotonic() > deadline:
            raise KindError(f"nri-fakesys did not register with the containerd of {node} within {timeout:.0f} s: "
                            f"{log.strip()[-300:]}")
        time.sleep(0.2)


def mknod_script(truth: Truth) -> str:
    """Shell run inside a kind node: the tree's usable character devices at their real paths
    (numbers from fakedev's truth), and none of the ones it no longer has."""
    lines = ["set -e", "mkdir -p /dev/infiniband"]
    want = truth.usable_devnodes()
    for n in want:
        lines.append(f"[ -e /dev/{n.path} ] || mknod -m 0666 /dev/{n.path} c {n.major} {n.minor}")
    for d in truth.devices:
        for n in d.devnodes:
            if n not in want:
                lines.append(f"rm -f /dev/{n.path}")
    return "\n".join(lines)


REF_CHART = "deploy/chart/dra-harness-refdriver"  # the reference drivers' chart: one release for all of them


def is_refdriver(name: str) -> bool:
    return profiles.resolve(name).kind_chart == REF_CHART


def driver_images(prof_names: list[str], version: str | None, state: Path) -> list[str]:
    """The images of the profiles' own drivers (kind_images), each checked before a cluster
    starts: a tarball that exists, or an image the engine has (one line naming the profile).
    A built-in profile's binaries (kind_binary_images) are made into image archives in `state`."""
    out = []
    for name in prof_names:
        if is_refdriver(name):
            continue
        prof = profiles.resolve(name)
        for binary, ref in prof.kind_binary_images.items():
            src = bins.ensure(version) / binary  # built by `make bins` from the cluster version's module
            out.append(str(binimage.write(src, ref, state / f"{binary}.image.tar")))
        for img in prof.kind_images:
            if img.endswith((".tar", ".tar.gz")):
                if not Path(img).is_file():
                    raise KindError(f"driver profile {prof.name}: kind_images: {img} is not a file")
            elif subprocess.run(["docker", "image", "inspect", img], capture_output=True).returncode:
                raise KindError(f"driver profile {prof.name}: kind_images: the engine has no image {img} "
                                "(build it, or `docker load` it, first)")
            out.append(img)
    return out


def load_images(kind: str, cluster: str, images: list[str]) -> None:
    """`kind load` each image into every node, as a user would (no registry needed)."""
    for img in images:
        if img.endswith((".tar", ".tar.gz")):
            _run([kind, "load", "image-archive", img, "--name", cluster])
        else:
            _run([kind, "load", "docker-image", img, "--name", cluster])


def helm_releases(prof_names: list[str], driver_args: dict[str, list[str]],
                  values: dict[str, str] | None = None) -> list[tuple[str, str, dict]]:
    """(release, chart, values) per chart: the reference drivers share their chart; any other
    driver profile brings its own chart (a path or oci:// reference) and values."""
    ref = [n for n in prof_names if is_refdriver(n)]
    out = []
    if ref:
        out.append(("dra-harness", str(bins.ROOT / REF_CHART), helm_values(ref, driver_args)))
    for name in prof_names:
        if is_refdriver(name):
            continue
        prof = profiles.resolve(name)
        if not prof.kind_chart:
            raise KindError(f"driver profile {prof.name} has no kind_chart: the kind backend deploys drivers with Helm")
        chart = prof.kind_chart if "://" in prof.kind_chart or Path(prof.kind_chart).is_absolute() else str(bins.ROOT / prof.kind_chart)
        out.append((prof.name, chart, profiles.kind_values(prof, **(values or {}))))
    return out


def helm_values(prof_names: list[str], driver_args: dict[str, list[str]]) -> dict:
    values: dict = {"image": {"repository": IMAGE.split(":")[0], "tag": IMAGE.split(":")[1]},
                    "neuron": {"enabled": False}, "efa": {"enabled": False}}
    for name in prof_names:
        prof = profiles.resolve(name)
        for kind, v in prof.kind_values.items():
            values[kind] = {**values.get(kind, {}), **v}  # the profile's own args (--share-efa) stay
            values[kind]["args"] = ["--extended-attributes"] * (kind == "neuron") + list(v.get("args", [])) + \
                driver_args.get(name, [])
    return values


def _up(spec: ClusterSpec, artifacts: Path, build_image: bool = True, chart: str | None = None,
        image_mode: str = "auto") -> Cluster:
    _need("docker")
    kind, helm = _need("kind"), _need("helm")
    ensure_root()
    root = state_dir(spec.name)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(f"{spec.name}\n")  # first: `down` deletes only what carries it
    images = driver_images(spec.nodes[0].drivers, spec.k8s_version, root)  # before any node starts
    (root / "sysctls.json").write_text(json.dumps(_read_sysctls()))  # restored when the cluster goes
    raise_inotify_limits()
    trees = {}
    truths = {}
    for n in spec.nodes:
        trees[n.name] = root / "trees" / n.name
        fakedev.generate(n.load_topology(), trees[n.name], devnodes="file")
        truths[n.name] = fakedev.truth_of(trees[n.name])
    cfg_path = artifacts / "kind-config.yaml"
    artifacts.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(kindcfg.dump(kindcfg.render(spec, trees, spec.k8s_version)))
    image, offline = node_image(spec.k8s_version, image_mode)
    # no --wait: nodes are NotReady until their CNI conflist is written below
    create = [kind, "create", "cluster", "--name", spec.name, "--config", str(cfg_path), "--image", image]
    for attempt in range(1, 4):
        try:
            _run(create)
            break
        except KindError as e:
            # kubeadm can run before the node's containerd is up when the host is busy (seen right
            # after dockerd started, and with ten nodes booting at once): again, from scratch
            if "containerd.sock" not in str(e) or attempt == 3:
                raise
            print(f"kind: kubeadm ran before containerd was up in a node (attempt {attempt} of 3); creating again",
                  flush=True)
            subprocess.run([kind, "delete", "cluster", "--name", spec.name], capture_output=True)
            sweep_node_containers(spec.name, settle=0.5)
    kubeconfig = artifacts / "kubeconfig"
    write_private(kubeconfig, _run([kind, "get", "kubeconfig", "--name", spec.name]).stdout)
    try:
        kube = _kube(kubeconfig)
        for node in kube.list("Node")[0]:
            name = node["metadata"]["name"]
            _run(["docker", "exec", "-i", name, "sh", "-c", "cat > /etc/cni/net.d/10-dra-harness.conflist"],
                 input=static_cni(name, node["spec"]["podCIDR"]))
        kube.wait("Node", lambda lst: lst["items"] and all(any(c["type"] == "Ready" and c["status"] == "True"
                                                               for c in n["status"].get("conditions") or [])
                                                           for n in lst["items"]),
                  timeout=120, what="every kind node Ready")
        kube.apply(NODE_PROXIER)
        all_nodes = [n["metadata"]["name"] for n in kube.list("Node")[0]]
        for name in all_nodes:
            start_kube_proxy(name, spec.k8s_version)
        cp = next(n for n in kube.list("Node")[0] if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"])
        api_host = next(a["address"] for a in cp["status"]["addresses"] if a["type"] == "InternalIP")
        for n in spec.nodes:  # a kind node's container is named like the Kubernetes node
            node = next(x for x in kube.list("Node")[0] if x["metadata"]["labels"].get("dra-harness.io/node") == n.name)
            _run(["docker", "exec", node["metadata"]["name"], "sh", "-c", mknod_script(truths[n.name])])
            start_fakesys(node["metadata"]["name"], spec.k8s_version)
        if build_image and not os.environ.get("DRA_HARNESS_SKIP_IMAGE_BUILD"):
            if offline:  # on the debootstrap base, from wheels: nothing fetched during the build
                _run([str(bins.ROOT / "clusters/kind/driver-image.sh"), IMAGE], env={**os.environ, "PYTHON": sys.executable})
            else:
                _run(["docker", "build", "-f", str(bins.ROOT / "deploy/Dockerfile"), "-t", IMAGE, str(bins.ROOT)])
        _run([kind, "load", "docker-image", IMAGE, "--name", spec.name])
        load_images(kind, spec.name, images)
        imds_data = {}
        for n in spec.nodes:  # a fake IMDSv2 on each worker (kind/imds.py), starting while the drivers install
            node = next(x for x in kube.list("Node")[0] if x["metadata"]["labels"].get("dra-harness.io/node") == n.name)
            kname = node["metadata"]["name"]
            ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
            _run(["docker", "exec", kname, "sh", "-c", kindimds.add_address_script()])
            imds_data[kname] = imds.node_metadata(kname, n.load_topology(), spec.name, ip)
        kube.create_namespace(kindimds.NAMESPACE)
        for obj in kindimds.manifests(IMAGE, imds_data):
            kube.apply(obj)
        for release, chart_ref, vals in helm_releases(spec.nodes[0].drivers, spec.nodes[0].driver_args,
                                                      {"cluster": spec.name, "api_host": api_host, "api_port": "6443"}):
            if release == "dra-harness":  # no kube-proxy: the drivers reach the API server at its node address
                vals = {**vals, "apiServer": {"host": api_host, "port": "6443"}}
            values = artifacts / f"values-{release}.json"
            values.write_text(json.dumps(vals))
            _run([helm, "upgrade", "-i", release, chart or chart_ref if release == "dra-harness" else chart_ref,
                  "--namespace", "dra-harness", "--create-namespace", "--kubeconfig", str(kubeconfig), "-f", str(values),
                  "--wait", "--timeout", "5m"])
        for name in spec.nodes[0].drivers:  # the DeviceClasses a driver ships (the refdrivers' chart has its own)
            for obj in [] if is_refdriver(name) else profiles.resolve(name).device_class_objects():
                kube.apply(obj)
        want = {(n.name, profiles.resolve(d).driver) for n in spec.nodes for d in n.drivers}
        name_of = {x["metadata"]["name"]: x["metadata"]["labels"].get("dra-harness.io/node") for x in kube.list("Node")[0]}
        kube.wait("ResourceSlice", lambda lst: want <= {(name_of.get(s["spec"].get("nodeName")), s["spec"]["driver"])
                                                        for s in lst["items"]},
                  timeout=180, what="every kind node's slices")
        kube.wait("DaemonSet", kindimds.ready, namespace=kindimds.NAMESPACE, name=kindimds.NAME, timeout=60,
                  what="the fake IMDS ready on every worker")
        deadline = time.monotonic() + 60
        while not all(kube_proxy_synced(n) for n in all_nodes):
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "exec", all_nodes[-1], "tail", "-5", KUBE_PROXY_LOG], capture_output=True,
                                      text=True).stdout
                raise KindError(f"kube-proxy wrote no rule for the kubernetes Service within 60 s: {logs.strip()[-400:]}")
            time.sleep(0.5)
    except Exception:
        export_logs(spec.name, artifacts)
        raise
    nodes = {x["metadata"]["name"]: NodeInfo(x["metadata"]["name"], trees[name_of[x["metadata"]["name"]]],
                                             next(n.topology for n in spec.nodes if n.name == name_of[x["metadata"]["name"]]))
             for x in kube.list("Node")[0] if name_of.get(x["metadata"]["name"])}
    cluster = Cluster(spec.name, "kind", kubeconfig, artifacts, nodes, bins.resolve(spec.k8s_version), root, list(spec.nodes[0].drivers))
    _save(cluster)
    return cluster


def _rolled_out(ds: dict) -> bool:
    """Every node runs a pod of the DaemonSet's newest template, and every one is Ready (helm's
    own --wait lets a one-node DaemonSet through with none Ready: maxUnavailable is 1)."""
    st, want = ds.get("status") or {}, ds["metadata"].get("generation", 0)
    n = st.get("desiredNumberScheduled", 0)
    return st.get("observedGeneration", 0) >= want and st.get("updatedNumberScheduled", 0) == n \
        and st.get("numberReady", 0) == n and st.get("numberAvailable", 0) == n \
        and st.get("currentNumberScheduled", 0) == n


def _save(c: Cluster) -> None:
    data = {"name": c.name, "kubeconfig": str(c.kubeconfig), "artifacts": str(c.artifacts), "k8s_version": c.k8s_version,
            "drivers": c.drivers, "nodes": {n: {"tree": str(i.tree), "topology": i.topology} for n, i in c.nodes.items()}}
    (state_dir(c.name) / "cluster.json").write_text(json.dumps(data, indent=2))


def _load(name: str) -> Cluster | None:
    f = state_dir(name) / "cluster.json"
    try:
        d = json.loads(f.read_text())
        nodes = {n: NodeInfo(n, Path(i["tree"]), i["topology"]) for n, i in d["nodes"].items()}
        return Cluster(d["name"], "kind", Path(d["kubeconfig"]), Path(d["artifacts"]), nodes, d["k8s_version"],
                       f.parent, list(d.get("drivers") or profiles.DEFAULT))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KindError(f"{f}: corrupt kind cluster state ({e.__class__.__name__}); "
                        f"`dra-harness down --backend kind --name {name}` removes it") from None


def _kube(kubeconfig: Path):
    from ...kube import Kube

    return Kube(str(kubeconfig))


def export_logs(name: str, artifacts: Path) -> None:
    try:
        kind = _need("kind")
    except KindError:
        return
    subprocess.run([kind, "export", "logs", str(artifacts / "kind-logs"), "--name", name], capture_output=True)


def node_containers(name: str) -> list[str]:
    """Full ids of every container kind labelled with cluster `name`, running or not."""
    if shutil.which("docker") is None:  # no engine installed: no node containers either
        return []
    return subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=io.x-k8s.kind.cluster={name}"],
                          capture_output=True, text=True).stdout.split()


def thaw(name: str) -> int:
    """Thaw every frozen cgroup v1 freezer below the cluster's node containers; returns how many.
    Why: on cgroup v1 with Debian's runc 1.1.5, a container torn down while starting can leave
    its `runc init` FROZEN in uninterruptible sleep, and the node container then cannot be
    killed ("did not receive an exit event"), so `kind delete` would leave it behind."""
    ids = node_containers(name)
    thawed = 0
    for cid in ids:
        base = Path("/sys/fs/cgroup/freezer/docker") / cid
        if not base.is_dir():
            continue
        for state in base.rglob("freezer.state"):
            try:
                if state.read_text().strip() != "THAWED":
                    state.write_text("THAWED\n")
                    thawed += 1
            except OSError:
                pass
    return thawed


def sweep_node_containers(name: str, settle: float = 2.0, timeout: float = 60.0) -> int:
    """Remove the cluster's node containers that `kind delete` did not see; returns how many.
    Why: after Ctrl-C during `kind create`, dockerd still finishes the `docker run`s the killed
    kind had sent, so a container can appear after the delete. Done when none has been seen for
    `settle` seconds."""
    removed, quiet_since, end = 0, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        ids = node_containers(name)
        if ids:
            thaw(name)
            subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
            removed += len(ids)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            break
        time.sleep(0.25)
    return removed


def _not_ours(d: Path) -> None:
    print(f"dra-harness: warning: kind: {d} is not a dra-harness cluster's state (no {MARKER}); left as it is",
          file=sys.stderr)


def _delete(name: str, export_logs_to: Path | None = None) -> None:
    d = state_dir(name)
    if not (d / MARKER).is_file() and not node_containers(name):  # nothing of ours, nothing of kind's: no tools needed
        if d.exists():
            _not_ours(d)
        shared.forget(name)
        return
    if export_logs_to:
        export_logs(name, export_logs_to)
    thaw(name)
    try:
        subprocess.run([_need("kind"), "delete", "cluster", "--name", name], capture_output=True)
    except KindError:
        pass
    sweep_node_containers(name)
    d = state_dir(name)
    saved = d / "sysctls.json"
    if (d / MARKER).is_file() and saved.exists():  # what the nodes' kubelets rewrote on the host, put back
        from .engine import restore_sysctls

        restore_sysctls(json.loads(saved.read_text()), say=lambda _: None)
    if d.exists() and not remove_marked(d):  # reliability-probe-2.md row 113: never an unmarked directory
        _not_ours(d)
    shared.forget(name)  # the sharing files of test runs, also after an interrupted run (as the local backend)


class KindBackend:
    name = "kind"

    def up(self, spec: ClusterSpec, artifacts: Path, *, timeout: float = 300, owner_pid: int | None = None) -> Cluster:
        check_name(spec.name, "cluster name")
        try:
            return _up(spec, artifacts, image_mode=os.environ.get("DRA_HARNESS_NODE_IMAGE", "auto"))
        except BaseException:
            _delete(spec.name, artifacts)
            raise

    def down(self, name: str, *, export_logs_to: Path | None = None) -> list[str]:
        _delete(name, export_logs_to)
        return []

    def status(self, name: str) -> dict:
        c = _load(name)
        return {"name": name, "state": "running" if c else "absent", **({"kubeconfig": str(c.kubeconfig),
                                                                          "nodes": list(c.nodes)} if c else {})}

    def find(self, name: str) -> Cluster | None:
        return _load(name)

    def restart_driver(self, cluster: Cluster, node: str, profile: str) -> None:
        """Delete the driver's DaemonSet pod on that node and wait for its replacement to be ready."""
        kube = _kube(cluster.kubeconfig)
        kind = profile.rsplit("-", 1)[-1]  # refdriver-neuron -> neuron
        sel = f"dra-harness.io/driver={kind}"
        old = [p for p in kube.list("Pod", namespace="dra-harness", label_selector=sel)[0] if p["spec"].get("nodeName") == node]
        for p in old:
            kube.core.delete_namespaced_pod(p["metadata"]["name"], "dra-harness")
        gone = {p["metadata"]["uid"] for p in old}
        kube.wait("Pod", lambda lst: any(p["spec"].get("nodeName") == node and p["metadata"]["uid"] not in gone and
                                         any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in (p.get("status") or {}).get("conditions") or [])
                                         for p in lst["items"]),
                  namespace="dra-harness", label_selector=sel, timeout=120, what=f"a new {profile} pod ready on {node}")

    def registered(self, cluster: Cluster, node: str) -> list[str]:
        """From the node's real kubelet (its plugin manager's metrics)."""
        return registration.from_kubelet(_kube(cluster.kubeconfig), node)

    def reconfigure(self, cluster: Cluster, driver_args: dict[str, list[str]]) -> list[str]:
        """`helm upgrade` of the reference drivers' release with the new arguments; returns once each
        DaemonSet's new pods are Ready, which the chart's readiness probe holds back until the new
        driver has published its slices. Drivers of their own chart take values, not arguments."""
        foreign = sorted(p for p in driver_args if not is_refdriver(p))
        if foreign:
            raise KindError(f"driver profile {foreign[0]} is deployed by its own chart on kind: give it kind_values, "
                            "not arguments")
        saved = cluster.artifacts / "values-dra-harness.json"
        try:
            old = json.loads(saved.read_text())
        except (OSError, ValueError) as e:
            raise KindError(f"{saved}: cannot read the values the drivers were installed with ({e})") from None
        ref = [n for n in cluster.drivers if is_refdriver(n)]
        vals = {**old, **helm_values(ref, driver_args)}
        if vals == old:
            return []
        saved.write_text(json.dumps(vals))
        _run([_need("helm"), "upgrade", "dra-harness", str(bins.ROOT / REF_CHART),
              "--namespace", "dra-harness", "--kubeconfig", str(cluster.kubeconfig), "-f", str(saved)])
        kube = _kube(cluster.kubeconfig)
        changed = [k for k in ("neuron", "efa") if (old.get(k) or {}).get("args") != (vals.get(k) or {}).get("args")]
        kube.wait("DaemonSet", lambda lst: all(_rolled_out(ds) for ds in lst["items"]), namespace="dra-harness",
                  label_selector="app.kubernetes.io/instance=dra-harness", timeout=180,
                  what="the reference drivers' DaemonSets rolled out with the new arguments, every new pod Ready",
                  describe=lambda lst: "; ".join(f"{ds['metadata']['name']}: {ds.get('status')}" for ds in lst["items"]))
        return [f"{n}.refdriver-{k}" for k in changed for n in cluster.nodes]

    def mutate(self, cluster: Cluster, node: str, op: str, *args: str) -> str:
        """The tree is mounted into the node from the host; device nodes live in the node's /dev."""
        tree = cluster.nodes[node].tree
        what = getattr(fakedev.Tree(tree), op)(*args)
        _run(["docker", "exec", node, "sh", "-c", mknod_script(fakedev.truth_of(tree))])
        return what

    def collect_logs(self, cluster: Cluster, dest: Path) -> Path:
        export_logs(cluster.name, dest)
        return dest
