"""What drivers publish, judged against the ground truth with no scheduler in between.

A claim exercises the one group the scheduler happens to pick; a driver that gets one group in
eight wrong passes most claims. These checks read every published device instead:
- coverage: each device maps to one real device of the node, and every real device of the kinds
  a driver serves is published (none twice, none invented, none hot-removed still offered);
- intents: every group a topology attribute forms (all devices with one `devicegroup4_id`, one
  `pcieRoot`, ...) is judged by the oracle as if a claim had matched that attribute over it;
- capacity: a shareable device's bandwidth is the port rate the hardware really has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fakedev import Truth

from .identity import INTENT, Identity, published, slice_value, truth_id
from .oracle import Verdict, judge
from .sharing import quantity


@dataclass
class Coverage:
    """One driver's devices on one node, mapped to the hardware."""

    node: str
    driver: str
    mapped: dict[str, str] = field(default_factory=dict)  # device name -> truth id
    unmapped: list[str] = field(default_factory=list)  # published, but no identity maps them
    problems: list[str] = field(default_factory=list)


def _devices(slices: list[dict], driver: str | None = None):
    """(node, driver, pool, device) of every published node-local device (of `driver`)."""
    for s in slices:
        spec = s["spec"]
        if spec.get("nodeName") and (driver is None or spec["driver"] == driver):
            for d in spec.get("devices") or []:
                yield spec["nodeName"], spec["driver"], spec["pool"]["name"], d


def coverage(slices: list[dict], truths: dict[str, Truth], driver: str,
             identities: dict[str, Identity] | None = None) -> list[Coverage]:
    """Per node: `driver`'s devices against the node's real devices. A device that consumes
    counters is a partition of hardware another device also names (refdriver/partitions.py), so
    only devices that consume none must name distinct hardware."""
    out: dict[str, Coverage] = {}
    whole: dict[tuple[str, str], str] = {}  # (node, truth id) -> the device consuming no counters that names it
    for node, drv, _, d in _devices(slices, driver):
        truth = truths.get(node)
        if truth is None:
            continue
        cov = out.setdefault(node, Coverage(node, drv))
        tid = truth_id(drv, d["name"], d.get("attributes"), identities)
        if tid is None:
            cov.unmapped.append(d["name"])
            continue
        dev = truth.device(tid)
        if dev is None:
            cov.problems.append(f"{d['name']} names {tid}, which node {node} does not have")
        elif not dev.present:
            cov.problems.append(f"{d['name']} ({tid}) was hot-removed from node {node} but is still published")
        if not d.get("consumesCounters"):
            if (node, tid) in whole:
                cov.problems.append(f"{d['name']} and {whole[node, tid]} are one device ({tid}) published twice, and "
                                    "neither consumes counters: the scheduler can hand it out twice")
            whole.setdefault((node, tid), d["name"])
        cov.mapped[d["name"]] = tid
    for cov in out.values():
        truth, named = truths[cov.node], set(cov.mapped.values())
        kinds = {x.kind for x in truth.devices if x.id in named}
        for x in truth.devices:
            if x.kind in kinds and x.present and x.id not in named:
                cov.problems.append(f"node {cov.node} has {x.kind} {x.id}, but {cov.driver} does not publish it")
    return list(out.values())


def intents(slices: list[dict], truths: dict[str, Truth], identities: dict[str, Identity] | None = None,
            drivers: set[str] | None = None) -> dict[str, list[Verdict]]:
    """attribute -> the oracle's verdict on each group of two or more real devices that share one
    of its values (on one node, across the given drivers: a devicegroup id pairs Neuron devices
    with EFAs). Attributes without a known intent are not judged; partitions of one chip count
    as their chip once."""
    groups: dict[tuple[str, str, str], dict[str, tuple[str, str, str]]] = {}
    for node, drv, pool, d in _devices(slices):
        if drivers is not None and drv not in drivers:
            continue
        tid = truth_id(drv, d["name"], d.get("attributes"), identities)
        if tid is None or node not in truths:
            continue
        for attr, raw in (d.get("attributes") or {}).items():
            qualified = attr if "/" in attr else f"{drv}/{attr}"
            if qualified in INTENT:
                members = groups.setdefault((qualified, node, str(slice_value(raw))), {})
                members.setdefault(tid, (drv, pool, d["name"]))
    out: dict[str, list[Verdict]] = {}
    devices = published(slices)
    for (attr, node, value), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        claim = {"metadata": {"namespace": "published", "name": f"{attr}={value}", "uid": f"published:{attr}:{value}"},
                 "spec": {"devices": {"requests": [], "constraints": [{"matchAttribute": attr}]}},
                 "status": {"allocation": {"devices": {"results": [
                     {"request": "group", "driver": drv, "pool": pool, "device": name}
                     for drv, pool, name in members.values()]}}}}
        out.setdefault(attr, []).append(judge(claim, truths, identities=identities, devices=devices))
    return out


def capacity(slices: list[dict], truths: dict[str, Truth], identities: dict[str, Identity] | None = None) -> list[str]:
    """A shareable device's published bandwidth against its port's true rate: more than the port
    runs at lets the scheduler over-commit the NIC, and no claim shows it until it is full."""
    out = []
    for node, drv, _, d in _devices(slices):
        bw = ((d.get("capacity") or {}).get("bandwidth") or {}).get("value")
        truth = truths.get(node)
        tid = truth_id(drv, d["name"], d.get("attributes"), identities)
        dev = truth.device(tid) if truth and tid else None
        if bw is None or dev is None or not dev.rate_gbps:
            continue
        gbps = quantity(str(bw)) / 1e9
        if abs(gbps - dev.rate_gbps) > 1e-6:
            out.append(f"{node} {drv}/{d['name']} ({tid}): bandwidth {bw} published, but its port runs at "
                       f"{dev.rate_gbps} Gbit/s")
    return out


def shareable(slices: list[dict], driver: str) -> list[tuple[str, dict]]:
    """(node, device) of `driver`'s devices that allow several allocations."""
    return [(n, d) for n, _, _, d in _devices(slices, driver) if d.get("allowMultipleAllocations")]


# Kubernetes' standard attributes (resource.kubernetes.io, KEP-5491): their values mean the same
# for every driver, which is what lets a claim match a Neuron device with another driver's NIC.
STANDARD = {"resource.kubernetes.io/numaNode": "numa_node", "resource.kubernetes.io/pcieRoot": "root"}


def standard_values(slices: list[dict], truths: dict[str, Truth],
                    identities: dict[str, Identity] | None = None) -> list[str]:
    """Each standard attribute's value against the device's true NUMA node or PCIe root. A driver
    that numbers NUMA nodes its own way groups its own devices right and still mismatches every
    other driver's."""
    out = []
    for node, drv, _, d in _devices(slices):
        truth = truths.get(node)
        tid = truth_id(drv, d["name"], d.get("attributes"), identities)
        dev = truth.device(tid) if truth and tid else None
        if dev is None:
            continue
        for attr, field_name in STANDARD.items():
            raw = (d.get("attributes") or {}).get(attr)
            if raw is None:
                continue
            value, true = slice_value(raw), getattr(dev, field_name)
            if str(value) != str(true):
                out.append(f"{drv}/{d['name']} ({tid}) publishes {attr} {value}, but it really is on "
                           f"{'NUMA node' if field_name == 'numa_node' else 'root complex'} {true}")
    return out
