"""How allocated devices map back to the hardware, and what a `matchAttribute` means.

A device is mapped by its *identity* (the device the driver will hand to the container:
neuron-device-N is /dev/neuronN, pci-DDDD-BB-SS-F is that PCI function), never by its topology
attributes; an attribute is read for its intent ("these devices really share ...")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Attribute -> the alignment kind (fakedev.Alignment) that states its intent.
INTENT = {
    "resource.aws.com/devicegroup1_id": "devicegroup1",
    "resource.aws.com/devicegroup4_id": "devicegroup4",
    "resource.aws.com/devicegroup8_id": "devicegroup8",
    "resource.aws.com/devicegroup16_id": "devicegroup16",
    "resource.kubernetes.io/pcieRoot": "pcieRoot",
    "resource.kubernetes.io/numaNode": "numaNode",
    "dra.net/numaNode": "numaNode",
    "neuron.aws.com/topology4_id": "topology4",
    "neuron.aws.com/topology8_id": "topology8",
}
WHAT = {
    "devicegroup1": "the same EFA", "devicegroup4": "one EFA group of 4", "devicegroup8": "one EFA group of 8",
    "devicegroup16": "one EFA group of 16", "pcieRoot": "one PCIe root complex", "numaNode": "one NUMA node",
    "topology4": "one torus row of 4", "topology8": "one block of 8 devices", "pcieSwitch": "one PCIe switch",
}

KIND_OF_DRIVER = {"neuron.aws.com": "neuron", "dra.net": "efa"}
BDF_RE = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")


@dataclass(frozen=True)
class Identity:
    """How one driver's devices map to the hardware, as its driver profile states it: a name
    pattern (named groups `index` for a Neuron device, or `bdf`/`domain`,`bus`,`slot`,`fn` for a
    PCI function), or an attribute holding the PCI address or the Neuron index. A device that
    cannot be mapped is not judged, never guessed."""

    driver: str
    name_pattern: str | None = None
    pci_attribute: str | None = None  # e.g. dra.net/pciAddress
    index_attribute: str | None = None  # e.g. neuron.aws.com/deviceId

    @classmethod
    def from_profile(cls, driver: str, data: dict) -> "Identity":
        allowed = {"name_pattern", "pci_attribute", "index_attribute"}
        if not isinstance(data, dict) or set(data) - allowed or len(data) != 1:
            raise ValueError(f"identity of {driver}: exactly one of {', '.join(sorted(allowed))}")
        if "name_pattern" in data:
            try:
                groups = re.compile(data["name_pattern"]).groupindex
            except re.error as e:
                raise ValueError(f"identity of {driver}: name_pattern: {e}") from None
            if not ({"index"} <= set(groups) or {"bdf"} <= set(groups) or {"domain", "bus", "slot", "fn"} <= set(groups)):
                raise ValueError(f"identity of {driver}: name_pattern needs a group `index`, `bdf`, or domain/bus/slot/fn")
        return cls(driver, **data)

    def truth_id(self, device: str, attributes: dict | None = None) -> str | None:
        if self.name_pattern:
            m = re.fullmatch(self.name_pattern, device)
            if not m:
                return None
            g = m.groupdict()
            if g.get("index") is not None:
                return f"neuron{int(g['index'])}"
            bdf = g.get("bdf") or (f"{g['domain']}:{g['bus']}:{g['slot']}.{g['fn']}" if g.get("fn") else None)
            return bdf if bdf and BDF_RE.match(bdf) else None
        qualified = self.pci_attribute or self.index_attribute or ""
        raw = attributes or {}
        value = slice_value(raw.get(qualified, raw.get(qualified.rpartition("/")[2])))
        if self.pci_attribute:
            return value if isinstance(value, str) and BDF_RE.match(value) else None
        return f"neuron{value}" if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def slice_value(v):
    """The value of a slice device attribute ({"int": 5} -> 5); an unqualified attribute name in a
    slice belongs to its driver's domain."""
    return next(iter(v.values())) if isinstance(v, dict) and len(v) == 1 else v


# The identities AWS's drivers use (and the reference drivers, which publish as they do).
IDENTITIES = {
    # a core partition (refdriver/partitions.py) is judged on its chip: partitions.py counts its cores
    "neuron.aws.com": Identity("neuron.aws.com", name_pattern=r"neuron-?device-?(?P<index>\d+)(?:-cores-\d+-\d+)?"),
    "dra.net": Identity("dra.net", name_pattern=r"pci-(?P<domain>[0-9a-f]{4})-(?P<bus>[0-9a-f]{2})-(?P<slot>[0-9a-f]{2})-(?P<fn>[0-7])"),
}


def efa_device_name(bdf: str) -> str:
    """DRANET's name of an EFA's PCI function (the inverse of the dra.net identity)."""
    return "pci-" + bdf.replace(":", "-").replace(".", "-")


def truth_id(driver: str, device: str, attributes: dict | None = None,
             identities: dict[str, Identity] | None = None) -> str | None:
    ident = (identities or IDENTITIES).get(driver) or IDENTITIES.get(driver)
    return ident.truth_id(device, attributes) if ident else None


def claim_name(claim: dict) -> str:
    return f"{claim['metadata'].get('namespace')}/{claim['metadata']['name']}"


Published = dict[tuple[str, str, str], dict]  # (driver, pool, device) -> its attributes in the slice


def published(slices: list[dict]) -> Published:
    """Every published device's attributes, for identities that read an attribute."""
    return {(s["spec"]["driver"], s["spec"]["pool"]["name"], d["name"]): d.get("attributes") or {}
            for s in slices for d in s["spec"].get("devices") or []}


def allocations(claims: list[dict], identities: dict[str, Identity] | None = None,
                devices: Published | None = None) -> Iterator[tuple[str, dict, dict, str | None]]:
    """(claim "namespace/name", claim, result, id) for every allocated device: its truth id when
    it maps to the hardware, else "driver/pool/device" (still a distinct device, never judged)."""
    for c in claims:
        for r in (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []:
            attrs = (devices or {}).get((r["driver"], r["pool"], r["device"]))
            yield claim_name(c), c, r, truth_id(r["driver"], r["device"], attrs, identities)


def holders(claims: list[dict], identities: dict[str, Identity] | None = None,
            devices: Published | None = None) -> dict[str, dict[str, str]]:
    """node -> device id (truth id, or driver/pool/device) -> the claim holding it (admin-access
    allocations do not take a device)."""
    out: dict[str, dict[str, str]] = {}
    for name, _, r, tid in allocations(claims, identities, devices):
        if not r.get("adminAccess"):
            out.setdefault(r["pool"], {})[tid or f"{r['driver']}/{r['pool']}/{r['device']}"] = name
    return out
