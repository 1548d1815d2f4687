"""Why is a claim pending? A search over each node's devices answers two questions: would the
claim fit this node if it were empty, and does it fit now? No node fits even empty: "cannot be
satisfied with this topology" (and which request or constraint is the blocker). Some node fits
empty but none now: "cluster full", with the claims holding the devices.

The devices are every driver's published devices (or, without slices, those the truth says the
reference drivers publish). DeviceClass and request selectors are evaluated with a real CEL
implementation (the `common-expression-language` package) on each device's driver and
attributes, as the scheduler does. A `matchAttribute` whose intent the oracle knows groups
devices by their true topology; any other attribute groups them by its published value.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

import cel
from fakedev import Truth, TruthDevice

from . import sharing
from .identity import INTENT, WHAT, Identity, efa_device_name, holders as held_by, published, slice_value, truth_id
from .taints import Key, untolerated


@dataclass(frozen=True)
class Candidate:
    """A device a request could get: what the scheduler sees, joined with the hardware it is."""

    driver: str
    pool: str
    name: str
    attributes: dict  # CEL shape: {domain: {name: value}}
    truth: TruthDevice | None  # None: not mapped to the hardware (another driver's device)
    taints: tuple[dict, ...] = ()  # its slice's and its DeviceTaintRules' (taints.device_taints)
    bandwidth: dict | None = None  # a shared device's published bandwidth capacity (sharing.py)

    @property
    def id(self) -> str:
        """As identity.holders keys devices: the truth id, else driver/pool/device."""
        return self.truth.id if self.truth else f"{self.driver}/{self.pool}/{self.name}"

    def groups(self, attr: str) -> frozenset[str]:
        key = INTENT.get(attr)
        if key and self.truth is not None:
            return self.truth.align.of(key)
        domain, _, name = attr.rpartition("/")
        v = (self.attributes.get(domain) or {}).get(name)
        return frozenset() if v is None else frozenset([json.dumps(v)])


def _cel_attributes(raw: dict, driver: str) -> dict:
    """Slice attributes ({"dra.net/rdma": {"bool": true}} or {"deviceId": {"int": 5}}) in the shape
    CEL sees them: device.attributes["domain"].name; unqualified names belong to the driver."""
    out: dict[str, dict] = {}
    for k, v in raw.items():
        domain, _, name = k.rpartition("/")
        out.setdefault(domain or driver, {})[name] = slice_value(v)
    return out


def candidates(node: str, truth: Truth | None, slices: list[dict] | None,
               identities: dict[str, Identity] | None = None,
               taints: dict[Key, list[dict]] | None = None) -> list[Candidate]:
    """The node's devices as published; without slices, what the reference drivers publish for
    the truth's usable devices (offline explanations, `kit check`)."""
    if slices is not None:
        by_id = {d.id: d for d in truth.devices} if truth else {}
        out = []
        for s in slices:
            if s["spec"].get("nodeName") != node:
                continue
            for d in s["spec"].get("devices") or []:
                raw = d.get("attributes") or {}
                tid = truth_id(s["spec"]["driver"], d["name"], raw, identities)
                shared = (d.get("capacity") or {}).get(sharing.BANDWIDTH) if d.get("allowMultipleAllocations") else None
                out.append(Candidate(s["spec"]["driver"], node, d["name"], _cel_attributes(raw, s["spec"]["driver"]),
                                     by_id.get(tid) if tid else None,
                                     tuple((taints or {}).get((s["spec"]["driver"], node, d["name"]), ())), shared))
        return out
    out = []
    for d in truth.devices if truth else ():
        if not d.usable:
            continue
        if d.kind == "neuron":
            out.append(Candidate("neuron.aws.com", node, f"neuron-device-{d.index}",
                                 {"neuron.aws.com": {"deviceId": d.index, "resourceType": "neuron_device"}}, d))
        elif d.kind == "efa":  # as a sharing driver (refdriver --share-efa) publishes it: whole NIC by default
            bandwidth = {"value": f"{d.rate_gbps}G", "requestPolicy": {"default": f"{d.rate_gbps}G"}} if d.rate_gbps else None
            out.append(Candidate("dra.net", node, efa_device_name(d.bdf),
                                 {"dra.net": {"pciAddress": d.bdf, "rdma": True, "pciDevice": "Elastic Fabric Adapter (EFA)"}},
                                 d, bandwidth=bandwidth))
    return out


class Selector:
    """CEL selectors, compiled once; a runtime error (a missing attribute) means no match."""

    def __init__(self, expressions: list[str]) -> None:
        self.expressions = expressions
        self.programs = []
        self.errors: list[str] = []
        for e in expressions:
            try:
                self.programs.append(cel.compile(e))
            except Exception as ex:  # an expression this CEL cannot compile: reported, never ignored
                self.errors.append(f"{e[:80]!r}: {str(ex)[:120]}")

    def matches(self, c: Candidate) -> bool:
        if self.errors:
            return False
        ctx = {"device": {"driver": c.driver, "attributes": c.attributes, "capacity": {},
                          "allowMultipleAllocations": c.bandwidth is not None}}
        for p in self.programs:
            try:
                if p.execute(ctx) is not True:
                    return False
            except Exception:
                return False
        return True


@dataclass
class Req:
    name: str
    cls: str
    count: int | None  # None: allocationMode All
    selector: Selector
    tolerations: list[dict] = field(default_factory=list)
    capacity: dict[str, str] = field(default_factory=dict)  # capacity.requests

    def takes(self, c: Candidate, honour_taints: bool = True, room: dict[str, float] | None = None) -> bool:
        """The device matches, (honouring taints) none of its taints keeps it from this request,
        and a shared device has the bandwidth left (`room`: Gbit/s left per shared device id)."""
        if c.bandwidth is not None and room is not None and self.needs(c) > room.get(c.id, float("inf")) + 1e-9:
            return False
        return self.selector.matches(c) and not (honour_taints and untolerated(list(c.taints), self.tolerations))

    def needs(self, c: Candidate) -> float:
        """Gbit/s of the shared device `c` this request would consume."""
        return sharing.need_gbps(self.capacity.get(sharing.BANDWIDTH), c.bandwidth) if c.bandwidth else 0.0


@dataclass
class Fit:
    ok: bool
    detail: str
    sub: str | None = None  # the firstAvailable subrequest that fits


@dataclass
class Explanation:
    claim: str
    allocated: bool
    # "allocated" | "cannot be satisfied with this topology" | "cluster full" | "fits now" |
    # "pending: every fitting device is tainted (key K)"
    verdict: str
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"claim {self.claim}: {self.verdict}", *("  " + line for line in self.lines)])


def class_selectors(classes: list[dict]) -> dict[str, list[str]]:
    """DeviceClass name -> its CEL selector expressions."""
    return {c["metadata"]["name"]: [(s.get("cel") or {}).get("expression", "") for s in c["spec"].get("selectors") or []]
            for c in classes}


def requests_of(spec: dict, classes: dict[str, list[str]]) -> list[list[Req]]:
    """Each request as its alternatives (one for `exactly`, several for firstAvailable)."""
    out = []
    for r in spec.get("requests") or []:
        alts = [r["exactly"]] if "exactly" in r else r.get("firstAvailable") or []
        reqs = []
        for a in alts:
            exprs = classes.get(a["deviceClassName"], ["false"]) + [(s.get("cel") or {}).get("expression", "")
                                                                  for s in a.get("selectors") or []]
            count = None if a.get("allocationMode") == "All" else a.get("count", 1)
            name = r["name"] if "exactly" in r else f"{r['name']}/{a['name']}"
            reqs.append(Req(name, a["deviceClassName"], count, Selector(exprs), a.get("tolerations") or [],
                            dict((a.get("capacity") or {}).get("requests") or {})))
        out.append(reqs)
    return out


def fits(spec: dict, cands: list[Candidate], busy: set[str], classes: dict[str, list[str]],
         honour_taints: bool = True, room: dict[str, float] | None = None) -> Fit:
    """Can the claim be allocated among `cands` without the devices in `busy` (and, honouring
    taints, without devices whose taints the requests do not tolerate; with `room`, only where a
    shared device has the bandwidth left)?"""
    free = [c for c in cands if c.id not in busy]
    constraints = [(set(c.get("requests") or []), c["matchAttribute"])
                   for c in spec.get("constraints") or [] if c.get("matchAttribute")]
    best_detail = ""
    for choice in itertools.product(*requests_of(spec, classes)):
        fit = _fits_choice(list(choice), constraints, free, cands, honour_taints, room)
        if fit.ok:
            return Fit(True, fit.detail, ",".join(r.name for r in choice if "/" in r.name) or None)
        best_detail = best_detail or fit.detail
    return Fit(False, best_detail)


def allocate(spec: dict, cands: list[Candidate], busy: set[str], classes: dict[str, list[str]]) \
        -> list[tuple[str, Candidate]] | None:
    """One allocation the claim could get among `cands`: (request name, device) pairs, or None.
    A constructive twin of `fits`, for judging a class offline (`kit check`)."""
    free = [c for c in cands if c.id not in busy]
    constraints = [(set(c.get("requests") or []), c["matchAttribute"])
                   for c in spec.get("constraints") or [] if c.get("matchAttribute")]
    for choice in itertools.product(*requests_of(spec, classes)):
        pools = {r.name: [c for c in free if r.takes(c)] for r in choice}
        wants_all = {r.name: sum(1 for c in cands if r.selector.matches(c)) for r in choice if r.count is None}
        per = [sorted({g for r in choice if _covered(r, names) for c in pools[r.name] for g in c.groups(attr)}) or [None]
               for names, attr in constraints]
        for values in itertools.product(*per) if constraints else [()]:
            taken: set[str] = set()
            got: list[tuple[str, Candidate]] = []
            for req in choice:
                pool = [c for c in pools[req.name] if c.id not in taken]
                for (names, attr), val in zip(constraints, values):
                    if _covered(req, names):
                        pool = [c for c in pool if val is not None and val in c.groups(attr)]
                want = wants_all[req.name] if req.count is None else req.count
                if not pool or len(pool) < want:
                    break
                got += [(req.name, c) for c in pool[:want]]
                taken |= {c.id for c in pool[:want]}
            else:
                return got
    return None


def _covered(req: Req, names: set[str]) -> bool:
    return not names or req.name in names or req.name.split("/", 1)[0] in names


def _fits_choice(reqs: list[Req], constraints: list[tuple[set[str], str]], free: list[Candidate],
                 everything: list[Candidate], honour_taints: bool = True, room: dict[str, float] | None = None) -> Fit:
    pools = {r.name: [c for c in free if r.takes(c, honour_taints, room)] for r in reqs}
    # allocationMode All wants every matching device of the node, held ones included
    wants_all = {r.name: sum(1 for c in everything if r.selector.matches(c)) for r in reqs if r.count is None}
    candidates_per = []
    for names, attr in constraints:
        vals = sorted({g for r in reqs if _covered(r, names) for c in pools[r.name] for g in c.groups(attr)})
        candidates_per.append(vals or [None])
    worst = ""
    for values in itertools.product(*candidates_per) if constraints else [()]:
        need: dict[tuple, int] = {}
        ok = True
        for req in reqs:
            pool = pools[req.name]
            for (names, attr), val in zip(constraints, values):
                if _covered(req, names):
                    pool = [c for c in pool if val is not None and val in c.groups(attr)]
            want = wants_all[req.name] if req.count is None else req.count
            ids = tuple(sorted(c.id for c in pool))
            need[ids] = need.get(ids, 0) + want
            if (req.count is None and not pool) or len(pool) < need[ids]:
                ok = False
                where = "; ".join(f"{INTENT.get(a, a)} {v}" if v is not None else f"no {INTENT.get(a, a)} group"
                                  for (_, a), v in zip(constraints, values)) if constraints else ""
                n = "all" if req.count is None else need[ids]
                msg = (f"request {req.name} needs {n} x {req.cls}; " +
                       (f"{where} has {len(pool)}" if where else f"{len(pool)} free"))
                worst = worst if worst and _count(worst) >= len(pool) else msg
        if ok:
            return Fit(True, "")
    return Fit(False, _blocker(reqs, constraints, pools) or worst)


def _count(msg: str) -> int:
    m = re.search(r"has (\d+)|(\d+) free", msg)
    return int(m[1] or m[2]) if m else -1


def _blocker(reqs: list[Req], constraints: list[tuple[set[str], str]], pools: dict[str, list[Candidate]]) -> str:
    """The first request or constraint without which the claim would fit, with the best group's size."""
    for req in reqs:
        if req.selector.errors:
            return f"request {req.name}: selector not evaluable ({'; '.join(req.selector.errors)})"
        if req.count is not None and len(pools[req.name]) < req.count:
            return f"request {req.name} needs {req.count} x {req.cls}; only {len(pools[req.name])} usable"
    for names, attr in constraints:
        for req in reqs:
            if not _covered(req, names):
                continue
            sizes: dict[str, int] = {}
            for c in pools[req.name]:
                for g in c.groups(attr):
                    sizes[g] = sizes.get(g, 0) + 1
            best = max(sizes.values(), default=0)
            if req.count is not None and best < req.count:
                what = WHAT.get(INTENT.get(attr, ""), f"one value of {attr}")
                return f"constraint {attr}: request {req.name} needs {req.count} x {req.cls} in {what}, the largest has {best}"
    return ""


def _share_lines(spec: dict, cands: list[Candidate], classes: dict[str, list[str]],
                 shares: dict[str, list[tuple[str, float]]], room: dict[str, float]) -> list[str]:
    """For each shared device a request would take but cannot, how its bandwidth is spent."""
    out = []
    for alts in requests_of(spec, classes):
        for r in alts:
            for c in cands:
                if c.bandwidth is None or not r.selector.matches(c) or r.needs(c) <= room.get(c.id, 0) + 1e-9:
                    continue
                total = sharing.quantity(c.bandwidth["value"]) / 1e9
                spent = ", ".join(f"{n} {g:g}" for n, g in shares.get(c.id, [])) or "none"
                out.append(f"  shared {c.name}: request {r.name} needs {r.needs(c):g} Gbit/s, {room[c.id]:g} of "
                           f"{total:g} left (shares: {spent})")
    return out


def _blocking_keys(spec: dict, cands: list[Candidate], classes: dict[str, list[str]]) -> list[str]:
    """Keys of the taints that keep matching devices from the claim's requests."""
    return sorted({t["key"] for alts in requests_of(spec, classes) for r in alts for c in cands
                   if r.selector.matches(c) for t in untolerated(list(c.taints), r.tolerations)})


def explain(claim: dict, truths: dict[str, Truth], claims: list[dict], classes: list[dict],
            events: list[str] = (), slices: list[dict] | None = None,
            identities: dict[str, Identity] | None = None, taints: dict[Key, list[dict]] | None = None) -> Explanation:
    meta = claim["metadata"]
    name = f"{meta['namespace']}/{meta['name']}"
    alloc = (claim.get("status") or {}).get("allocation")
    if alloc:
        node = alloc["devices"]["results"][0]["pool"] if alloc["devices"].get("results") else "?"
        return Explanation(name, True, "allocated", [f"allocated on {node}"])
    sel = class_selectors(classes)
    spec = claim["spec"]["devices"]
    lines = []
    for alts in requests_of(spec, sel):
        for r in alts:
            lines.append(f"request {r.name}: {'all' if r.count is None else r.count} x {r.cls}"
                         + (f" (selector not evaluable: {'; '.join(r.selector.errors)})" if r.selector.errors else ""))
    for c in spec.get("constraints") or []:
        if c.get("matchAttribute"):
            key = INTENT.get(c["matchAttribute"])
            lines.append(f"constraint matchAttribute {c['matchAttribute']} over {c.get('requests') or 'all requests'}"
                         f" = {WHAT.get(key, 'one published value')}")
    devices = published(slices) if slices is not None else None
    holders = held_by(claims, identities, devices)  # node -> device id -> claim
    used = sharing.used_gbps(claims, identities, devices)  # node -> shared device id -> [(claim, Gbit/s)]
    nodes = sorted(set(truths) | {s["spec"].get("nodeName") for s in slices or [] if s["spec"].get("nodeName")})
    any_empty, any_now, tainted_keys = False, False, set()
    for node in nodes:
        truth = truths.get(node)
        cands = candidates(node, truth, slices, identities, taints)
        shares = used.get(node, {})
        busy = set(holders.get(node, {})) - set(shares)  # a shared device is busy only when full
        room = {c.id: sharing.quantity(c.bandwidth["value"]) / 1e9 - sum(g for _, g in shares.get(c.id, []))
                for c in cands if c.bandwidth is not None}
        empty = fits(spec, cands, set(), sel)
        now = fits(spec, cands, busy, sel, room=room)
        any_empty |= empty.ok
        any_now |= now.ok
        topo = truth.instance_type if truth else "not a fake node"
        if not empty.ok and any(c.taints for c in cands) and fits(spec, cands, set(), sel, honour_taints=False).ok:
            keys = _blocking_keys(spec, cands, sel)
            tainted_keys |= set(keys)
            lines.append(f"node {node} ({topo}): would fit untainted; the fitting devices are tainted "
                         f"({', '.join(keys)}) and the claim does not tolerate it")
        elif not empty.ok:
            lines.append(f"node {node} ({topo}): cannot fit even when empty: {empty.detail}")
        elif now.ok:
            lines.append(f"node {node} ({topo}): fits now" + (f" (as {now.sub})" if now.sub else ""))
        else:
            held = sorted(set(holders.get(node, {}).values()))
            lines.append(f"node {node} ({topo}): fits when empty" + (f" (as {empty.sub})" if empty.sub else "")
                         + f"; now: {now.detail}; devices held by {', '.join(held) or 'nobody'}")
            lines += _share_lines(spec, cands, sel, shares, room)
    verdict = ("fits now" if any_now else "cluster full" if any_empty
               else f"pending: every fitting device is tainted (key {', '.join(sorted(tainted_keys))})" if tainted_keys
               else "cannot be satisfied with this topology")
    lines += [f"scheduler: {e}" for e in events[-3:]]
    return Explanation(name, False, verdict, lines)


def explain_claim(kubeconfig: str, namespace: str, name: str, truths: dict[str, Truth] | None,
                  identities: dict[str, Identity] | None = None) -> Explanation:
    from kubernetes.client.rest import ApiException

    from ..kube import Kube

    try:
        kube = Kube(kubeconfig)
    except Exception as e:  # ConfigException, or a YAML file that is no kubeconfig (rows 71-72)
        raise ValueError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({type(e).__name__})") from None
    kube.api.configuration.retries = 1  # a dead server: one line in a second, not urllib3's retries
    try:
        claim = kube.get("ResourceClaim", name, namespace)
    except ApiException as e:
        raise ValueError(f"the API server of {kubeconfig} refused to look up {namespace}/{name}: {e.status} {e.reason}") from None
    except Exception as e:  # urllib3's MaxRetryError and friends: the server does not answer
        raise ValueError(f"cannot reach the API server of {kubeconfig} ({type(e).__name__})") from None
    if claim is None:
        raise ValueError(f"claim {namespace}/{name} not found")
    claims = json.loads(kube.res.list_resource_claim_for_all_namespaces(_preload_content=False).data)["items"]
    classes, _ = kube.list("DeviceClass")
    slices, _ = kube.list("ResourceSlice")
    events = scheduler_events(kube, namespace, name)
    return explain(claim, truths or {}, claims, classes, events, slices, identities)


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
