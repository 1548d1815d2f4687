"""The kind backend, driven through the kind, docker and helm CLIs as every peer project does.

up: render each node's tree on the host; generate the kind config (one labelled worker per node,
its tree mounted with extraMounts); `kind create cluster`; `mknod` the device nodes inside each
worker (kind cannot mount into /dev; research/anchors.md §2); build and `kind load` the driver
image; install each driver profile's Helm chart (a local path or oci://) with its values; wait
until every node's slices are published. down: `kind export logs` into the artifacts when asked,
then `kind delete cluster`. --keep-cluster keeps it.

This path cannot run on the project's own CI machine (no container engine for privileged kind
nodes); what can be checked there is checked by tests/test_kind.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import fakedev

from ... import bins, profiles
from ..handle import Cluster, NodeInfo
from ..spec import ClusterSpec
from . import config as kindcfg

IMAGE = "localhost/dra-harness-refdriver:dev"


class KindError(Exception):
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


def tree_root(name: str) -> Path:
    return Path(os.environ.get("DRA_HARNESS_KIND_TREES", "/tmp/dra-harness-kind")) / name


def mknod_script(truth: dict, majors: dict[str, int]) -> str:
    """Shell run inside a kind node: the tree's character devices at their real paths."""
    lines = ["set -e", "mkdir -p /dev/infiniband"]
    for d in truth["devices"]:
        if d["kind"] == "neuron" and d["usable"]:
            lines.append(f"[ -e /dev/neuron{d['index']} ] || mknod -m 0666 /dev/neuron{d['index']} c {majors['neuron']} {d['index']}")
        elif d["kind"] == "efa" and d["usable"]:
            lines.append(f"[ -e /dev/infiniband/uverbs{d['uverbs']} ] || mknod -m 0666 /dev/infiniband/uverbs{d['uverbs']} "
                         f"c {majors['uverbs']} {192 + d['uverbs']}")
    if any(d["kind"] == "efa" for d in truth["devices"]):
        lines.append("[ -e /dev/infiniband/rdma_cm ] || mknod -m 0666 /dev/infiniband/rdma_cm c 10 58")
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


def up(spec: ClusterSpec, artifacts: Path, build_image: bool = True, chart: str | None = None) -> Cluster:
    for tool in ("kind", "docker", "helm"):
        _need(tool)
    root = tree_root(spec.name)
    trees = {}
    truths = {}
    for n in spec.nodes:
        trees[n.name] = root / n.name
        fakedev.generate(n.load_topology(), trees[n.name], devnodes="file")
        truths[n.name] = fakedev.truth_of(trees[n.name])
    cfg_path = artifacts / "kind-config.yaml"
    artifacts.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(kindcfg.dump(kindcfg.render(spec, trees, spec.k8s_version)))
    image = kindcfg.node_image(spec.k8s_version)
    _run(["kind", "create", "cluster", "--name", spec.name, "--config", str(cfg_path), "--image", image, "--wait", "3m"])
    kubeconfig = artifacts / "kubeconfig"
    kubeconfig.write_text(_run(["kind", "get", "kubeconfig", "--name", spec.name]).stdout)
    try:
        kube = _kube(kubeconfig)
        for n in spec.nodes:  # a kind node's container is named like the Kubernetes node
            node = next(x for x in kube.list("Node")[0] if x["metadata"]["labels"].get("dra-harness.io/node") == n.name)
            _run(["docker", "exec", node["metadata"]["name"], "sh", "-c",
                  mknod_script(truths[n.name], n.load_topology().devfs_majors)])
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
    return Cluster(spec.name, "kind", kubeconfig, artifacts, nodes, spec.k8s_version)


def _kube(kubeconfig: Path):
    from ...kube import Kube

    return Kube(str(kubeconfig))


def export_logs(name: str, artifacts: Path) -> None:
    subprocess.run(["kind", "export", "logs", str(artifacts / "kind-logs"), "--name", name], capture_output=True)


def down(name: str, artifacts: Path | None = None, export: bool = False) -> None:
    if export and artifacts:
        export_logs(name, artifacts)
    subprocess.run(["kind", "delete", "cluster", "--name", name], capture_output=True)
    shutil.rmtree(tree_root(name), ignore_errors=True)


# -- the pytest plugin's use -----------------------------------------------------------------------


def session_cluster(session, want: dict) -> Cluster:
    from ..spec import parse_nodes
    import hashlib

    name = f"dra-{session.runuid}-{hashlib.sha256(json.dumps(want, sort_keys=True).encode()).hexdigest()[:5]}"
    spec = ClusterSpec(name=name, nodes=parse_nodes(want["nodes"], driver_args=want["args"]), k8s_version=session.version)
    return up(spec, session.artifacts / name)


def release_one(session, cluster: Cluster) -> None:
    failed = getattr(session.config, "_dra_failed", False)
    if session.keep:
        return
    down(cluster.name, cluster.artifacts, export=failed)
