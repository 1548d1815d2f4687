"""Partitions of a Neuron device (KEP-4815; dra-features.md §1.2 and §4.2), judged from the truth.

The scheduler keeps partitions apart by the counters the driver publishes: a device is
allocatable while every counter it consumes is left in its set. Counters and consumption are the
driver's word. The oracle holds the allocations to the chip (its true `core_count`):
  - the cores handed out on one chip add up to no more than its cores;
  - no core is handed to two allocations (a full device takes every core, so a full device is
    never beside a partition of itself);
  - a partition's cores lie on its device.
A partition is named for its cores, `neuron-device-N-cores-A-B` (refdriver/partitions.py):
those are the cores its prepare hands to the workload, so they are what is judged."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fakedev import TruthDevice

PARTITION_RE = re.compile(r"neuron-device-(?P<index>\d+)-cores-(?P<first>\d+)-(?P<last>\d+)\Z")


def cores(device: str) -> tuple[int, int] | None:
    """(first, last) core of a partition's name; None for a whole device."""
    m = PARTITION_RE.match(device)
    return (int(m["first"]), int(m["last"])) if m else None


def is_partition(result: dict) -> bool:
    return result.get("driver") == "neuron.aws.com" and cores(result.get("device", "")) is not None


@dataclass
class Holding:
    claim: str
    request: str
    device: str  # the published device: the chip or one of its partitions


def check(mapped: list[tuple[dict, TruthDevice]], mine: str, others: dict[str, list[Holding]],
          reasons: list[str], checks: list[str]) -> None:
    """Judge the cores of every chip this claim holds a partition of (or that another claim holds
    a partition of). `others`: truth id -> the other claims' holdings of it on this node."""
    for tid in dict.fromkeys(d.id for _, d in mapped):
        dev = next(d for _, d in mapped if d.id == tid)
        held = [Holding(mine, r["request"], r["device"]) for r, d in mapped if d.id == tid] + others.get(tid, [])
        if dev.kind != "neuron" or not any(cores(h.device) for h in held):
            continue
        total = dev.core_count
        if not total:
            reasons.append(f"{tid}: a partition was allocated, but the truth knows no core count for it")
            continue
        owner: dict[int, Holding] = {}
        used = 0
        bad = False
        for h in held:
            span = cores(h.device)
            first, last = span if span else (0, total - 1)
            if span and (first > last or last >= total):
                reasons.append(f"{h.device} ({h.claim} {h.request}): cores {first}-{last} do not lie on {tid}, "
                               f"which has {total} cores (0-{total - 1})")
                bad = True
                continue
            used += last - first + 1
            for core in range(first, last + 1):
                if core in owner:
                    o = owner[core]
                    if bool(span) != bool(cores(o.device)):  # one of the two is the whole chip
                        whole, part = (o, h) if span else (h, o)
                        reasons.append(f"{tid}: the whole device ({whole.claim} {whole.request}) is allocated beside "
                                       f"its partition {part.device} ({part.claim} {part.request})")
                    else:
                        reasons.append(f"{tid}: core {core} is handed out twice: {o.device} to {o.claim} {o.request} "
                                       f"and {h.device} to {h.claim} {h.request}")
                    bad = True
                    break
                owner[core] = h
        if used > total:
            reasons.append(f"{tid}: its allocations take {used} cores, but the chip has {total}: over-committed")
        elif not bad:
            checks.append(f"{tid}: {len(held)} allocation(s) hold {used} of its {total} cores, none twice")
