"""CDI specs, one per prepared claim, as transient specs in the CDI root (dra-api.md §4)."""

from __future__ import annotations

import json
from pathlib import Path

from . import atomicfile

CDI_VERSION = "0.5.0"  # env, deviceNodes with hostPath and mounts need no more (MinimumRequiredVersion)


def spec_path(cdi_root: Path, kind: str, claim_uid: str) -> Path:
    """GenerateTransientSpecName: <vendor>-<class>_<id>."""
    vendor, cls = kind.split("/", 1)
    return cdi_root / f"{vendor}-{cls}_{claim_uid}.json"


def write_spec(cdi_root: Path, kind: str, claim_uid: str, devices: dict[str, list[dict]], env: list[str],
               common_nodes: list[dict] = ()) -> tuple[Path, dict[str, str]]:
    """Write the claim's spec atomically; returns its path and device name -> CDI id."""
    spec = {
        "cdiVersion": CDI_VERSION,
        "kind": kind,
        "devices": [{"name": f"{claim_uid}-{name}", "containerEdits": {"deviceNodes": nodes}}
                    for name, nodes in devices.items()],
        "containerEdits": {"env": env, **({"deviceNodes": list(common_nodes)} if common_nodes else {})},
    }
    path = spec_path(cdi_root, kind, claim_uid)
    atomicfile.write(path, json.dumps(spec, indent=2) + "\n")
    return path, {name: f"{kind}={claim_uid}-{name}" for name in devices}


def device_node(path: str, devnum: str | None = None) -> dict:
    """A CDI device node. Numbers come from the device's sysfs `dev` attribute (MAJ:MIN) when
    known; otherwise the runtime takes them from hostPath when it creates the container."""
    node: dict = {"path": path, "hostPath": path, "permissions": "rw"}
    if devnum and ":" in devnum:
        major, minor = devnum.split(":", 1)
        node.update(type="c", major=int(major), minor=int(minor))
    return node
