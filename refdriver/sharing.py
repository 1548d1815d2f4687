"""EFA sharing by consumable capacity (KEP-5075; ../shared/research/dra-features.md §1.3): an
EFA is published with `allowMultipleAllocations` and a `bandwidth` capacity equal to its port
rate, with a request policy, so several claims can each hold a share of one NIC.

The default share is the whole EFA unless told otherwise: a request that names no bandwidth
consumes the policy's default (API doc of CapacityRequestPolicy.default), so a driver that
turns sharing on must not silently make yesterday's exclusive claims share a NIC. Claims that
want a share ask for it (`capacity.requests.bandwidth`), as the kit's sharing classes do."""

from __future__ import annotations

import re
from dataclasses import dataclass

CAPACITY = "bandwidth"  # in the driver's domain: CEL device.capacity["dra.net"].bandwidth
UNIT = "G"  # Gbit/s as a decimal quantity: "100G"
_RATE_RE = re.compile(r"\s*(\d{1,5})(?:\.\d+)?\s*Gb/sec")  # at most 99999 Gbit/s: a quantity the API takes


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class SharePolicy:
    """The request policy of every shared EFA, in Gbit/s; default None: the EFA's whole rate."""

    default_gbps: int | None = None
    step_gbps: int = 5
    min_gbps: int = 5

    def check(self) -> "SharePolicy":
        if self.step_gbps < 1 or self.min_gbps < 1:
            raise PolicyError("--efa-share-step and --efa-share-min must be at least 1 (Gbit/s)")
        if self.default_gbps is not None and (self.default_gbps < self.min_gbps or
                                              (self.default_gbps - self.min_gbps) % self.step_gbps):
            raise PolicyError(f"--efa-share-default {self.default_gbps} must be --efa-share-min ({self.min_gbps}) "
                              f"plus a multiple of --efa-share-step ({self.step_gbps})")
        return self

    def capacity(self, rate_gbps: int) -> dict | None:
        """The device's capacity entry, or None when the rate does not fit the policy (the EFA
        is then published unshared: a policy the API server refuses would withdraw the pool)."""
        top = self.min_gbps + (rate_gbps - self.min_gbps) // self.step_gbps * self.step_gbps
        if rate_gbps < self.min_gbps or (self.default_gbps or 0) > top:
            return None
        default = top if self.default_gbps is None else self.default_gbps
        return {CAPACITY: {"value": q(rate_gbps), "requestPolicy": {
            "default": q(default), "validRange": {"min": q(self.min_gbps), "max": q(top), "step": q(self.step_gbps)}}}}


def q(gbps: int) -> str:
    return f"{gbps}{UNIT}"


def parse_rate(text: str | None) -> int | None:
    """ports/1/rate ("100 Gb/sec (4X EDR)", ib_sysfs's format) -> 100; None when unreadable."""
    m = _RATE_RE.match(text or "")
    return int(m.group(1)) if m else None


def share(device: dict, rate_gbps: int | None, policy: SharePolicy, bugs: list[str] = ()) -> None:
    """Make a published EFA shareable in place (nothing when its rate is unknown)."""
    if rate_gbps is None:
        return
    if "bandwidth-doubled" in bugs:
        rate_gbps *= 2
    cap = policy.capacity(rate_gbps)
    if cap is not None:
        device["allowMultipleAllocations"] = True
        device["capacity"] = cap


def cdi_name(device: str, share_id: str | None, bugs: list[str] = ()) -> str:
    """The per-claim CDI device name of one prepared device: one per share, since two shares of
    one EFA in one claim are two devices to the kubelet (dra-features.md §1.3 "Kubelet")."""
    if share_id and "share-cdi-collide" not in bugs:
        return f"{device}-{share_id}"
    return device
