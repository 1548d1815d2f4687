"""Device taints from device health: what the reference drivers publish when the hardware breaks.

Keys are in each driver's own domain (documented in the README, "Device taints"):
  neuron.aws.com/ecc-uncorrected  NoExecute   an uncorrected SRAM or HBM ECC error (value: sram, mem
                                              or sram-mem): work on the device is lost, evict it
  neuron.aws.com/ecc-repairable   NoSchedule  repairable HBM errors at or over the threshold: no new
                                              work until a reset repairs the rows; below the threshold
                                              the taint is informational (effect None, 1.35+ only)
  dra.net/efa-unresponsive        NoExecute   the EFA's admin commands time out
                                              (hw_counters/no_completion_cmds > 0)
What the counters mean is fakedev/health.py's and devhealth.py's reading of the kernel's files.

A taint's timeAdded is the first time this driver published it, kept across restarts by reading
it back from the pool's slices (the API server would otherwise stamp a new time, and the
eviction deadline timeAdded + tolerationSeconds would move). Limits per API version
(dra-features.md §1.1 "Limits"): 4 taints per device on 1.34, 16 from 1.35; effect None from
1.35; from 1.35 a slice with any tainted device holds at most 64 devices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

NEURON_ECC = "neuron.aws.com/ecc-uncorrected"
NEURON_REPAIRABLE = "neuron.aws.com/ecc-repairable"
EFA_UNRESPONSIVE = "dra.net/efa-unresponsive"
REPAIRABLE_THRESHOLD = 8  # default of --repairable-ecc-threshold


@dataclass(frozen=True)
class Caps:
    """What the API server of a given minor version accepts in a slice."""

    minor: int = 37

    @property
    def effect_none(self) -> bool:
        return self.minor >= 35

    @property
    def max_taints(self) -> int:
        return 4 if self.minor < 35 else 16

    @property
    def split_counters(self) -> bool:
        """Counter sets in slices of their own (1.35+), not beside their devices (1.34)."""
        return self.minor >= 35

    def max_devices(self, advanced: bool) -> int:
        """Devices per slice: 64 from 1.35 when any has taints or consumes counters."""
        return 64 if advanced and self.minor >= 35 else 128

    @classmethod
    def of_server(cls, rest) -> "Caps":
        """From the server's /version (a rest.Rest)."""
        return cls(int("".join(c for c in rest.server_minor() if c.isdigit()) or 37))


def neuron_taints(counters: dict[str, int] | None, threshold: int = REPAIRABLE_THRESHOLD) -> list[dict]:
    if not counters:
        return []
    out = []
    hit = [m for m, k in (("sram", "sram_ecc_uncorrected"), ("mem", "mem_ecc_uncorrected")) if counters.get(k, 0) > 0]
    if hit:
        out.append({"key": NEURON_ECC, "value": "-".join(hit), "effect": "NoExecute"})
    repairable = counters.get("mem_ecc_repairable_uncorrected", 0)
    if repairable >= threshold:
        out.append({"key": NEURON_REPAIRABLE, "effect": "NoSchedule"})
    elif repairable > 0:
        out.append({"key": NEURON_REPAIRABLE, "effect": "None"})  # informational (dropped before 1.35)
    return out


def efa_taints(counters: dict[str, int] | None) -> list[dict]:
    if counters and counters.get("no_completion_cmds", 0) > 0:
        return [{"key": EFA_UNRESPONSIVE, "effect": "NoExecute"}]
    return []


def fit(devices: list[dict], caps: Caps) -> list[dict]:
    """The devices as this API version accepts their taints: no effect None before 1.35, at most
    caps.max_taints per device (the most severe first). Returns new device dicts."""
    rank = {"NoExecute": 0, "NoSchedule": 1, "None": 2}
    out = []
    for d in devices:
        ts = [dict(t) for t in d.get("taints") or [] if caps.effect_none or t["effect"] != "None"]
        ts = sorted(ts, key=lambda t: rank.get(t["effect"], 3))[:caps.max_taints]
        d = {k: v for k, v in d.items() if k != "taints"}
        out.append({**d, "taints": ts} if ts else d)
    return out


def _same(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("key", "value", "effect"))


def stamp(devices: list[dict], before: list[dict], now: float | None = None) -> list[dict]:
    """Give every taint its timeAdded: the one it had in `before` (the same device, key, value
    and effect), else now. Devices are changed in place and returned."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    old = {d["name"]: d.get("taints") or [] for d in before}
    for d in devices:
        for t in d.get("taints") or []:
            prev = next((p for p in old.get(d["name"], []) if _same(p, t) and p.get("timeAdded")), None)
            t["timeAdded"] = prev["timeAdded"] if prev else when
    return devices
