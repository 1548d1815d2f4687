"""Why is a claim pending? A search over the ground truth of each node answers two questions:
would the claim fit this node's topology if the node were empty, and does it fit now? No node
fits even empty: "cannot be satisfied with this topology" (and which request or constraint is
the blocker). Some node fits empty but none now: "cluster full", with the claims holding the
devices. Device classes are mapped to hardware kinds through their `device.driver == ...`
selectors; other CEL conditions are not evaluated, and the explanation says so.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

from fakedev import Truth, TruthDevice

from .identity import INTENT, KIND_OF_DRIVER, WHAT, holders as held_by

DRIVER_RE = re.compile(r"""device\.driver\s*==\s*["']([^"']+)["']""")


@dataclass
class Req:
    name: str
    kind: str | None
    count: int | None  # None: allocationMode All
    cel_ignored: bool = False


@dataclass
class Fit:
    ok: bool
    detail: str
    sub: str | None = None  # the firstAvailable subrequest that fits


@dataclass
class Explanation:
    claim: str
    allocated: bool
    verdict: str  # "allocated" | "cannot be satisfied with this topology" | "cluster full" | "fits now"
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"claim {self.claim}: {self.verdict}", *("  " + line for line in self.lines)])


def class_kinds(classes: list[dict]) -> dict[str, tuple[str | None, bool]]:
    """DeviceClass name -> (hardware kind, whether other CEL conditions were ignored)."""
    out = {}
    for c in classes:
        kind, ignored = None, False
        for s in c["spec"].get("selectors") or []:
            expr = (s.get("cel") or {}).get("expression", "")
            m = DRIVER_RE.search(expr)
            if m:
                kind = KIND_OF_DRIVER.get(m[1], m[1])
            rest = DRIVER_RE.sub("", expr).strip(" &()")
            ignored |= bool(rest)
        out[c["metadata"]["name"]] = (kind, ignored)
    return out


def requests_of(spec: dict, kinds: dict[str, tuple[str | None, bool]]) -> list[list[Req]]:
    """Each request as its alternatives (one for `exactly`, several for firstAvailable)."""
    out = []
    for r in spec.get("requests") or []:
        alts = [r["exactly"]] if "exactly" in r else r.get("firstAvailable") or []
        reqs = []
        for a in alts:
            kind, ignored = kinds.get(a["deviceClassName"], (None, False))
            count = None if a.get("allocationMode") == "All" else a.get("count", 1)
            name = r["name"] if "exactly" in r else f"{r['name']}/{a['name']}"
            reqs.append(Req(name, kind, count, ignored or bool(a.get("selectors"))))
        out.append(reqs)
    return out


def fits(spec: dict, truth: Truth, busy: set[str], kinds: dict) -> Fit:
    """Can the claim be allocated on this node with the devices not in `busy`?"""
    free = [d for d in truth.devices if d.usable and d.id not in busy]
    constraints = [(set(c.get("requests") or []), INTENT.get(c["matchAttribute"]), c["matchAttribute"])
                   for c in spec.get("constraints") or [] if c.get("matchAttribute")]
    best_detail = ""
    for choice in itertools.product(*requests_of(spec, kinds)):
        fit = _fits_choice(list(choice), constraints, free)
        if fit.ok:
            return Fit(True, fit.detail, ",".join(r.name for r in choice if "/" in r.name) or None)
        best_detail = best_detail or fit.detail
    return Fit(False, best_detail)


def _fits_choice(reqs: list[Req], constraints: list, free: list[TruthDevice]) -> Fit:
    def covered(req: Req, names: set[str]) -> bool:
        return not names or req.name in names or req.name.split("/", 1)[0] in names

    keys = [(names, key, attr) for names, key, attr in constraints if key]
    candidates = []
    for names, key, _ in keys:
        vals = sorted({g for d in free for g in d.align.of(key)})
        candidates.append(vals or [None])
    worst = ""
    for values in itertools.product(*candidates) if keys else [()]:
        need: dict[tuple, int] = {}
        ok = True
        for req in reqs:
            pool = [d for d in free if req.kind is None or d.kind == req.kind]
            for (names, key, attr), val in zip(keys, values):
                if covered(req, names):
                    pool = [d for d in pool if val is not None and val in d.align.of(key)]
            want = len([d for d in free if req.kind is None or d.kind == req.kind]) if req.count is None else req.count
            ids = tuple(sorted(d.id for d in pool))
            need[ids] = need.get(ids, 0) + want
            if req.count is None and not pool:
                ok = False
            if len(pool) < need[ids]:
                ok = False
                if keys:
                    grp = ", ".join(f"{key} {val}" for (_, key, _), val in zip(keys, values))
                    msg = f"request {req.name} needs {need[ids]} x {req.kind}; {grp} has {len(pool)}"
                else:
                    msg = f"request {req.name} needs {need[ids]} x {req.kind}; {len(pool)} free"
                worst = worst if worst and _count(worst) >= len(pool) else msg
        if ok:
            return Fit(True, "")
    return Fit(False, _blocker(reqs, keys, free) or worst)


def _count(msg: str) -> int:
    m = re.search(r"has (\d+)|(\d+) free", msg)
    return int(m[1] or m[2]) if m else -1


def _blocker(reqs: list[Req], keys: list, free: list[TruthDevice]) -> str:
    """The first constraint without which the requests would fit, with the best group's size."""
    for req in reqs:
        n = len([d for d in free if req.kind is None or d.kind == req.kind])
        if req.count is not None and n < req.count:
            return f"request {req.name} needs {req.count} x {req.kind}; only {n} usable"
    for names, key, attr in keys:
        for req in reqs:
            if names and req.name not in names and req.name.split("/", 1)[0] not in names:
                continue
            groups: dict[str, int] = {}
            for d in free:
                if req.kind is None or d.kind == req.kind:
                    for g in d.align.of(key):
                        groups[g] = groups.get(g, 0) + 1
            best = max(groups.values(), default=0)
            if req.count is not None and best < req.count:
                return (f"constraint {attr}: request {req.name} needs {req.count} x {req.kind} in {WHAT[key]}, "
                        f"the largest has {best}")
    return ""


def explain(claim: dict, truths: dict[str, Truth], claims: list[dict], classes: list[dict],
            events: list[str] = ()) -> Explanation:
    meta = claim["metadata"]
    name = f"{meta['namespace']}/{meta['name']}"
    if (claim.get("status") or {}).get("allocation"):
        node = claim["status"]["allocation"]["devices"]["results"][0]["pool"] if claim["status"]["allocation"]["devices"].get("results") else "?"
        return Explanation(name, True, "allocated", [f"allocated on {node}"])
    kinds = class_kinds(classes)
    spec = claim["spec"]["devices"]
    lines = []
    for alts in requests_of(spec, kinds):
        for r in alts:
            lines.append(f"request {r.name}: {'all' if r.count is None else r.count} x {r.kind or '?'}"
                         + (" (CEL conditions beyond the driver not evaluated)" if r.cel_ignored else ""))
    for c in spec.get("constraints") or []:
        if c.get("matchAttribute"):
            key = INTENT.get(c["matchAttribute"])
            lines.append(f"constraint matchAttribute {c['matchAttribute']} over {c.get('requests') or 'all requests'}"
                         f" = {WHAT.get(key, 'unknown intent')}")
    holders = held_by(claims)  # node -> truth id -> claim
    any_empty, any_now = False, False
    for node, truth in sorted(truths.items()):
        empty = fits(spec, truth, set(), kinds)
        busy = holders.get(node, {})
        now = fits(spec, truth, set(busy), kinds)
        any_empty |= empty.ok
        any_now |= now.ok
        topo = truth.instance_type
        if not empty.ok:
            lines.append(f"node {node} ({topo}): cannot fit even when empty: {empty.detail}")
        elif now.ok:
            lines.append(f"node {node} ({topo}): fits now" + (f" (as {now.sub})" if now.sub else ""))
        else:
            held = sorted(set(busy.values()))
            lines.append(f"node {node} ({topo}): fits when empty" + (f" (as {empty.sub})" if empty.sub else "")
                         + f"; now: {now.detail}; devices held by {', '.join(held) or 'nobody'}")
    verdict = ("fits now" if any_now else "cluster full" if any_empty else "cannot be satisfied with this topology")
    lines += [f"scheduler: {e}" for e in events[-3:]]
    return Explanation(name, False, verdict, lines)


def explain_claim(kubeconfig: str, namespace: str, name: str, truths: dict[str, Truth] | None) -> Explanation:
    from ..kube import Kube

    kube = Kube(kubeconfig)
    claim = kube.get("ResourceClaim", name, namespace)
    if claim is None:
        raise ValueError(f"claim {namespace}/{name} not found")
    if truths is None:
        raise ValueError("no ground truth: explain needs a dra-harness cluster of fake nodes")
    claims = json.loads(kube.res.list_resource_claim_for_all_namespaces(_preload_content=False).data)["items"]
    classes, _ = kube.list("DeviceClass")
    events = scheduler_events(kube, namespace, name)
    return explain(claim, truths, claims, classes, events)


def scheduler_events(kube, namespace: str, claim: str) -> list[str]:
    """FailedScheduling messages of the pods that use the claim."""
    pods, _ = kube.list("Pod", namespace=namespace)
    users = {p["metadata"]["name"] for p in pods
             for rc in p["spec"].get("resourceClaims") or []
             if rc.get("resourceClaimName") == claim
             or any(s.get("resourceClaimName") == claim for s in (p.get("status") or {}).get("resourceClaimStatuses") or [])}
    events, _ = kube.list("Event", namespace=namespace)
    return [e.get("message", "") for e in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
            if e["involvedObject"].get("name") in users and e.get("reason") == "FailedScheduling"]
