"""Shared devices (consumable capacity, KEP-5075; dra-features.md §1.3), judged from the truth.

The scheduler lets a device be allocated many times when its slice says
`allowMultipleAllocations`, subtracting each allocation's `consumedCapacity` from the capacity
the driver published. Both are the driver's word. The oracle holds them to the hardware:
  - only hardware that can be shared is shared: an EFA (its bandwidth divides between queue
    pairs); a Neuron device is split by its cores (partitions), never handed out whole twice;
  - the shares of one physical EFA add up to no more than its true port rate;
  - each share has its own shareID (the kubelet and the driver key prepared devices by it);
  - `distinctAttribute` puts its requests on distinct physical devices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fakedev import TruthDevice

SHAREABLE_KINDS = {"efa"}
BANDWIDTH = "bandwidth"  # the refdriver's capacity name (refdriver/sharing.py), in Gbit/s
_Q_RE = re.compile(r"([+-]?[0-9.]+(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?\Z")
_SUFFIX = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity(text: str) -> float:
    """A Kubernetes quantity ("50G", "1.5Gi", "500m") as a number; ValueError if it is not one."""
    m = _Q_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"not a quantity: {text!r:.40}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def gbps(result: dict) -> float | None:
    """The bandwidth one allocation consumed, in Gbit/s (None: the result records none)."""
    q = (result.get("consumedCapacity") or {}).get(BANDWIDTH)
    return None if q is None else quantity(q) / 1e9


@dataclass
class Holder:
    claim: str
    request: str
    share_id: str | None
    gbps: float | None


def check(claim_name: str, mapped: list[tuple[dict, TruthDevice]],
          others: dict[str, list[Holder]], reasons: list[str], checks: list[str]) -> None:
    """Judge this claim's shares. `others`: truth id -> the other claims' allocations of it on
    this node. Appends to the verdict's `reasons` and `checks`."""
    shared = 0
    for tid in dict.fromkeys(d.id for _, d in mapped):
        dev = next(d for _, d in mapped if d.id == tid)
        mine = [Holder(claim_name, r["request"], r.get("shareID"), gbps(r)) for r, d in mapped if d.id == tid]
        holders = mine + others.get(tid, [])
        if len(holders) < 2 and not any(h.share_id for h in mine):
            continue
        if any(h.share_id for h in mine):
            shared += 1
            if dev.kind not in SHAREABLE_KINDS:
                reasons.append(f"{dev.id} is a {dev.kind} device, handed out as a share (shareID "
                               f"{next(h.share_id for h in mine if h.share_id)}): only an EFA's bandwidth divides")
        ids = [h.share_id for h in holders if h.share_id]
        if len(set(ids)) < len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            reasons.append(f"{dev.id}: shareID {dup} is given to {ids.count(dup)} allocations "
                           f"({', '.join(f'{h.claim} {h.request}' for h in holders if h.share_id == dup)})")
        if dev.kind in SHAREABLE_KINDS and all(h.share_id for h in holders) and dev.rate_gbps:
            used = sum(h.gbps or 0 for h in holders)
            if used > dev.rate_gbps + 1e-9:
                parts = ", ".join(f"{h.claim} {h.gbps:g}" for h in holders)
                reasons.append(f"EFA {dev.id}: its shares add up to {used:g} Gbit/s ({parts}), but its port "
                               f"really runs at {dev.rate_gbps} Gbit/s: the NIC is over-committed")
            else:
                checks.append(f"EFA {dev.id}: {len(holders)} share(s) use {used:g} of its {dev.rate_gbps} Gbit/s")


def exclusive_clash(mine: dict, other: dict) -> bool:
    """Two allocations of one physical device clash unless both are shares (the rest of the
    share rules are check()'s)."""
    return not (mine.get("shareID") and other.get("shareID"))


def check_distinct(spec: dict, mapped: list[tuple[dict, TruthDevice]], request_of, reasons: list[str],
                   checks: list[str]) -> None:
    """Each `distinctAttribute` constraint: its requests' devices are distinct physical devices
    (a driver that publishes one NIC under two names would pass the scheduler's check)."""
    for c in spec.get("constraints") or []:
        attr = c.get("distinctAttribute")
        if not attr:
            continue
        names = set(c.get("requests") or [])
        members = [(r, d) for r, d in mapped if not names or request_of(r)[0] in names or request_of(r)[1] in names]
        seen: dict[str, str] = {}
        clash = False
        for r, d in members:
            if d.id in seen:
                reasons.append(f"distinctAttribute {attr}: requests {seen[d.id]} and {r['request']} got the same "
                               f"physical device {d.id}")
                clash = True
            seen[d.id] = r["request"]
        if members and not clash:
            checks.append(f"distinctAttribute {attr}: {len(members)} devices on {len(seen)} distinct physical devices")


def need_gbps(asked: str | None, capacity: dict) -> float:
    """The bandwidth a request consumes of a device with this published capacity entry, as the
    scheduler rounds it (API doc of CapacityRequestPolicyRange): none asked, the policy's
    default (or the whole device); below min, min; between steps, the next step up; over max,
    infinity (the device cannot serve it)."""
    value = quantity(capacity["value"]) / 1e9
    policy = capacity.get("requestPolicy") or {}
    if asked is None:
        return quantity(policy["default"]) / 1e9 if "default" in policy else value
    want = quantity(asked) / 1e9
    rng = policy.get("validRange")
    if rng:
        lo = quantity(rng["min"]) / 1e9
        want = max(want, lo)
        if rng.get("step"):
            step = quantity(rng["step"]) / 1e9
            want = lo + -(-round((want - lo) / step, 9) // 1) * step
        if rng.get("max") and want > quantity(rng["max"]) / 1e9 + 1e-9:
            return float("inf")
    return want


def used_gbps(claims: list[dict], identities=None, devices=None) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """node -> device id -> [(claim, Gbit/s)] of every share allocated now."""
    from .identity import allocations

    out: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for name, _, r, tid in allocations(claims, identities, devices):
        if r.get("shareID"):
            key = tid or f"{r['driver']}/{r['pool']}/{r['device']}"
            out.setdefault(r["pool"], {}).setdefault(key, []).append((name, gbps(r) or 0.0))
    return out
