"""The vendor answers a Neuron driver reads beside sysfs, parsed defensively.

sysfs gives neither the PCI address of `neuronN` (the Neuron driver answers that by ioctl, which
`neuron-ls --json-output` reports) nor the Neuron->EFA table (compiled into AWS's driver from the
connected-device-maps library; research/neuron-efa.md §1.2, §3). A real driver asks the tools;
a fake tree answers at the same relative paths. These readers are the driver's own: a reference
driver that shared readers with the generator of the fake could hide the fake's mistakes.

Every reader returns what it could use plus `problems`: one line per fault naming the file and
what was wrong, so a malformed file is a warning and a defined outcome (the entry skipped),
never a traceback and never an attribute silently dropped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

CDM_MAP = "etc/aws-neuron/connected-device-map.json"
NEURON_LS = "run/aws-neuron/neuron-ls.json"
BDF_RE = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")
SHORT_BDF_RE = re.compile(r"[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")
MAX_INDEX = 4095  # far above any instance (trn2u: 64 devices); bounds what a corrupt file can make us publish
MAX_BYTES = 4 << 20


def read_text(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_BYTES).decode()
    except (OSError, UnicodeDecodeError):
        return None


def _index(key: object) -> int | None:
    if isinstance(key, bool):
        return None
    try:
        i = int(key) if isinstance(key, (int, str)) else None
    except ValueError:
        return None
    return i if i is not None and 0 <= i <= MAX_INDEX else None


def neuron_ls(vendor_root: Path, problems: list[str], timeout: float = 30) -> dict[int, str]:
    """Neuron index -> PCI address (domain included), from the tree's answer file or, on a real
    machine (root /), from `neuron-ls --json-output` itself."""
    path = vendor_root / NEURON_LS
    text = read_text(path)
    if text is None and vendor_root == Path("/") and shutil.which("neuron-ls"):
        try:
            text = subprocess.run(["neuron-ls", "--json-output"], capture_output=True, text=True,
                                  timeout=timeout).stdout
            path = Path("neuron-ls --json-output")
        except (OSError, subprocess.SubprocessError) as e:
            problems.append(f"neuron-ls --json-output failed ({e}); pcieRoot and numaNode omitted for Neuron devices")
            return {}
    if text is None:
        return {}
    try:
        rows = json.loads(text)
    except ValueError as e:
        problems.append(f"{path}: not JSON ({e.msg} at line {e.lineno}); pcieRoot and numaNode omitted "
                        "for every Neuron device")
        return {}
    if not isinstance(rows, list):
        problems.append(f"{path}: expected a JSON list of devices, got {type(rows).__name__}; pcieRoot and "
                        "numaNode omitted for every Neuron device")
        return {}
    out: dict[int, str] = {}
    for i, r in enumerate(rows):
        idx = _index(r.get("neuron_device")) if isinstance(r, dict) else None
        bdf = r.get("domain_bdf") if isinstance(r, dict) else None
        if not isinstance(bdf, str) and isinstance(r, dict) and isinstance(r.get("bdf"), str):
            bdf = f"0000:{r['bdf']}" if SHORT_BDF_RE.match(r["bdf"]) else r["bdf"]
        if idx is None or not isinstance(bdf, str) or not BDF_RE.match(bdf):
            problems.append(f"{path}: entry {i} has no usable neuron_device and PCI address; that device's "
                            "pcieRoot and numaNode are omitted")
            continue
        out[idx] = bdf
    return out


def device_map(path: Path, problems: list[str]) -> dict[int, str]:
    """The Neuron->EFA table in connected-device-maps' JSON ({"<index>": "<efa bdf>"}). Absent: not
    an EFA-enabled instance, so no devicegroup attributes, as AWS's lookup library behaves."""
    text = read_text(path)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        problems.append(f"{path}: not JSON ({e.msg} at line {e.lineno}); devicegroup attributes omitted")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: not a connected-device map (a JSON object of index -> EFA address); "
                        "devicegroup attributes omitted")
        return {}
    out: dict[int, str] = {}
    for key, bdf in data.items():
        idx = _index(key)
        if idx is None or not isinstance(bdf, str) or not BDF_RE.match(bdf):
            problems.append(f"{path}: entry {str(key)[:40]!r} is not index -> EFA PCI address; skipped")
            continue
        out[idx] = bdf
    return out


def format_cpulist(cpus: list[int]) -> str:
    """Kernel cpulist format (0-3,8), as NEURON_RT_VISIBLE_CORES takes it."""
    out: list[str] = []
    cpus = sorted(set(cpus))
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)
