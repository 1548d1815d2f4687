"""The kind backend, driven through the kind, docker and helm CLIs as every peer project does.

up: render each node's tree on the host; generate the kind config (one labelled worker per node,
its tree mounted with extraMounts); `kind create cluster`; `mknod` the device nodes inside each
worker (kind cannot mount into /dev; research/anchors.md §2); build and `kind load` the driver
image; install each driver profile's Helm chart (a local path or oci://) with its values; wait
until every node's slices are published. down: `kind export logs` into the artifacts when asked,
then `kind delete cluster`. --keep-cluster keeps it.

The harness keeps each kind cluster's trees and handle under the state root
(`<state root>/.kind/<name>/`), so `find` and `down` work from any process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import fakedev
from fakedev import Truth

from .. import bins, profiles
from ..base import BackendError
from ..handle import Cluster, NodeInfo
from ..paths import check_name, ensure_root, inside, write_private
from ..spec import ClusterSpec
from . import config as kindcfg

IMAGE = "localhost/dra-harness-refdriver:dev"


class KindError(BackendError):
    pass


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        raise KindError(f"`{' '.join(cmd[:4])} ...` failed ({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")
    return r


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise KindError(f"the kind backend needs `{tool}` on PATH (kind {kindcfg.kind_versions()['KIND_VERSION']}, "
                        "docker, helm v3)")
    return path


def state_dir(name: str) -> Path:
    """Trees and the handle of kind cluster `name` (checked before it becomes a path)."""
    return inside(ensure_root(), ".kind", check_name(name, "cluster name"))


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


def helm_releases(prof_names: list[str], driver_args: dict[str, list[str]]) -> list[tuple[str, str, dict]]:
    """(release, chart, values) per chart: the reference drivers share their chart; any other
    driver profile brings its own chart (a path or oci:// reference) and values."""
    ref = [n for n in prof_names if n in profiles.BUILTIN]
    out = []
    if ref:
        out.append(("dra-harness", str(bins.ROOT / "deploy/chart/dra-harness-refdriver"), helm_values(ref, driver_args)))
    for name in prof_names:
        if name in profiles.BUILTIN:
            continue
        prof = profiles.resolve(name)
        if not prof.kind_chart:
            raise KindError(f"driver profile {prof.name} has no kind_chart: the kind backend deploys drivers with Helm")
        chart = prof.kind_chart if "://" in prof.kind_chart or Path(prof.kind_chart).is_absolute() else str(bins.ROOT / prof.kind_chart)
        out.append((prof.name, chart, prof.kind_values))
    return out


def helm_values(prof_names: list[str], driver_args: dict[str, list[str]]) -> dict:
    values: dict = {"image": {"repository": IMAGE.split(":")[0], "tag": IMAGE.split(":")[1]},
                    "neuron": {"enabled": False}, "efa": {"enabled": False}}
    for name in prof_names:
        prof = profiles.resolve(name)
        for kind, v in prof.kind_values.items():
            values[kind] = {**values.get(kind, {}), **v}
            values[kind]["args"] = ["--extended-attributes"] * (kind == "neuron") + driver_args.get(name, [])
    return values


def _up(spec: ClusterSpec, artifacts: Path, build_image: bool = True, chart: str | None = None) -> Cluster:
    for tool in ("kind", "docker", "helm"):
        _need(tool)
    root = state_dir(spec.name)
    trees = {}
    truths = {}
    for n in spec.nodes:
        trees[n.name] = root / "trees" / n.name
        fakedev.generate(n.load_topology(), trees[n.name], devnodes="file")
        truths[n.name] = fakedev.truth_of(trees[n.name])
    cfg_path = artifacts / "kind-config.yaml"
    artifacts.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(kindcfg.dump(kindcfg.render(spec, trees, spec.k8s_version)))
    image = kindcfg.node_image(spec.k8s_version)
    _run(["kind", "create", "cluster", "--name", spec.name, "--config", str(cfg_path), "--image", image, "--wait", "3m"])
    kubeconfig = artifacts / "kubeconfig"
    write_private(kubeconfig, _run(["kind", "get", "kubeconfig", "--name", spec.name]).stdout)
    try:
        kube = _kube(kubeconfig)
        for n in spec.nodes:  # a kind node's container is named like the Kubernetes node
            node = next(x for x in kube.list("Node")[0] if x["metadata"]["labels"].get("dra-harness.io/node") == n.name)
            _run(["docker", "exec", node["metadata"]["name"], "sh", "-c", mknod_script(truths[n.name])])
        if build_image and not os.environ.get("DRA_HARNESS_SKIP_IMAGE_BUILD"):
            _run(["docker", "build", "-f", str(bins.ROOT / "deploy/Dockerfile"), "-t", IMAGE, str(bins.ROOT)])
        _run(["kind", "load", "docker-image", IMAGE, "--name", spec.name])
        for release, chart_ref, vals in helm_releases(spec.nodes[0].drivers, spec.nodes[0].driver_args):
            values = artifacts / f"values-{release}.json"
            values.write_text(json.dumps(vals))
            _run(["helm", "upgrade", "-i", release, chart or chart_ref if release == "dra-harness" else chart_ref,
                  "--namespace", "dra-harness", "--create-namespace", "--kubeconfig", str(kubeconfig), "-f", str(values),
                  "--wait", "--timeout", "5m"])
        want = {(n.name, profiles.resolve(d).driver) for n in spec.nodes for d in n.drivers}
        name_of = {x["metadata"]["name"]: x["metadata"]["labels"].get("dra-harness.io/node") for x in kube.list("Node")[0]}
        kube.wait("ResourceSlice", lambda lst: want <= {(name_of.get(s["spec"].get("nodeName")), s["spec"]["driver"])
                                                        for s in lst["items"]},
                  timeout=180, what="every kind node's slices")
    except Exception:
        export_logs(spec.name, artifacts)
        raise
    nodes = {x["metadata"]["name"]: NodeInfo(x["metadata"]["name"], trees[name_of[x["metadata"]["name"]]],
                                             next(n.topology for n in spec.nodes if n.name == name_of[x["metadata"]["name"]]))
             for x in kube.list("Node")[0] if name_of.get(x["metadata"]["name"])}
    cluster = Cluster(spec.name, "kind", kubeconfig, artifacts, nodes, spec.k8s_version, root)
    _save(cluster)
    return cluster


def _save(c: Cluster) -> None:
    data = {"name": c.name, "kubeconfig": str(c.kubeconfig), "artifacts": str(c.artifacts), "k8s_version": c.k8s_version,
            "nodes": {n: {"tree": str(i.tree), "topology": i.topology} for n, i in c.nodes.items()}}
    (state_dir(c.name) / "cluster.json").write_text(json.dumps(data, indent=2))


def _load(name: str) -> Cluster | None:
    f = state_dir(name) / "cluster.json"
    try:
        d = json.loads(f.read_text())
        nodes = {n: NodeInfo(n, Path(i["tree"]), i["topology"]) for n, i in d["nodes"].items()}
        return Cluster(d["name"], "kind", Path(d["kubeconfig"]), Path(d["artifacts"]), nodes, d["k8s_version"],
                       f.parent)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KindError(f"{f}: corrupt kind cluster state ({e.__class__.__name__}); "
                        f"`dra-harness down --backend kind --name {name}` removes it") from None


def _kube(kubeconfig: Path):
    from ...kube import Kube

    return Kube(str(kubeconfig))


def export_logs(name: str, artifacts: Path) -> None:
    if shutil.which("kind"):
        subprocess.run(["kind", "export", "logs", str(artifacts / "kind-logs"), "--name", name], capture_output=True)


def _delete(name: str, export_logs_to: Path | None = None) -> None:
    if export_logs_to:
        export_logs(name, export_logs_to)
    if shutil.which("kind"):
        subprocess.run(["kind", "delete", "cluster", "--name", name], capture_output=True)
    shutil.rmtree(state_dir(name), ignore_errors=True)


class KindBackend:
    name = "kind"

    def up(self, spec: ClusterSpec, artifacts: Path, *, timeout: float = 300, owner_pid: int | None = None) -> Cluster:
        check_name(spec.name, "cluster name")
        try:
            return _up(spec, artifacts)
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

    def mutate(self, cluster: Cluster, node: str, op: str, *args: str) -> str:
        """The tree is mounted into the node from the host; device nodes live in the node's /dev."""
        tree = cluster.nodes[node].tree
        what = getattr(fakedev.Tree(tree), op)(*args)
        _run(["docker", "exec", node, "sh", "-c", mknod_script(fakedev.truth_of(tree))])
        return what

    def collect_logs(self, cluster: Cluster, dest: Path) -> Path:
        export_logs(cluster.name, dest)
        return dest
