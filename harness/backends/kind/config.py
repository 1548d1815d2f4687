"""Generate kind cluster configs (kind.x-k8s.io/v1alpha4) from a cluster spec.

Per Kubernetes version (research/anchors.md §2, dra-api.md §4): DRA is GA and on from 1.34; the
device-taint gates and DeviceTaintRule API versions of 1.34-1.36 come from gates.py; the `enable_cdi` containerd patch only matters for
containerd 1.7 node images and is kept as a guard (kind applies a patch only when its version
matches); the scheduler's allocator logging is raised for both kubeadm config generations.
Each worker mounts its own fake tree at the same container path, so one DaemonSet serves all.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .. import bins
from ..spec import ClusterSpec

TREE_IN_NODE = "/var/lib/dra-harness/tree"
SUPPORTED = ("1.34", "1.35", "1.36", "1.37")


def kind_versions() -> dict[str, str]:
    out = {}
    for line in (bins.ROOT / "clusters/kind/versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v.strip()
    return out


def node_image(version: str | None) -> str:
    minor = ".".join((version or bins.versions()["K8S_DEFAULT"]).lstrip("v").split(".")[:2])
    key = "KIND_NODE_" + minor.replace(".", "_")
    images = kind_versions()
    if key not in images:
        raise ValueError(f"no kind node image pinned for Kubernetes {minor} (supported: {', '.join(SUPPORTED)})")
    return images[key]


SCHEDULER_V1BETA3 = """kind: ClusterConfiguration
apiVersion: kubeadm.k8s.io/v1beta3
scheduler:
  extraArgs:
    v: "2"
    vmodule: "allocator*=6,dynamicresources=6"
"""
SCHEDULER_V1BETA4 = """kind: ClusterConfiguration
apiVersion: kubeadm.k8s.io/v1beta4
scheduler:
  extraArgs:
  - name: v
    value: "2"
  - name: vmodule
    value: "allocator*=6,dynamicresources=6"
"""
CDI_CONTAINERD_1_7 = """[plugins."io.containerd.grpc.v1.cri"]
  enable_cdi = true
  cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
"""
# Hosts like this project's machine (research/kind-offline.md): without CAP_SYS_RESOURCE runc
# cannot lower oom_score_adj, so containerd must not try (fatal otherwise); NRI on for drivers
# that are NRI plugins (DRANET).
CONTAINERD_NO_OOM_ADJ = """[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
"""
CONTAINERD_NRI = """[plugins."io.containerd.nri.v1.nri"]
  disable = false
"""
# cgroup v1 hosts: kubelet 1.35+ refuses v1 unless told, and kubeadm's check must be skipped;
# open files within the hard limit; no CoreDNS, no kube-proxy (no images for them offline, and
# the suites need neither).
KUBELET = """kind: KubeletConfiguration
failCgroupV1: false
maxOpenFiles: {max_open_files}
"""
INIT = """kind: InitConfiguration
skipPhases: [addon/coredns, addon/kube-proxy]
nodeRegistration:
  ignorePreflightErrors: [SystemVerification]
"""
JOIN = """kind: JoinConfiguration
nodeRegistration:
  ignorePreflightErrors: [SystemVerification]
"""
POD_SUBNET, SERVICE_SUBNET = "198.19.128.0/18", "198.19.192.0/18"  # clear of docker's pool and the node veths


def max_open_files() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return min(1_000_000, hard if hard != resource.RLIM_INFINITY else 1_000_000)


def host_patches() -> list[str]:
    from .engine import missing_caps

    patches = [CDI_CONTAINERD_1_7, CONTAINERD_NRI]
    if "CAP_SYS_RESOURCE" in missing_caps():
        patches.append(CONTAINERD_NO_OOM_ADJ)
    return patches


def render(spec: ClusterSpec, trees: dict[str, Path], version: str | None, host: bool = True) -> dict:
    """The kind Cluster config: a control plane and one labelled worker per node spec. `host`:
    fit this machine (its capabilities, its open-files limit); else the checked-in examples'
    portable settings."""
    minor = ".".join((version or bins.versions()["K8S_DEFAULT"]).lstrip("v").split(".")[:2])
    if minor not in SUPPORTED:
        raise ValueError(f"Kubernetes {minor} is not supported by the kind backend ({', '.join(SUPPORTED)})")
    nodes = [{"role": "control-plane", "kubeadmConfigPatches": [SCHEDULER_V1BETA3, SCHEDULER_V1BETA4, INIT]}]
    for n in spec.nodes:
        nodes.append({
            "role": "worker",
            "labels": {**n.labels, "dra-harness.io/node": n.name},
            "extraMounts": [{"hostPath": str(trees[n.name]), "containerPath": TREE_IN_NODE, "readOnly": False}],
        })
    from .. import gates

    extra: dict = {}
    if gates.merged(minor, spec.feature_gates):  # the DRA features of older minors (gates.py) and the
        extra["featureGates"] = gates.merged(minor, spec.feature_gates)  # scenario's own, on every component
    if gates.runtime_config(minor, spec.beta_apis):
        extra["runtimeConfig"] = gates.runtime_config(minor, spec.beta_apis)
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": spec.name,
        **extra,
        # Pod and service CIDRs in 198.18.0.0/15 (benchmarking range), never RFC 1918 space; no
        # kindnetd (not served offline): a static CNI conflist per node (backend.static_cni).
        "networking": {"ipFamily": "ipv4", "podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET,
                       "disableDefaultCNI": True, "kubeProxyMode": "none"},
        "containerdConfigPatches": host_patches() if host else [CDI_CONTAINERD_1_7, CONTAINERD_NRI, CONTAINERD_NO_OOM_ADJ],
        "kubeadmConfigPatches": [KUBELET.format(max_open_files=max_open_files() if host else 1_000_000), JOIN],
        "nodes": nodes,
    }


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def dump(cfg: dict) -> str:
    """YAML with multi-line patches as block scalars, as people write kind configs."""
    return "# generated by dra-harness (harness/cluster/kind/config.py); do not edit\n" + \
        yaml.dump(cfg, Dumper=_Dumper, sort_keys=False)


TOPOLOGY_SETS = {
    "default": "trn1.32xlarge,trn2.48xlarge",
    "trn2-pair": "trn2.48xlarge,trn2.48xlarge",
    "inference": "inf2.48xlarge,inf2.24xlarge,trn1.2xlarge",
}


def generate_all(out: Path, tree_root: str = "/tmp/dra-harness-kind") -> list[Path]:
    """The checked-in configs of clusters/kind/: every supported version x topology set."""
    from ..spec import parse_nodes

    written = []
    for minor in SUPPORTED:
        for set_name, nodes in TOPOLOGY_SETS.items():
            spec = ClusterSpec(name=f"dra-{set_name}", nodes=parse_nodes(nodes), k8s_version=minor)
            trees = {n.name: Path(tree_root) / spec.name / n.name for n in spec.nodes}
            path = out / minor / f"{set_name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump(render(spec, trees, minor, host=False)))
            written.append(path)
    return written


if __name__ == "__main__":
    import sys

    for p in generate_all(Path(sys.argv[1] if len(sys.argv) > 1 else bins.ROOT / "clusters/kind")):
        print(p)
