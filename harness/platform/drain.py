"""Maintenance through DeviceTaintRules: drain a node's devices (or one device) the way an admin
does in 1.37, and wait for the eviction it causes (`dra-harness drain`, `dra.taint_rule`).

A rule selects by driver, pool and device name only (never by attribute); the reference drivers
name their pool after the node, so `pool = node` drains a node. Effect NoExecute evicts the pods
using the selected devices, NoSchedule only keeps new claims off, None (1.35+) changes nothing
but makes the eviction controller report what NoExecute would evict (dra-features.md §1.1).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

from ..kube import Kube

EFFECTS = ("NoExecute", "NoSchedule", "None")
DEFAULT_KEY = "dra-harness.io/maintenance"
KEY_RE = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")


class DrainError(ValueError):
    """A drain the server cannot do (no DeviceTaintRule API) or was asked wrongly."""


def rule_name(node: str, device: str | None = None) -> str:
    """A DNS-1123 name per (node, device), stable so a second drain replaces the first."""
    base = f"dra-harness-drain-{node}" + (f"-{device}" if device else "")
    base = re.sub(r"[^a-z0-9.-]", "-", base.lower())
    if len(base) <= 63:
        return base
    return base[:54].rstrip("-.") + "-" + hashlib.sha256(base.encode()).hexdigest()[:8]


def rule(api_version: str, name: str, *, key: str = DEFAULT_KEY, value: str | None = None,
         effect: str = "NoExecute", driver: str | None = None, pool: str | None = None,
         device: str | None = None) -> dict:
    if effect not in EFFECTS:
        raise DrainError(f"effect must be one of {', '.join(EFFECTS)}, got {effect[:30]!r}")
    if not KEY_RE.match(key) or len(key) > 316:
        raise DrainError(f"taint key {key[:70]!r} is not a qualified name (like example.com/maintenance)")
    selector = {k: v for k, v in (("driver", driver), ("pool", pool), ("device", device)) if v}
    taint = {"key": key, "effect": effect, **({"value": value} if value else {})}
    return {"apiVersion": api_version, "kind": "DeviceTaintRule", "metadata": {"name": name},
            "spec": {"deviceSelector": selector, "taint": taint}}


@dataclass
class Drained:
    rule: str
    effect: str
    pods_before: int  # pods using a selected device when the rule was made
    pods_left: int  # still using one when the wait ended
    seconds: float  # rule created -> no pod left (or the wait's end)

    def __str__(self) -> str:
        if self.effect != "NoExecute":
            return f"rule {self.rule} ({self.effect}): {self.pods_before} pod(s) use the devices; none evicted by design"
        return (f"rule {self.rule}: {self.pods_before - self.pods_left} of {self.pods_before} pod(s) evicted "
                f"in {self.seconds:.1f} s" + (f"; {self.pods_left} still running" if self.pods_left else ""))


def _users(kube: Kube, pool: str, device: str | None, driver: str | None) -> set[str]:
    """Pods (ns/name) that reserve a claim holding a selected device."""
    out = set()
    for c in kube.list("ResourceClaimAll")[0]:
        st = c.get("status") or {}
        results = ((st.get("allocation") or {}).get("devices") or {}).get("results") or []
        if any(r["pool"] == pool and (device is None or r["device"] == device) and (driver is None or r["driver"] == driver)
               for r in results):
            out |= {f"{c['metadata']['namespace']}/{u['name']}" for u in st.get("reservedFor") or []}
    return out


def drain(kube: Kube, node: str, *, device: str | None = None, driver: str | None = None, effect: str = "NoExecute",
          key: str = DEFAULT_KEY, wait: float = 0) -> Drained:
    """Taint the node's devices (or `device`) with a rule; with `wait`, wait up to that many
    seconds for the pods using them to be gone (NoExecute)."""
    api = kube.taint_rule_api()
    if api is None:
        raise DrainError("the API server serves no DeviceTaintRule (1.34/1.35 need the DRADeviceTaintRules gate and "
                         "resource.k8s.io/v1alpha3, 1.36 resource.k8s.io/v1beta2; dra-harness clusters have them)")
    name = rule_name(node, device)
    before = _users(kube, node, device, driver)
    t0 = time.monotonic()
    kube.apply(rule(api, name, key=key, effect=effect, driver=driver, pool=node, device=device))
    left = before
    if wait and effect == "NoExecute":
        end = t0 + wait
        while left and time.monotonic() < end:
            time.sleep(0.2)
            left = _users(kube, node, device, driver) & before
    return Drained(name, effect, len(before), len(left), time.monotonic() - t0)


def undrain(kube: Kube, node: str, device: str | None = None) -> bool:
    """Delete the drain rule of (node, device); False when there was none."""
    api = kube.taint_rule_api()
    if api is None:
        return False
    name = rule_name(node, device)
    if not any(r["metadata"]["name"] == name for r in kube.taint_rules()):
        return False
    kube.delete({"apiVersion": api, "kind": "DeviceTaintRule", "metadata": {"name": name}})
    return True
