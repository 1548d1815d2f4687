"""Reports: the failure bundle (objects, events, truths, logs, pictures) and the SVG picture of a
node's topology with each claim's devices highlighted."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from fakedev import Truth, picture
from kubernetes import client

from .identity import allocations

def owners(claims: list[dict], node: str) -> dict[str, str]:
    """truth id -> claim (namespace/name) for the devices allocated on `node`."""
    return {tid: name for name, _, r, tid in allocations(claims) if r["pool"] == node and tid}


def svg(node: str, truth: Truth, claims: list[dict], tainted: set[str] = frozenset()) -> str:
    """The node's topology picture (fakedev/picture.py: NUMA -> root complex -> switch ->
    device, laid out by Graphviz) with each claim's devices coloured and named in a legend."""
    return picture.svg(truth, f"{node} - {truth.instance_type}", owners(claims, node), tainted)


def bundle(out: Path, kube, truths: dict[str, Truth], namespaces: list[str] | str | None, log_dir: Path | None,
           notes: str = "", ledgers: dict[str, str] | None = None) -> Path:
    """Everything needed to understand a failure, in one directory: the objects of every
    namespace the test used (pods, claims, templates, events, quotas), the cluster-scoped
    objects claims depend on (DeviceClasses, admission policies and bindings, PriorityClasses),
    the scheduler's verdict per pod, the truths with pictures, the logs' tails and any platform
    ledger (name -> JSON). Each part is collected on its own: one that fails is named in
    `errors.txt`, and the rest is still written."""
    out.mkdir(parents=True, exist_ok=True)
    nss = [namespaces] if isinstance(namespaces, str) else list(dict.fromkeys(namespaces or []))
    errors: list[str] = []

    def part(what: str, fn) -> None:
        try:
            fn()
        except Exception as e:  # one missing part must not cost the others
            errors.append(f"{what}: {type(e).__name__}: {str(e)[:300]}")

    claims: list[dict] = []

    def all_claims() -> None:
        claims.extend(json.loads(kube.res.list_resource_claim_for_all_namespaces(_preload_content=False).data)["items"])
        _dump(out / "resourceclaims.yaml", claims)

    part("resourceclaims", all_claims)
    part("resourceslices", lambda: _dump(out / "resourceslices.yaml", kube.list("ResourceSlice")[0]))
    for name, fn in CLUSTER_SCOPED.items():
        part(name, lambda name=name, fn=fn: _dump(out / f"{name}.yaml", fn(kube)))
    pods_all: list[dict] = []
    events_all: list[dict] = []
    for ns in nss:
        sub = out if ns == nss[0] else out / "namespaces" / ns
        sub.mkdir(parents=True, exist_ok=True)

        def pods(ns=ns, sub=sub) -> None:
            items = kube.list("Pod", namespace=ns)[0]
            pods_all.extend(items)
            _dump(sub / "pods.yaml", items)

        def events(ns=ns, sub=sub) -> None:
            items = kube.list("Event", namespace=ns)[0]
            events_all.extend(items)
            _dump(sub / "events.yaml", items)

        part(f"pods of {ns}", pods)
        part(f"events of {ns}", events)
        for name, fn in NAMESPACED.items():
            part(f"{name} of {ns}", lambda fn=fn, ns=ns, sub=sub, name=name: _dump(sub / f"{name}.yaml", fn(kube, ns)))
    (out / "scheduler.txt").write_text(scheduler_verdicts(pods_all, events_all))
    for node, truth in truths.items():
        (out / f"truth-{node}.json").write_text(json.dumps(truth.to_dict(), indent=2))
        (out / f"topology-{node}.svg").write_text(svg(node, truth, claims))
    for name, text in (ledgers or {}).items():
        (out / f"ledger-{name}.json").write_text(text)
    if log_dir and log_dir.is_dir():
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for f in log_dir.glob("*.log"):
            data = f.read_bytes()[-2_000_000:]  # the tail: enough to read the failure, bounded in size
            (logs / f.name).write_bytes(data)
    if notes:
        (out / "notes.txt").write_text(notes)
    if errors:
        (out / "errors.txt").write_text("\n".join(errors) + "\n")
    return out


def _raw(fn, *args) -> list[dict]:
    return json.loads(fn(*args, _preload_content=False).data)["items"]


CLUSTER_SCOPED = {
    "deviceclasses": lambda k: k.list("DeviceClass")[0],
    "validatingadmissionpolicies": lambda k: _raw(client.AdmissionregistrationV1Api(k.api).list_validating_admission_policy),
    "validatingadmissionpolicybindings":
        lambda k: _raw(client.AdmissionregistrationV1Api(k.api).list_validating_admission_policy_binding),
    "priorityclasses": lambda k: _raw(client.SchedulingV1Api(k.api).list_priority_class),
}
NAMESPACED = {
    "resourcequotas": lambda k, ns: _raw(k.core.list_namespaced_resource_quota, ns),
    "resourceclaimtemplates": lambda k, ns: _raw(k.res.list_namespaced_resource_claim_template, ns),
}


def scheduler_verdicts(pods: list[dict], events: list[dict]) -> str:
    """Per pod: where it was bound, or the scheduler's last word on why not (its PodScheduled
    condition and FailedScheduling events), so a pending pod's reason is one file away."""
    lines = []
    for p in pods:
        md, st = p["metadata"], p.get("status") or {}
        key = f"{md['namespace']}/{md['name']}"
        cond = next((c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        node = (p.get("spec") or {}).get("nodeName")
        lines.append(f"{key}: " + (f"bound to {node}" if node else
                                   f"not scheduled: {cond.get('reason', 'no PodScheduled condition')} {cond.get('message', '')}".rstrip()))
        for ev in events:
            io = ev.get("involvedObject") or {}
            if io.get("kind") == "Pod" and io.get("name") == md["name"] and io.get("namespace") == md["namespace"] \
                    and ev.get("reason") in ("FailedScheduling", "Scheduled"):
                lines.append(f"    {ev.get('reason')} (x{ev.get('count') or 1}): {(ev.get('message') or '')[:400]}")
    return "\n".join(lines) + ("\n" if lines else "")


def _dump(path: Path, items: list[dict]) -> None:
    for i in items:
        (i.get("metadata") or {}).pop("managedFields", None)
    path.write_text(yaml.safe_dump_all(items, sort_keys=False) if items else "")
