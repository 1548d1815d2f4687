"""Device taints as the control plane applies them, so the oracle can hold allocations and
evictions to the same rules (KEP-5055; dra-features.md §1.1):

- a device's taints are its slice's plus those of every DeviceTaintRule whose selector matches
  it (driver, pool, device; `{}` matches all, no selector matches none);
- a toleration matches a taint as node tolerations do (empty key + Exists: every key; empty
  effect: every effect; operator Equal by default, comparing values);
- an untolerated NoSchedule or NoExecute taint keeps a device from being allocated; `None` (and
  any effect this code does not know) is informational;
- a pod on a device with an untolerated NoExecute taint is evicted at timeAdded, a tolerated one
  at timeAdded + the smallest tolerationSeconds of the matching tolerations, never if none of
  them has tolerationSeconds. The tolerations are the allocation result's, not the claim's.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass

from fakedev import Truth

from .identity import Identity, truth_id

BLOCKING = ("NoSchedule", "NoExecute")
EVICTION_MARGIN = 10.0  # seconds an eviction may lag its deadline before the oracle calls it late
Key = tuple[str, str, str]  # (driver, pool, device)


def parse_time(text: str | None) -> float | None:
    """RFC 3339 as the API server writes it (seconds, optional fraction, Z) -> epoch seconds."""
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def show(t: dict) -> str:
    return f"{t['key']}" + (f"={t['value']}" if t.get("value") else "") + f":{t.get('effect')}"


def device_taints(slices: list[dict], rules: list[dict] = ()) -> dict[Key, list[dict]]:
    """Every published device's taints: its own (source "driver") and its rules' ("rule NAME")."""
    out: dict[Key, list[dict]] = {}
    for s in slices:
        spec = s["spec"]
        pool = spec.get("pool", {}).get("name") or spec.get("nodeName")
        for d in spec.get("devices") or []:
            key = (spec["driver"], pool, d["name"])
            out[key] = [{**t, "source": "driver"} for t in d.get("taints") or []]
            for r in rules:
                sel = (r.get("spec") or {}).get("deviceSelector")
                if sel is None:
                    continue
                if all(sel.get(f) in (None, v) for f, v in zip(("driver", "pool", "device"), key)):
                    taint = r["spec"].get("taint") or {}
                    out[key].append({**taint, "source": f"rule {r['metadata']['name']}"})
    return out


def tolerates(tol: dict, taint: dict) -> bool:
    if tol.get("effect") and tol["effect"] != taint.get("effect"):
        return False
    if tol.get("operator", "Equal") == "Exists":
        return not tol.get("key") or tol["key"] == taint["key"]
    return tol.get("key") == taint["key"] and (tol.get("value") or "") == (taint.get("value") or "")


def untolerated(taints: list[dict], tolerations: list[dict] | None, effects=BLOCKING) -> list[dict]:
    return [t for t in taints if t.get("effect") in effects and not any(tolerates(x, t) for x in tolerations or [])]


def eviction_deadline(taint: dict, tolerations: list[dict] | None) -> float | None:
    """When a pod using a device with this NoExecute taint must be gone; None: never."""
    added = parse_time(taint.get("timeAdded"))
    if taint.get("effect") != "NoExecute" or added is None:
        return None
    matching = [x for x in tolerations or [] if tolerates(x, taint)]
    if not matching:
        return added
    seconds = [x["tolerationSeconds"] for x in matching if x.get("tolerationSeconds") is not None]
    return added + max(0, min(seconds)) if seconds else None


def allocated_at(claim: dict) -> float | None:
    """When the scheduler wrote the allocation: its managedFields entry that owns it."""
    times = [parse_time(m.get("time")) for m in claim["metadata"].get("managedFields") or []
             if m.get("subresource") == "status" and "f:allocation" in json.dumps(m.get("fieldsV1"))]
    times = [t for t in times if t is not None]
    return min(times) if times else None


@dataclass(frozen=True)
class Finding:
    node: str
    device: str  # driver/device
    truth_id: str
    problem: str  # "driver did not taint" | "tainted but healthy" | "timeAdded moved"
    detail: str

    def __str__(self) -> str:
        return f"{self.node} {self.device} ({self.truth_id}): {self.problem}: {self.detail}"


def audit(truths: dict[str, Truth], slices: list[dict], identities: dict[str, Identity] | None = None,
          seen: dict[tuple, str] | None = None) -> list[Finding]:
    """Hold each published device's own taints to its true health: a failed device must carry a
    NoSchedule or NoExecute taint, a healthy one none (a degraded one may go either way).
    `seen` remembers each taint's timeAdded between audits: a taint that stays must keep it (the
    eviction deadline is counted from it), whatever the driver does meanwhile (a restart)."""
    out = []
    present: set[tuple] = set()
    for s in slices:
        node = s["spec"].get("nodeName")
        truth = truths.get(node)
        if truth is None:
            continue
        by_id = {d.id: d for d in truth.devices}
        for d in s["spec"].get("devices") or []:
            tid = truth_id(s["spec"]["driver"], d["name"], d.get("attributes"), identities)
            dev = by_id.get(tid) if tid else None
            if dev is None:
                continue
            taints = d.get("taints") or []
            name = f"{s['spec']['driver']}/{d['name']}"
            for t in taints if seen is not None else ():
                k = (node, name, t["key"], t.get("value"), t.get("effect"))
                present.add(k)
                if seen.get(k, t.get("timeAdded")) != t.get("timeAdded"):
                    out.append(Finding(node, name, tid, "timeAdded moved",
                                       f"{show(t)} was added at {seen[k]} and now says {t.get('timeAdded')}, with no "
                                       "fault cleared between: tolerationSeconds would count from the new time"))
                else:
                    seen[k] = t.get("timeAdded")
            if dev.health == "failed" and not any(t.get("effect") in BLOCKING for t in taints):
                out.append(Finding(node, name, tid, "driver did not taint",
                                   f"the hardware is failed ({', '.join(dev.health_counts)}) but the device is published "
                                   + (f"with only {', '.join(show(t) for t in taints)}" if taints else "untainted")))
            elif dev.health == "ok" and taints:
                out.append(Finding(node, name, tid, "tainted but healthy",
                                   f"published with {', '.join(show(t) for t in taints)}, yet its error counters are clean"))
    if seen is not None:  # a taint that went away may come back later with a new time
        looked = {s["spec"].get("nodeName") for s in slices}
        for k in [k for k in seen if k[0] in looked and k not in present]:
            del seen[k]
    return out
