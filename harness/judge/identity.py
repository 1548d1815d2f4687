"""How allocated devices map back to the hardware, and what a `matchAttribute` means.

A device is mapped by its *identity* (the device the driver will hand to the container:
neuron-device-N is /dev/neuronN, pci-DDDD-BB-SS-F is that PCI function), never by its topology
attributes; an attribute is read for its intent ("these devices really share ...")."""

from __future__ import annotations

import re
from collections.abc import Iterator

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

# Device name -> truth id, per driver: the identities AWS's drivers use.
IDENTITY = {
    "neuron.aws.com": (re.compile(r"neuron-?device-?(\d+)\Z"), lambda m: f"neuron{int(m[1])}"),
    "dra.net": (re.compile(r"pci-([0-9a-f]{4})-([0-9a-f]{2})-([0-9a-f]{2})-([0-7])\Z"),
                lambda m: f"{m[1]}:{m[2]}:{m[3]}.{m[4]}"),
}


def truth_id(driver: str, device: str) -> str | None:
    pattern, to_id = IDENTITY.get(driver, (None, None))
    if pattern is None:
        return None
    m = pattern.match(device)
    return to_id(m) if m else None


def claim_name(claim: dict) -> str:
    return f"{claim['metadata'].get('namespace')}/{claim['metadata']['name']}"


def allocations(claims: list[dict]) -> Iterator[tuple[str, dict, dict, str | None]]:
    """(claim "namespace/name", claim, result, truth id or None) for every allocated device."""
    for c in claims:
        for r in (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []:
            yield claim_name(c), c, r, truth_id(r["driver"], r["device"])


def holders(claims: list[dict]) -> dict[str, dict[str, str]]:
    """node -> truth id -> the claim holding it (admin-access allocations do not take a device)."""
    out: dict[str, dict[str, str]] = {}
    for name, _, r, tid in allocations(claims):
        if tid and not r.get("adminAccess"):
            out.setdefault(r["pool"], {})[tid] = name
    return out
