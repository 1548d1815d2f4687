"""The driver a report card is about, as the cluster shows it: its profile, node, classes and
published devices, and selectors that pin one device by what it publishes (a claim cannot name a
device; its attributes can)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..backends.profiles import DriverProfile
from ..judge.identity import IDENTITIES, Identity, truth_id


@dataclass
class Subject:
    profile: DriverProfile
    node: str
    classes: list[str]  # DeviceClasses whose selectors name the driver, the chosen one first
    slices: list[dict] = field(default_factory=list)  # the driver's slices on the node
    identity: Identity | None = None

    @property
    def driver(self) -> str:
        return self.profile.driver

    @property
    def device_class(self) -> str | None:
        return self.classes[0] if self.classes else None

    def devices(self) -> list[dict]:
        return [d for s in self.slices for d in s["spec"].get("devices") or []]

    def truth_id(self, device: dict) -> str | None:
        return truth_id(self.driver, device["name"], device.get("attributes"),
                        {self.driver: self.identity} if self.identity else None)


def node_slices(kube, driver: str, node: str) -> list[dict]:
    """`driver`'s ResourceSlices of `node`, as the API server has them now."""
    return [s for s in kube.list("ResourceSlice")[0] if s["spec"]["driver"] == driver and s["spec"].get("nodeName") == node]


def classes_naming(driver: str, classes: list[dict], chosen: str | None = None) -> list[str]:
    """The DeviceClasses whose CEL selectors name `driver` (by name, sorted), `chosen` first."""
    quoted = (f'"{driver}"', f"'{driver}'")
    names = sorted(c["metadata"]["name"] for c in classes
                   if any(q in json.dumps((c.get("spec") or {}).get("selectors") or []).replace('\\"', '"') for q in quoted))
    if chosen:
        names = [chosen] + [n for n in names if n != chosen]
    return names


def identity_of(profile: DriverProfile) -> Identity | None:
    """The profile's identity, or the one the harness knows for AWS's drivers' names."""
    if profile.identity:
        return Identity.from_profile(profile.driver, profile.identity)
    return IDENTITIES.get(profile.driver)


def _cel_value(v) -> str | None:
    kind, value = next(iter(v.items())) if isinstance(v, dict) and len(v) == 1 else (None, None)
    if kind == "string":
        return json.dumps(value)
    if kind == "int":
        return str(int(value))
    if kind == "bool":
        return "true" if value else "false"
    return None  # versions and lists: not needed to tell devices apart here


def pin(driver: str, device: dict, others: list[dict]) -> list[str] | None:
    """CEL selectors that match `device` and none of `others` (equality on all of its simple
    attributes), or None when another device publishes the same values for all of them."""
    def conds(d: dict) -> dict[str, str]:
        out = {}
        for name, v in (d.get("attributes") or {}).items():
            domain, _, attr = name.rpartition("/")
            cel = _cel_value(v)
            if cel is not None:
                out[f'device.attributes["{domain or driver}"]["{attr}"]'] = cel
        return out

    mine = conds(device)
    if not mine:
        return None
    for o in others:
        theirs = conds(o)
        if o["name"] != device["name"] and all(theirs.get(k) == v for k, v in mine.items()):
            return None
    return [f"{k} == {v}" for k, v in sorted(mine.items())]
