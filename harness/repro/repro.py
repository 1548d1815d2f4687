"""`dra-harness repro BUNDLE`: a captured bundle (capture.py) replayed on a local cluster of the
bundle's Kubernetes version, ending in one line: reproduced, or not and how it differs.

  hardware  each node's tree rendered from its captured topology (hot-removed, unbound and
            NUMA-less devices replayed), the same driver profiles and arguments (injected bugs
            too): the drivers publish, the scheduler allocates, the oracle judges;
  slices    the captured ResourceSlices published verbatim by this slice-replay publisher and
            no driver at all, so the scheduler's decision reproduces for a scheduler or a
            slice-content bug (pods are allocated and bound; none starts). The trees are
            rendered and mutated as in `hardware`: no driver reads them, the oracle does.

Then the DeviceClasses, the namespaces, and in the captured order the claim templates, the
claims made by hand and the pods (claims a template or an extended resource made are the
scheduler's to make again). Each claim is compared with its captured self: allocated or not, the
same devices, the same verdict of the oracle (then: against the truth the bundle recorded; now:
against the replayed hardware's)."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fakedev import Truth

from ..backends import bins
from ..backends.paths import check_name
from ..backends.local.backend import LocalBackend
from ..backends.spec import ClusterSpec, NodeSpec
from ..judge.oracle import judge
from ..kube import Kube
from .capture import read

MODES = ("hardware", "slices")
ORDER_KINDS = ("ResourceClaimTemplate", "ResourceClaim", "Pod")
SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
EXTENDED = "resource.kubernetes.io/extended-resource-claim"


class ReproError(ValueError):
    """A bundle that cannot be replayed (one line)."""


@dataclass
class Outcome:
    reproduced: bool
    claims: int
    differences: list[str] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)  # claim key -> ALIGNED | WRONG | pending
    seconds: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        counts = {v: list(self.verdicts.values()).count(v) for v in sorted(set(self.verdicts.values()))}
        what = ", ".join(f"{n} {v}" for v, n in counts.items()) or "no claims"
        if self.reproduced:
            return f"reproduced: {self.claims} claim(s), the same allocations and verdicts ({what})"
        return f"not reproduced: {len(self.differences)} difference(s): " + "; ".join(self.differences)


def _fresh(obj: dict, keep_spec: bool = True) -> dict:
    md = obj["metadata"]
    meta = {k: md[k] for k in ("name", "namespace", "labels", "annotations") if md.get(k)}
    out = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta}
    if keep_spec and "spec" in obj:
        out["spec"] = obj["spec"]
    return out


def _pod(p: dict) -> dict:
    """What the user asked for: the containers' images and resources, the claims, where."""
    spec = p["spec"]
    keep = {"resourceClaims", "nodeSelector", "tolerations", "affinity"}
    out = {k: spec[k] for k in keep if spec.get(k)}
    out["containers"] = [{"name": c["name"], "image": c.get("image", "x"), **({"resources": c["resources"]}
                                                                             if c.get("resources") else {})}
                         for c in spec["containers"]]
    out["terminationGracePeriodSeconds"] = 0
    return {**_fresh(p, keep_spec=False), "spec": out}


def _owned(claim: dict) -> bool:
    """Made by the scheduler or a controller for a pod (from a template, for extended resources)."""
    md = claim["metadata"]
    return bool(md.get("ownerReferences")) or EXTENDED in (md.get("annotations") or {})


def _key(claim: dict, pods: list[dict]) -> str:
    """A claim's name across two runs: its own for a claim made by hand, else pod/claim entry."""
    ns, name = claim["metadata"].get("namespace"), claim["metadata"]["name"]
    for p in pods:
        if p["metadata"].get("namespace") != ns:
            continue
        st = p.get("status") or {}
        for s in st.get("resourceClaimStatuses") or []:
            if s.get("resourceClaimName") == name:
                return f"{ns}/{p['metadata']['name']}:{s['name']}"
        if (st.get("extendedResourceClaimStatus") or {}).get("resourceClaimName") == name:
            return f"{ns}/{p['metadata']['name']}:extended-resources"
    return f"{ns}/{name}"


def _devices(claim: dict) -> list[tuple[str, str, str]]:
    res = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []
    return sorted((r["driver"], r["pool"], r["device"]) for r in res)


def _verdict(claim: dict, truths, claims: list[dict]) -> str:
    if not _devices(claim):
        return "pending"
    return "ALIGNED" if judge(claim, truths, claims).ok else "WRONG"


def _captured_truths(root: Path, fallback: dict) -> dict:
    """Each node's truth as the bundle recorded it (truth-NODE.json), where it did."""
    out = dict(fallback)
    for name in fallback:
        f = root / f"truth-{name}.json"
        if f.is_file():
            try:
                out[name] = Truth.from_dict(json.loads(f.read_text()))
            except (ValueError, KeyError, TypeError) as e:
                raise ReproError(f"{f}: not a truth capture wrote ({str(e)[:200]})") from None
    return out


def check(manifest: dict, root: Path) -> None:
    """What repro takes from capture.json, held to what capture writes (one line per problem):
    namespaces and node names are names, topologies lie inside the bundle, order names kinds."""
    where = f"{root}/capture.json"
    try:
        for ns in manifest["namespaces"]:
            check_name(ns, "namespace")
        for name, info in manifest["nodes"].items():
            if not isinstance(name, str) or len(name) > 253 or not SUBDOMAIN_RE.match(name):
                raise ValueError(f"node name {str(name)[:80]!r} is not a DNS-1123 subdomain")
            topo = info.get("topology")
            if topo is not None and (not isinstance(topo, str) or not (root / topo).resolve().is_relative_to(root.resolve())
                                     or not (root / topo).is_file()):
                raise ValueError(f"node {name}: topology {str(topo)[:80]!r} is not a file inside the bundle")
        for item in manifest["order"]:
            if item.get("kind") not in ORDER_KINDS:
                raise ValueError(f"order: kind {str(item.get('kind'))[:40]!r} is not one of {', '.join(ORDER_KINDS)}")
    except (KeyError, TypeError, AttributeError) as e:
        raise ReproError(f"{where}: not a bundle's manifest ({type(e).__name__}: {str(e)[:80]})") from None
    except ValueError as e:
        raise ReproError(f"{where}: {e}") from None


def nodes_of(manifest: dict, root: Path, mode: str) -> list[NodeSpec]:
    setup = manifest.get("cluster") or {}
    out = []
    for name, info in sorted(manifest["nodes"].items()):
        if not info.get("topology"):
            continue  # a node with no fake hardware: nothing of it can be replayed (its slices stay out)
        drivers = [] if mode == "slices" else list(setup.get("drivers") or [])
        labels = {k: v for k, v in (info.get("labels") or {}).items() if k.startswith("node.kubernetes.io/instance-type")}
        ns = NodeSpec(name=name, topology=str(root / info["topology"]), labels=labels,
                      driver_args={k: list(v) for k, v in (setup.get("driver_args") or {}).items()})
        if drivers or mode == "slices":
            ns.drivers = drivers
        out.append(ns)
    if not out:
        raise ReproError(f"{root}: no node of the bundle has a captured topology (a fake node's, or `fakedev record` "
                         "of a real one): there is no hardware to replay on")
    return out


def _replay_mutations(cluster, root: Path, manifest: dict) -> list[str]:
    """Hot-removed, unbound and NUMA-less devices as captured; what cannot be replayed, named."""
    notes = []
    for name, info in manifest["nodes"].items():
        st = root / "topologies" / f"{name}.state.json"
        if not info.get("topology") or not st.is_file():
            continue
        state = json.loads(st.read_text())
        for dev in state.get("removed") or []:
            cluster.mutate(name, "remove", dev)
        for dev in state.get("unbound") or []:
            cluster.mutate(name, "unbind", dev)
        for dev in state.get("numa_none") or []:
            cluster.mutate(name, "set_numa_none", dev)
        if state.get("counters") or state.get("attrs"):
            notes.append(f"{name}: error counters and attribute edits are not replayed")
    return notes


def repro(root: Path, mode: str, artifacts: Path, keep: bool = False, say=print, timeout: float = 30) -> Outcome:
    root = Path(root)
    if mode not in MODES:
        raise ReproError(f"mode {mode!r}: one of {', '.join(MODES)}")
    try:
        manifest = json.loads((root / "capture.json").read_text())
    except (OSError, ValueError) as e:
        raise ReproError(f"{root}: not a bundle `dra-harness capture` wrote (capture.json: {e})") from None
    check(manifest, root)
    version = (manifest.get("server") or {}).get("gitVersion", "")
    version = bins.resolve(version.split("+")[0].split("-")[0] or None)  # the bundle's own release
    t0 = time.monotonic()
    spec = ClusterSpec(name=f"repro-{uuid.uuid4().hex[:6]}", nodes=nodes_of(manifest, root, mode), k8s_version=version)
    say(f"repro: {mode} mode, Kubernetes {version}, nodes {', '.join(n.name for n in spec.nodes)}")
    cluster = LocalBackend().up(spec, artifacts / spec.name, attached=True, timeout=300)
    out = Outcome(False, 0)
    try:
        out.seconds["up"] = round(time.monotonic() - t0, 1)
        # in both modes: with no driver reading it, the replayed tree is still the truth judged against
        out.differences += _replay_mutations(cluster, root, manifest)
        kube = Kube(str(cluster.kubeconfig))
        for dc in read(root, "deviceclasses"):
            kube.apply(_fresh(dc))
        if mode == "slices":
            wanted = {n.name for n in spec.nodes}
            for s in read(root, "resourceslices"):
                if s["spec"].get("nodeName") in wanted or (s["spec"].get("pool") or {}).get("name") in wanted:
                    kube.apply(_fresh(s))
        for ns in manifest["namespaces"]:
            kube.create_namespace(ns)
        captured_claims = read(root, "resourceclaims")
        captured_pods = read(root, "pods")
        by_kind = {"ResourceClaimTemplate": {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                                             for o in read(root, "resourceclaimtemplates")},
                   "ResourceClaim": {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in captured_claims},
                   "Pod": {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in captured_pods}}
        for item in manifest["order"]:
            obj = by_kind[item["kind"]].get((item["namespace"], item["name"]))
            if obj is None or (item["kind"] == "ResourceClaim" and _owned(obj)):
                continue
            kube.apply(_pod(obj) if item["kind"] == "Pod" else _fresh(obj))
        t1 = time.monotonic()
        want = {_key(c, captured_pods): c for c in captured_claims if c["metadata"].get("namespace") in manifest["namespaces"]}
        got = _settle(kube, manifest["namespaces"], want, timeout)
        out.seconds["settle"] = round(time.monotonic() - t1, 1)
        truths = cluster.truths()
        then = _captured_truths(root, truths)  # the captured verdict is the captured hardware's
        new_claims = list(got.values())
        out.claims = len(want)
        for key, old in sorted(want.items()):
            new = got.get(key)
            before = _verdict(old, then, captured_claims)
            after = _verdict(new, truths, new_claims) if new else "missing"
            out.verdicts[key] = after
            if after != before:
                out.differences.append(f"{key}: {before} when captured, {after} now")
            elif _devices(old) != (_devices(new) if new else []):
                out.differences.append(f"{key}: devices {[d[2] for d in _devices(old)]} when captured, "
                                       f"{[d[2] for d in _devices(new)] if new else []} now")
        out.reproduced = not out.differences
    finally:
        if not keep:
            LocalBackend().down(spec.name)
    out.seconds["total"] = round(time.monotonic() - t0, 1)
    return out


def _settle(kube, namespaces: list[str], want: dict[str, dict], timeout: float) -> dict[str, dict]:
    """The new claims, keyed as the captured ones, once every claim that was allocated is again
    (or `timeout` passed) and those that were pending have had a chance to be allocated."""
    allocated = {k for k, c in want.items() if _devices(c)}
    deadline = time.monotonic() + timeout
    while True:
        claims = [c for ns in namespaces for c in kube.list("ResourceClaim", namespace=ns)[0]]
        pods = [p for ns in namespaces for p in kube.list("Pod", namespace=ns)[0]]
        got = {_key(c, pods): c for c in claims}
        if all(k in got and _devices(got[k]) for k in allocated) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if len(allocated) < len(want):  # pending ones: give the scheduler a few seconds to prove them wrong
        time.sleep(3)
        claims = [c for ns in namespaces for c in kube.list("ResourceClaim", namespace=ns)[0]]
        pods = [p for ns in namespaces for p in kube.list("Pod", namespace=ns)[0]]
        got = {_key(c, pods): c for c in claims}
    return got

