"""PCI identity bytes: config space headers, modaliases and the files lspci and udev read."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Class codes. Neuron: "System peripheral" [INF: not published]; EFA: network controller,
# DRANET requires class 02 (NE §2.1); ENA: Ethernet; bridges: PCI-to-PCI bridge.
CLASS_NEURON = 0x088000
CLASS_ETHERNET = 0x020000
CLASS_BRIDGE = 0x060400

# PCI Express capability port types (PCIe spec, Express Capabilities Register bits 7:4).
PORT_ENDPOINT, PORT_ROOT, PORT_UPSTREAM, PORT_DOWNSTREAM = 0, 4, 5, 6


@dataclass(frozen=True)
class Bar:
    index: int
    start: int
    size: int

    # 64-bit prefetchable memory BAR, as the kernel prints it in `resource` (IORESOURCE_MEM|PREFETCH|MEM_64).
    FLAGS = 0x14220C


@dataclass(frozen=True)
class PciIdentity:
    vendor: int
    device: int
    class_code: int
    subsystem_vendor: int
    subsystem_device: int
    revision: int = 0
    port_type: int = PORT_ENDPOINT
    link_speed: int = 4  # Gen4 (16 GT/s)
    link_width: int = 16

    @property
    def is_bridge(self) -> bool:
        return self.class_code >> 8 == 0x0604

    def modalias(self) -> str:
        c = self.class_code
        return (f"pci:v{self.vendor:08X}d{self.device:08X}sv{self.subsystem_vendor:08X}"
                f"sd{self.subsystem_device:08X}bc{c >> 16:02X}sc{(c >> 8) & 0xFF:02X}i{c & 0xFF:02X}")


def config_space(ident: PciIdentity, bars: list[Bar], buses: tuple[int, int, int] | None = None) -> bytes:
    """256 bytes of config space: type 0 (endpoint) or type 1 (bridge) header plus a PCIe
    capability at 0x40, enough for lspci to decode headers, capabilities and the bus tree."""
    cfg = bytearray(256)
    struct.pack_into("<HHHH", cfg, 0, ident.vendor, ident.device, 0x0006, 0x0010)  # mem+master; cap list
    struct.pack_into("<I", cfg, 8, ident.revision | (ident.class_code << 8))
    cfg[0x0E] = 1 if ident.is_bridge else 0
    for bar in bars if not ident.is_bridge else []:
        off = 0x10 + 4 * bar.index
        struct.pack_into("<II", cfg, off, (bar.start & 0xFFFFFFF0) | 0xC, bar.start >> 32)
    if ident.is_bridge:
        primary, secondary, subordinate = buses or (0, 0, 0)
        cfg[0x18:0x1B] = bytes((primary, secondary, subordinate))
        struct.pack_into("<HH", cfg, 0x20, 0xFFF0, 0x0000)  # memory window closed
        struct.pack_into("<HH", cfg, 0x24, 0xFFF1, 0x0001)  # prefetchable window closed, 64-bit
    else:
        struct.pack_into("<HH", cfg, 0x2C, ident.subsystem_vendor, ident.subsystem_device)
        cfg[0x3D] = 1  # INTA#
    cfg[0x34] = 0x40
    # PCI Express capability: id 0x10, version 2, device/port type; link caps and status.
    struct.pack_into("<BBH", cfg, 0x40, 0x10, 0x00, 0x0002 | (ident.port_type << 4))
    link = (ident.link_width << 4) | ident.link_speed
    struct.pack_into("<I", cfg, 0x4C, link)
    struct.pack_into("<H", cfg, 0x52, link)
    return bytes(cfg)


def resource_file(bars: list[Bar], lines: int = 13) -> str:
    """sysfs `resource`: one `start end flags` line per resource, zeros for unused ones."""
    by_index = {b.index: b for b in bars}
    out = []
    for i in range(lines):
        b = by_index.get(i)
        if b:
            out.append(f"0x{b.start:016x} 0x{b.start + b.size - 1:016x} 0x{Bar.FLAGS:016x}")
        else:
            out.append("0x0000000000000000 0x0000000000000000 0x0000000000000000")
    return "\n".join(out) + "\n"


SPEEDS = {1: "2.5 GT/s PCIe", 2: "5.0 GT/s PCIe", 3: "8.0 GT/s PCIe", 4: "16.0 GT/s PCIe", 5: "32.0 GT/s PCIe"}
