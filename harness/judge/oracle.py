"""The oracle: judge a claim's allocation against the true topology.

Every allocated device is mapped back to the fake hardware by its *identity* (the device the
driver will hand to the container: neuron-device-N is /dev/neuronN, pci-DDDD-BB-SS-F is that PCI
function), never by its topology attributes. Each `matchAttribute` is then read for its intent
("these devices really share an EFA group / root complex / NUMA node") and checked against
the ground truth. A driver that publishes a wrong pcieRoot or devicegroup id makes the
scheduler "align" the wrong devices; this is what notices.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from fakedev import Truth, TruthDevice

from . import partitions, sharing, status
from .identity import INTENT, KIND_OF_DRIVER, WHAT, Identity, Published, allocations, published, truth_id
from .taints import EVICTION_MARGIN, Key, allocated_at, eviction_deadline, parse_time, show, untolerated


@dataclass
class Verdict:
    claim: str
    ok: bool
    node: str | None = None
    reasons: list[str] = field(default_factory=list)  # why it is wrong (empty when ok)
    checks: list[str] = field(default_factory=list)  # what was verified
    devices: list[dict] = field(default_factory=list)  # allocation mapped to hardware
    unjudged: list[str] = field(default_factory=list)  # intents the oracle does not know

    def __str__(self) -> str:
        head = f"claim {self.claim}: {'ALIGNED' if self.ok else 'WRONG'}" + (f" on {self.node}" if self.node else "")
        lines = [head]
        lines += [f"  - {r}" for r in self.reasons]
        if self.ok:
            lines += [f"  + {c}" for c in self.checks]
        lines += [f"  ? {u}" for u in self.unjudged]
        return "\n".join(lines)


def _request_of(result: dict) -> tuple[str, str]:
    """(main request, full name) of a result; firstAvailable results are `main/sub`."""
    full = result["request"]
    return full.split("/", 1)[0], full


def judge(claim: dict, truths: dict[str, Truth], extra_claims: list[dict] = (),
          identities: dict[str, Identity] | None = None, devices: Published | None = None,
          taints: dict[Key, list[dict]] | None = None, now: float | None = None) -> Verdict:
    """Judge `claim` (a ResourceClaim dict) against `truths` (node -> fakedev truth).
    `extra_claims`: other allocated claims, to catch devices handed out twice. `identities`: how
    other drivers' devices map to the hardware (their profiles'), `devices`: published attributes
    (for identities that read one). `taints`: each device's taints now (taints.device_taints),
    to hold the allocation and its pods' eviction to them; `now` is the time judged at."""
    meta = claim["metadata"]
    v = Verdict(f"{meta.get('namespace')}/{meta['name']}", ok=False)
    alloc = (claim.get("status") or {}).get("allocation")
    if not alloc:
        v.reasons.append("not allocated")
        return v
    results = alloc["devices"].get("results") or []
    spec = claim["spec"]["devices"]
    pools = {r["pool"] for r in results}
    if len(pools) > 1:
        v.reasons.append(f"devices come from several nodes: {sorted(pools)}")
    v.node = next(iter(pools), None)
    sel_nodes = [val for t in ((alloc.get("nodeSelector") or {}).get("nodeSelectorTerms") or [])
                 for f in t.get("matchFields") or [] if f.get("key") == "metadata.name" for val in f.get("values", [])]
    if sel_nodes and v.node and v.node not in sel_nodes:
        v.reasons.append(f"allocation is for node {sel_nodes} but its devices are in pool {v.node}")
    truth = truths.get(v.node)
    if truth is None:
        v.reasons.append(f"no ground truth for node {v.node!r} (not a fake node of this cluster)")
        return v
    by_id = {d.id: d for d in truth.devices}
    mapped: list[tuple[dict, TruthDevice]] = []
    seen: dict[str, str] = {}
    for r in results:
        tid = truth_id(r["driver"], r["device"], (devices or {}).get((r["driver"], r["pool"], r["device"])), identities)
        dev = by_id.get(tid) if tid else None
        entry = {"request": r["request"], "driver": r["driver"], "device": r["device"], "truth_id": tid}
        v.devices.append(entry)
        if tid is None:
            v.unjudged.append(f"{r['driver']}/{r['device']}: not mapped to the hardware (its driver profile states "
                              "no identity, or the device does not match it): not judged")
            continue
        if dev is None:
            v.reasons.append(f"{r['device']} ({tid}) does not exist on node {v.node}")
            continue
        if not dev.present:
            v.reasons.append(f"{r['device']} ({tid}) was hot-removed from node {v.node}, yet it was allocated "
                             "(the driver did not withdraw it)")
        elif not dev.usable:
            v.reasons.append(f"{r['device']} ({tid}) is not usable ({', '.join(dev.faults)}), yet it was allocated")
        if tid in seen and not r.get("adminAccess") and _clash(r, seen[tid]):
            v.reasons.append(f"{r['device']} is allocated twice (requests {seen[tid]['request']} and {r['request']})")
        seen[tid] = r
        entry.update(root=dev.root, switch=dev.switch, numa_node=dev.numa_node, kind=dev.kind)
        mapped.append((r, dev))
    others: dict[str, list[sharing.Holder]] = {}
    held: dict[str, list[partitions.Holding]] = {}
    if not _admin(results):
        for name, other, r, tid in allocations(extra_claims, identities, devices):
            if other["metadata"].get("uid") != meta.get("uid") and r["pool"] == v.node and not r.get("adminAccess") \
                    and tid in seen:
                others.setdefault(tid, []).append(sharing.Holder(name, r["request"], r.get("shareID"), sharing.gbps(r)))
                held.setdefault(tid, []).append(partitions.Holding(name, r["request"], r["device"]))
                if _clash(seen[tid], r):
                    v.reasons.append(f"{r['device']} is also allocated to claim {name}")
    sharing.check(v.claim, mapped, others, v.reasons, v.checks)
    partitions.check(mapped, v.claim, held, v.reasons, v.checks)
    sharing.check_distinct(spec, mapped, _request_of, v.reasons, v.checks)
    status.check(claim, results, mapped, v.reasons, v.checks)
    _check_counts(spec, results, truth, v)
    _check_constraints(spec, mapped, v)
    if taints is not None:
        _check_taints(claim, results, mapped, taints, v, time.time() if now is None else now)
    v.ok = not v.reasons
    return v


def _check_taints(claim: dict, results: list[dict], mapped: list[tuple[dict, TruthDevice]],
                  taints: dict[Key, list[dict]], v: Verdict, now: float) -> None:
    """No device may be allocated under an untolerated NoSchedule/NoExecute taint it already had,
    the claim's pods must be gone by each NoExecute taint's eviction deadline (plus a margin),
    and a device that is failed in the hardware must not be handed out untainted."""
    for r, dev in mapped:
        ts = taints.get((r["driver"], r["pool"], r["device"]), [])
        if dev.health == "failed" and not any(t.get("effect") in ("NoSchedule", "NoExecute") for t in ts):
            v.reasons.append(f"{r['device']} ({dev.id}) is failed in the hardware ({', '.join(dev.health_counts)}) "
                             "and allocated, yet untainted: the driver did not taint it")
    at = allocated_at(claim)
    users = [u.get("name", "?") for u in (claim.get("status") or {}).get("reservedFor") or []]
    tainted = 0
    for r in results:
        ts = taints.get((r["driver"], r["pool"], r["device"]), [])
        tainted += bool(ts)
        tol = r.get("tolerations")
        for t in untolerated(ts, tol):
            added = parse_time(t.get("timeAdded"))
            if at is not None and added is not None and added < at - 1:
                v.reasons.append(f"{r['device']} was allocated while tainted {show(t)} ({t['source']}, since "
                                 f"{t['timeAdded']}), which request {r['request']} does not tolerate")
        for t in ts:
            deadline = eviction_deadline(t, tol)
            if deadline is not None and users and now > deadline + EVICTION_MARGIN:
                v.reasons.append(f"pod(s) {', '.join(users)} still use {r['device']} {now - deadline:.0f} s after its "
                                 f"NoExecute taint {show(t)} ({t['source']}) called for their eviction "
                                 f"(allowed: {EVICTION_MARGIN:.0f} s)")
    if tainted:
        v.checks.append(f"taints: {tainted} tainted device(s), each tolerated or tainted after allocation, "
                        "and no pod kept past its eviction deadline")


def _clash(mine: dict, other: dict) -> bool:
    """Two allocations of one physical device clash, unless both are shares (sharing.check
    judges those) or one is a core partition (partitions.check counts the cores)."""
    return sharing.exclusive_clash(mine, other) and not (partitions.is_partition(mine) or partitions.is_partition(other))


def _admin(results: list[dict]) -> bool:
    return any(r.get("adminAccess") for r in results)


def _check_counts(spec: dict, results: list[dict], truth: Truth, v: Verdict) -> None:
    for req in spec.get("requests") or []:
        got = [r for r in results if _request_of(r)[0] == req["name"]]
        if "exactly" in req:
            ex = req["exactly"]
            if ex.get("allocationMode") == "All" and (ex.get("selectors") or any(partitions.is_partition(r) for r in got)):
                # CEL selectors, or partitions the truth does not enumerate: how many devices "all"
                # means is the driver's and the scheduler's word here, so it is not counted
                v.unjudged.append(f"request {req['name']} (All): {len(got)} devices, not counted against the truth "
                                  "(its selectors or partitions select what the truth cannot enumerate)")
            elif ex.get("allocationMode") == "All":
                kinds = {KIND_OF_DRIVER.get(r["driver"]) for r in got}
                usable = [d for d in truth.devices if d.kind in kinds and d.usable]
                if len(got) != len(usable):
                    v.reasons.append(f"request {req['name']} (All) got {len(got)} devices; the node really has "
                                     f"{len(usable)} usable ones")
                else:
                    v.checks.append(f"request {req['name']}: all {len(got)} usable devices")
            elif len(got) != ex.get("count", 1):
                v.reasons.append(f"request {req['name']} asked for {ex.get('count', 1)} devices, got {len(got)}")
            else:
                v.checks.append(f"request {req['name']}: {len(got)} device(s)")
        else:  # firstAvailable: all results must come from one subrequest, with its count
            subs = {_request_of(r)[1] for r in got}
            if len(subs) != 1:
                v.reasons.append(f"request {req['name']} mixes subrequests {sorted(subs)}")
                continue
            sub = next(iter(subs)).split("/", 1)[1]
            want = next((s for s in req["firstAvailable"] if s["name"] == sub), None)
            if want is None:
                v.reasons.append(f"request {req['name']} got unknown subrequest {sub}")
            elif want.get("allocationMode") != "All" and len(got) != want.get("count", 1):
                v.reasons.append(f"subrequest {req['name']}/{sub} asked for {want.get('count', 1)}, got {len(got)}")
            else:
                v.checks.append(f"request {req['name']}: subrequest {sub} with {len(got)} device(s)")


def _check_constraints(spec: dict, mapped: list[tuple[dict, TruthDevice]], v: Verdict) -> None:
    for c in spec.get("constraints") or []:
        attr = c.get("matchAttribute")
        if not attr:
            continue
        names = set(c.get("requests") or [])
        members = [(r, d) for r, d in mapped
                   if not names or _request_of(r)[0] in names or _request_of(r)[1] in names]
        key = INTENT.get(attr)
        if key is None:
            v.unjudged.append(f"matchAttribute {attr}: the oracle knows no hardware intent for it")
            continue
        if not members:
            continue
        common: set[str] | None = None
        for r, d in members:
            groups = d.align.of(key)
            if not groups:
                v.reasons.append(f"{r['device']} ({d.id}) really belongs to no {key} group, but matched "
                                 f"{attr} with the others")
            common = groups if common is None else common & groups
        if common:
            v.checks.append(f"{attr}: {len(members)} devices really share {WHAT[key]} ({key} {sorted(common)[0]})")
        elif all(d.align.of(key) for _, d in members):
            where = "; ".join(f"{d.id}: {sorted(d.align.of(key))}" for _, d in members)
            v.reasons.append(f"{attr} claims {len(members)} devices share {WHAT[key]}, but in the real topology "
                             f"they do not ({where})")


def judge_live(kube, truths: dict[str, Truth], identities: dict[str, Identity] | None = None,
               claims: list[dict] | None = None) -> list[Verdict]:
    """Judge claims as the cluster shows them now (`claims`: the ones to judge; default: every
    allocated claim): against every other claim, the published attributes and the taints of
    slices and DeviceTaintRules. What the pytest plugin's `dra.judge` and `dra-harness judge` share."""
    from .taints import device_taints  # beside the module's other imports from taints: only here

    every = json.loads(kube.res.list_resource_claim_for_all_namespaces(_preload_content=False).data)["items"]
    if claims is None:
        claims = [c for c in every if (c.get("status") or {}).get("allocation")]
    slices = kube.list("ResourceSlice")[0]
    devices, taints = published(slices), device_taints(slices, kube.taint_rules())
    return [judge(c, truths, every, identities, devices, taints) for c in claims]
