"""Validity of CDI specs by the CDI specification's rules (cncf-tags/container-device-interface
SPEC.md, pkg/parser; research/dra-api.md §4): known keys only, kind `vendor/class`, device names,
version high enough for the fields used, absolute paths, fully qualified device ids."""

from __future__ import annotations

import re

VENDOR = re.compile(r"^[A-Za-z][A-Za-z0-9.-]*[A-Za-z0-9]$")
CLASS = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9]$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*[A-Za-z0-9]$")
EDITS = {"env", "deviceNodes", "mounts", "hooks", "additionalGids", "intelRdt", "netDevices"}
NODE = {"path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"}
VERSIONS = ["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"]


def problems(spec: dict) -> list[str]:
    out: list[str] = []
    unknown = set(spec) - {"cdiVersion", "kind", "annotations", "devices", "containerEdits"}
    if unknown:
        out.append(f"unknown top-level keys {sorted(unknown)}")
    if spec.get("cdiVersion") not in VERSIONS:
        out.append(f"cdiVersion {spec.get('cdiVersion')!r} is not a released version")
    vendor, _, cls = str(spec.get("kind", "")).partition("/")
    if not VENDOR.match(vendor) or not CLASS.match(cls) or "." in cls:
        out.append(f"kind {spec.get('kind')!r} is not vendor/class (dot-free class, as the kubelet's validator wants)")
    devices = spec.get("devices") or []
    if not devices:
        out.append("a spec needs at least one device")
    uses_host_path = False
    for d in devices:
        if not NAME.match(d.get("name", "")):
            out.append(f"device name {d.get('name')!r} is invalid")
        out += _edits(d.get("containerEdits") or {}, f"device {d.get('name')}")
        uses_host_path |= any("hostPath" in n for n in (d.get("containerEdits") or {}).get("deviceNodes", []))
    out += _edits(spec.get("containerEdits") or {}, "spec")
    uses_host_path |= any("hostPath" in n for n in (spec.get("containerEdits") or {}).get("deviceNodes", []))
    if uses_host_path and VERSIONS.index(spec.get("cdiVersion", "0.3.0") if spec.get("cdiVersion") in VERSIONS else "0.3.0") < 2:
        out.append("deviceNodes[].hostPath needs cdiVersion >= 0.5.0")
    return out


def _edits(e: dict, where: str) -> list[str]:
    out = []
    if set(e) - EDITS:
        out.append(f"{where}: unknown containerEdits keys {sorted(set(e) - EDITS)}")
    for v in e.get("env", []):
        if "=" not in v:
            out.append(f"{where}: env {v!r} is not NAME=value")
    for n in e.get("deviceNodes", []):
        if set(n) - NODE:
            out.append(f"{where}: unknown deviceNode keys {sorted(set(n) - NODE)}")
        if not str(n.get("path", "")).startswith("/"):
            out.append(f"{where}: deviceNode path {n.get('path')!r} is not absolute")
        if n.get("type", "c") not in ("c", "b", "u", "p"):
            out.append(f"{where}: deviceNode type {n.get('type')!r}")
    return out


def qualified(device_id: str) -> bool:
    kind, _, name = device_id.partition("=")
    vendor, _, cls = kind.partition("/")
    return bool(VENDOR.match(vendor) and CLASS.match(cls) and NAME.match(name))
