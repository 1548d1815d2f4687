"""What a driver prepared, told in the claim's `status.devices` (KEP-4817, GA in 1.37; beta and on
since 1.33; ../shared/research/dra-features.md §1.5 and §4.5).

One entry per prepared device (and share), written by server-side apply under the driver's own
field manager, so each driver owns only its entries, as upstream recommends:
  - a Neuron device or partition: `Ready` (NeuronDeviceReady), and as data its chip's serial
    number, the logical cores the workload sees and the logical core size;
  - an EFA: `Ready` (RDMAOnlyDeviceReady, as DRANET reports a function with no netdev) and as
    data its RDMA device, with no `networkData`: an EFA-only function has no interface or address.
Unprepare withdraws them (an apply of no entries drops what this manager owned).

Writing status.devices needs, from 1.36, `resourceclaims/driver` associated-node (or
arbitrary-node) verbs beside `resourceclaims/status` (DRAResourceClaimGranularStatusAuthorization)."""

from __future__ import annotations

import time


def condition(reason: str, ok: bool = True, message: str = "") -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"type": "Ready", "status": "True" if ok else "False", "reason": reason, "message": message,
            "lastTransitionTime": now}


def entry(result: dict, reason: str, data: dict) -> dict:
    e = {"driver": result["driver"], "pool": result["pool"], "device": result["device"],
         "conditions": [condition(reason)], "data": data}
    if result.get("shareID"):
        e["shareID"] = result["shareID"]
    return e


def body(namespace: str, name: str, entries: list[dict]) -> dict:
    """The apply configuration: only this driver's entries (none, to withdraw them)."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace}, "status": {"devices": entries}}
