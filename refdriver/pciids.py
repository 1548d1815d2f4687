"""Vendor, device and subsystem names from the system's pci.ids, as DRANET gets them via ghw.

The DeviceClass selector of EKS matches `pciDevice == 'Elastic Fabric Adapter (EFA)'`, so a pci.ids
that lacks a newer id would make the class miss the device (NE §4.2). Amazon ids that older
pci.ids files lack fall back to the names the newer files use.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PCI_IDS_PATHS = ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"]
FALLBACK_VENDORS = {0x1D0F: "Amazon.com, Inc."}
FALLBACK_DEVICES = {
    (0x1D0F, 0x7064): "NeuronDevice (Inferentia)",
    (0x1D0F, 0x7164): "NeuronDevice (Trainium)",
    (0x1D0F, 0x7264): "NeuronDevice (Inferentia2)",
    (0x1D0F, 0x7364): "NeuronDevice (Trainium2)",
    (0x1D0F, 0x7564): "NeuronDevice (Trainium3)",
    **{(0x1D0F, d): "Elastic Fabric Adapter (EFA)" for d in (0xEFA0, 0xEFA1, 0xEFA2, 0xEFA3, 0xEFA4)},
    (0x1D0F, 0xEC20): "Elastic Network Adapter (ENA)",
}


@cache
def _db() -> tuple[dict, dict, dict]:
    vendors: dict[int, str] = {}
    devices: dict[tuple[int, int], str] = {}
    subsystems: dict[tuple[int, int, int, int], str] = {}
    path = next((p for p in PCI_IDS_PATHS if Path(p).exists()), None)
    if path is None:
        return vendors, devices, subsystems
    vendor = device = None
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):  # device classes follow; not needed
            break
        if line.startswith("\t\t") and vendor is not None and device is not None:
            parts = line.strip().split(None, 2)
            if len(parts) == 3:
                subsystems[(vendor, device, int(parts[0], 16), int(parts[1], 16))] = parts[2]
        elif line.startswith("\t") and vendor is not None:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                device = int(parts[0], 16)
                devices[(vendor, device)] = parts[1]
        elif not line.startswith("\t"):
            parts = line.split(None, 1)
            if len(parts) == 2:
                vendor, device = int(parts[0], 16), None
                vendors[vendor] = parts[1]
    return vendors, devices, subsystems


def vendor_name(vendor: int) -> str:
    return _db()[0].get(vendor) or FALLBACK_VENDORS.get(vendor) or f"{vendor:04x}"


def device_name(vendor: int, device: int) -> str:
    return _db()[1].get((vendor, device)) or FALLBACK_DEVICES.get((vendor, device)) or f"{device:04x}"


def subsystem_name(vendor: int, device: int, sub_vendor: int, sub_device: int) -> str:
    """ghw reports the subsystem's name, or its device id in hex when pci.ids has none
    (hence `pciSubsystem: efa1` on trn1, NE §2.1)."""
    return _db()[2].get((vendor, device, sub_vendor, sub_device)) or f"{sub_device:04x}"
