"""`dra-harness capture`: a cluster's DRA state as a bundle that `repro` can replay (issue 24).

A bundle is the failure bundle of the pytest plugin (harness/judge/report.py: slices, classes,
claims, templates, pods, quotas, admission policies, events, the scheduler's verdicts, truths,
pictures, logs) plus `capture.json`:
  - the server's version and the DRA feature gates it runs with (its /metrics
    `kubernetes_feature_enabled`), and the order claims and pods were created in;
  - each node's labels and, for a fake node, its topology and mutation state (the tree's
    fakedev/topology.yaml and state.json, under topologies/), so a repro renders the same tree;
  - for a cluster dra-harness made, its driver profiles and their arguments (injected bugs too).
A real node's topology is what `fakedev record` writes, run there by an opt-in privileged pod;
the bundle then holds no topology for it and `repro` can only replay its slices.

`--anonymise` (anonymise.py) renames namespaces, objects, nodes and UIDs consistently and drops
the free text (events, logs, the scheduler's messages) that could carry the old names."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from ..backends.paths import check_name
from ..judge.report import bundle

FORMAT = 1
# the bundle's object files and what they hold (a list's items carry no apiVersion or kind)
KINDS = {"resourceclaims": ("resource.k8s.io/v1", "ResourceClaim"),
         "resourceclaimtemplates": ("resource.k8s.io/v1", "ResourceClaimTemplate"),
         "resourceslices": ("resource.k8s.io/v1", "ResourceSlice"),
         "deviceclasses": ("resource.k8s.io/v1", "DeviceClass"),
         "pods": ("v1", "Pod"), "events": ("v1", "Event"), "resourcequotas": ("v1", "ResourceQuota"),
         "priorityclasses": ("scheduling.k8s.io/v1", "PriorityClass"),
         "validatingadmissionpolicies": ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
         "validatingadmissionpolicybindings": ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding")}


def typed(obj: dict, file_stem: str) -> dict:
    """`obj` with the apiVersion and kind of the file it was read from, where it has none."""
    api, kind = KINDS.get(file_stem, (None, None))
    if kind and not obj.get("kind"):
        obj = {"apiVersion": api, "kind": kind, **obj}
    return obj


def read(root: Path, name: str) -> list[dict]:
    """The objects of one kind in a bundle (`name`: a file stem of KINDS), the cluster-wide file
    and every namespace's, typed."""
    out = []
    for path in [root / f"{name}.yaml"] + sorted((root / "namespaces").glob(f"*/{name}.yaml")):
        if path.is_file():
            out += [typed(d, name) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


DRA_GATE_PREFIXES = ("DRA", "DynamicResourceAllocation")


def _gates(kube) -> dict[str, bool]:
    """The DRA feature gates the API server runs with, from its own metrics (1.26+)."""
    try:
        body = kube.raw("/metrics").decode()
    except Exception:  # metrics not readable with these credentials: the bundle has no gates
        return {}
    out = {}
    for line in body.splitlines():
        if line.startswith("kubernetes_feature_enabled{"):
            labels, _, value = line.rpartition(" ")
            name = labels.split('name="', 1)[1].split('"', 1)[0]
            if name.startswith(DRA_GATE_PREFIXES):
                out[name] = value.strip() == "1"
    return dict(sorted(out.items()))


def _order(claims: list[dict], pods: list[dict], templates: list[dict]) -> list[dict]:
    """Templates, claims and pods by creation time: the order `repro` creates them in."""
    items = [("ResourceClaimTemplate", o) for o in templates] + [("ResourceClaim", o) for o in claims] + \
        [("Pod", o) for o in pods]
    items.sort(key=lambda ko: (ko[1]["metadata"].get("creationTimestamp") or "", ko[0] != "ResourceClaimTemplate"))
    return [{"kind": k, "namespace": o["metadata"].get("namespace"), "name": o["metadata"]["name"]} for k, o in items]


def namespaces_in_use(kube) -> list[str]:
    """Every namespace with a ResourceClaim, a claim template or a pod that asks for devices."""
    claims = json.loads(kube.res.list_resource_claim_for_all_namespaces(_preload_content=False).data)["items"]
    templates = json.loads(kube.res.list_resource_claim_template_for_all_namespaces(_preload_content=False).data)["items"]
    pods = json.loads(kube.core.list_pod_for_all_namespaces(_preload_content=False).data)["items"]
    wanted = {o["metadata"]["namespace"] for o in claims + templates}
    wanted |= {p["metadata"]["namespace"] for p in pods if p["spec"].get("resourceClaims") or
               (p.get("status") or {}).get("extendedResourceClaimStatus")}
    return sorted(wanted)


def driver_setup(cluster) -> dict:
    """The driver profiles and their current arguments of a cluster dra-harness made."""
    if cluster is None:
        return {}
    setup: dict = {"backend": cluster.backend, "drivers": list(cluster.drivers), "driver_args": {}}
    state = Path(cluster.state_dir or "/nonexistent") / "state.json"
    try:  # the local supervisor keeps the spec as it runs now (a reconfigure updates it)
        spec = json.loads(state.read_text())["spec"]
        setup["driver_args"] = spec["nodes"][0].get("driver_args") or {} if spec.get("nodes") else {}
    except (OSError, KeyError, ValueError):
        pass
    return setup


def capture(kube, out: Path, cluster=None, namespaces: list[str] | None = None, anonymise: bool = False,
            log_dir: Path | None = None, notes: str = "", ledgers: dict[str, str] | None = None) -> Path:
    """Write the bundle of `kube`'s cluster into `out` (a new directory); returns it."""
    t0 = time.monotonic()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty: a bundle goes into a new directory")
    nss = namespaces if namespaces is not None else namespaces_in_use(kube)
    for ns in nss:  # each becomes a directory of the bundle (namespaces/<ns>)
        check_name(ns, "namespace")
    truths = cluster.truths() if cluster else {}
    bundle(out, kube, truths, nss, log_dir, notes, ledgers)
    nodes = {}
    for n in kube.list("Node")[0]:
        name = n["metadata"]["name"]
        info = (cluster.nodes.get(name) if cluster else None)
        topo = None
        if info is not None and info.tree and (Path(info.tree) / "fakedev" / "topology.yaml").is_file():
            d = out / "topologies"
            d.mkdir(exist_ok=True)
            shutil.copyfile(Path(info.tree) / "fakedev" / "topology.yaml", d / f"{name}.yaml")
            if (Path(info.tree) / "fakedev" / "state.json").is_file():
                shutil.copyfile(Path(info.tree) / "fakedev" / "state.json", d / f"{name}.state.json")
            topo = f"topologies/{name}.yaml"
        nodes[name] = {"labels": n["metadata"].get("labels") or {}, "topology": topo,
                       "preset": info.topology if info is not None else None}
    # what the bundle just wrote, not a second round of lists (its claims file holds every namespace's)
    claims = [c for c in read(out, "resourceclaims") if c["metadata"].get("namespace") in nss]
    templates, pods = read(out, "resourceclaimtemplates"), read(out, "pods")
    manifest = {"format": FORMAT, "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "server": json.loads(kube.raw("/version")), "feature_gates": _gates(kube), "namespaces": nss,
                "nodes": nodes, "cluster": driver_setup(cluster), "order": _order(claims, pods, templates),
                "anonymised": False}
    (out / "capture.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if anonymise:
        from .anonymise import anonymise as anon

        anon(out)
    manifest = json.loads((out / "capture.json").read_text())
    manifest["capture_s"] = round(time.monotonic() - t0, 2)
    (out / "capture.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
