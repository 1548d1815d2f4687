"""`capture --anonymise`: a bundle with its names taken out, consistently, so it can be shared and
still reproduce (KAI-Scheduler#1606 asked the same of its snapshots).

Renamed, the same way in every file: namespaces (ns-N), claims (claim-N), claim templates
(template-N), pods (pod-N), nodes (node-N, also inside slice names, pools, node selectors and the
file names of truths and topologies) and UIDs (a stable hash). Device names stay: they are the
hardware's (a PCI address, a Neuron index), which is what a reproduction needs.
Dropped, because free text may carry the old names: events, the scheduler's messages, notes,
logs, the pictures, labels and annotations of claims, templates and pods, containers' commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from .capture import typed

DROP_FILES = ("events.yaml", "scheduler.txt", "notes.txt", "errors.txt")
PREFIX = {"Namespace": "ns", "ResourceClaim": "claim", "ResourceClaimTemplate": "template", "Pod": "pod", "Node": "node"}


class Renamer:
    def __init__(self, salt: str) -> None:
        self.maps: dict[str, dict[str, str]] = {k: {} for k in PREFIX}
        self.salt = salt

    def name(self, kind: str, old: str | None) -> str | None:
        if not old:
            return old
        m = self.maps[kind]
        if old not in m:
            m[old] = f"{PREFIX[kind]}-{len(m) + 1}"
        return m[old]

    def uid(self, old: str | None) -> str | None:
        if not old:
            return old
        h = hashlib.sha256((self.salt + old).encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def in_text(self, text: str) -> str:
        """Node names inside a longer name (a slice's name holds its node's)."""
        for old, new in sorted(self.maps["Node"].items(), key=lambda kv: -len(kv[0])):
            text = text.replace(old, new)
        return text


def _meta(r: Renamer, obj: dict, kind: str) -> None:
    md = obj.get("metadata") or {}
    if kind in PREFIX:
        md["name"] = r.name(kind, md.get("name"))
    elif kind == "ResourceSlice":
        md["name"] = r.in_text(md.get("name", ""))
    if md.get("namespace"):
        md["namespace"] = r.name("Namespace", md["namespace"])
    md["uid"] = r.uid(md.get("uid"))
    for ref in md.get("ownerReferences") or []:
        ref["uid"] = r.uid(ref.get("uid"))
        ref["name"] = r.name(ref["kind"], ref.get("name")) if ref.get("kind") in PREFIX else ref.get("name")
    md.pop("generateName", None)
    md.pop("managedFields", None)
    if kind in ("ResourceClaim", "ResourceClaimTemplate", "Pod"):
        md.pop("labels", None)
        md.pop("annotations", None)


def _node_selector(r: Renamer, sel: dict | None) -> None:
    for term in (sel or {}).get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name":
                f["values"] = [r.name("Node", v) for v in f.get("values") or []]
        for e in term.get("matchExpressions") or []:
            if e.get("key") == "kubernetes.io/hostname":
                e["values"] = [r.name("Node", v) for v in e.get("values") or []]


def _claim_status(r: Renamer, st: dict) -> None:
    alloc = st.get("allocation") or {}
    for res in (alloc.get("devices") or {}).get("results") or []:
        res["pool"] = r.name("Node", res.get("pool"))
    _node_selector(r, alloc.get("nodeSelector"))
    for ref in st.get("reservedFor") or []:
        ref["name"] = r.name("Pod", ref.get("name")) if ref.get("resource") == "pods" else ref.get("name")
        ref["uid"] = r.uid(ref.get("uid"))
    for d in st.get("devices") or []:
        d["pool"] = r.name("Node", d.get("pool"))


def rewrite(r: Renamer, obj: dict) -> dict:
    kind = obj.get("kind") or ""
    _meta(r, obj, kind)
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "ResourceSlice":
        if spec.get("nodeName"):
            spec["nodeName"] = r.name("Node", spec["nodeName"])
        if spec.get("pool"):
            spec["pool"]["name"] = r.name("Node", spec["pool"]["name"])
    elif kind == "ResourceClaim":
        _claim_status(r, st)
    elif kind == "ResourceClaimTemplate":
        (spec.get("metadata") or {}).pop("labels", None)
        (spec.get("metadata") or {}).pop("annotations", None)
    elif kind == "Pod":
        if spec.get("nodeName"):
            spec["nodeName"] = r.name("Node", spec["nodeName"])
        sel = spec.get("nodeSelector") or {}
        if "kubernetes.io/hostname" in sel:
            sel["kubernetes.io/hostname"] = r.name("Node", sel["kubernetes.io/hostname"])
        for c in spec.get("containers") or []:
            c.pop("command", None)
            c.pop("args", None)
            c.pop("env", None)
        for rc in spec.get("resourceClaims") or []:
            if rc.get("resourceClaimName"):
                rc["resourceClaimName"] = r.name("ResourceClaim", rc["resourceClaimName"])
            if rc.get("resourceClaimTemplateName"):
                rc["resourceClaimTemplateName"] = r.name("ResourceClaimTemplate", rc["resourceClaimTemplateName"])
        for s in st.get("resourceClaimStatuses") or []:
            s["resourceClaimName"] = r.name("ResourceClaim", s.get("resourceClaimName"))
        ext = st.get("extendedResourceClaimStatus")
        if ext:
            ext["resourceClaimName"] = r.name("ResourceClaim", ext.get("resourceClaimName"))
        for c in st.get("conditions") or []:
            c.pop("message", None)
        st.pop("podIP", None)
        st.pop("podIPs", None)
        st.pop("hostIP", None)
        st.pop("hostIPs", None)
    return obj


def _yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if p.parent.name != "topologies")


def anonymise(root: Path) -> None:
    """Rewrite the bundle at `root` in place."""
    manifest = json.loads((root / "capture.json").read_text())
    r = Renamer(salt=hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16])
    for node in sorted(manifest["nodes"]):  # nodes first: slice names are rewritten through them
        r.name("Node", node)
    for ns in manifest["namespaces"]:
        r.name("Namespace", ns)
    for f in DROP_FILES:
        for p in root.rglob(f):
            p.write_text("")
    for p in list(root.rglob("*.svg")) + list(root.rglob("logs/*")):
        p.unlink()
    if (root / "logs").is_dir():
        (root / "logs").rmdir()
    for p in _yaml_files(root):
        docs = [typed(d, p.stem) for d in yaml.safe_load_all(p.read_text()) if d]
        p.write_text(yaml.safe_dump_all([rewrite(r, d) for d in docs], sort_keys=False) if docs else "")
    for p in sorted(root.glob("truth-*.json")):
        p.rename(root / f"truth-{r.name('Node', p.stem[len('truth-'):])}.json")
    topo = root / "topologies"
    for p in sorted(topo.glob("*")) if topo.is_dir() else []:
        node, _, rest = p.name.partition(".")
        p.rename(topo / f"{r.name('Node', node)}.{rest}")
    nodes = {}
    for old, info in manifest["nodes"].items():
        new = r.name("Node", old)
        labels = {k: (new if k == "kubernetes.io/hostname" else v) for k, v in (info.get("labels") or {}).items()}
        nodes[new] = {**info, "labels": labels, "topology": f"topologies/{new}.yaml" if info.get("topology") else None}
    manifest["nodes"] = nodes
    manifest["namespaces"] = [r.name("Namespace", ns) for ns in manifest["namespaces"]]
    manifest["order"] = [{"kind": o["kind"], "namespace": r.name("Namespace", o["namespace"]),
                          "name": r.name(o["kind"], o["name"])} for o in manifest["order"]]
    manifest["anonymised"] = True
    (root / "capture.json").write_text(json.dumps(manifest, indent=2) + "\n")
    # the namespaces' subdirectories carry the old names too
    nsdir = root / "namespaces"
    for p in sorted(nsdir.iterdir()) if nsdir.is_dir() else []:
        p.rename(nsdir / r.name("Namespace", p.name))
