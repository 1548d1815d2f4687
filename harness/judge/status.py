"""A claim's `status.devices` (KEP-4817; dra-features.md §1.5, §4.5), judged against the allocation
and the truth. Drivers write these entries for what they prepared; users and tools read them
(a serial number to find the chip, an interface to configure). The oracle holds them to:
  - the allocation: one entry per allocated device (and share), none for anything else (the API
    server checks the device is allocated; the key with shareID, and duplicates, are ours);
  - the hardware: a Neuron entry's `serial` is the serial of the chip the device lies on; an EFA
    entry carries no `networkData`, since an EFA-only function has no interface or address, and
    its `rdmaDevice`, when given, is the function's RDMA device.
Entries of devices the oracle cannot map (a driver with no identity) are checked against the
allocation only."""

from __future__ import annotations

from fakedev import TruthDevice


def _key(x: dict) -> tuple:
    return x.get("driver"), x.get("pool"), x.get("device"), x.get("shareID") or ""


def check(claim: dict, results: list[dict], mapped: list[tuple[dict, TruthDevice]], reasons: list[str],
          checks: list[str]) -> None:
    """`mapped`: the allocation results the oracle mapped to the hardware, with their devices."""
    entries = (claim.get("status") or {}).get("devices") or []
    if not entries:
        return
    allocated = {_key(r) for r in results}
    device_of = {_key(r): d for r, d in mapped}
    seen: set[tuple] = set()
    good = 0
    for e in entries:
        key, name = _key(e), f"{e.get('driver')}/{e.get('device')}" + (f" share {e['shareID']}" if e.get("shareID") else "")
        if key in seen:
            reasons.append(f"status.devices lists {name} twice")
            continue
        seen.add(key)
        if key not in allocated:
            reasons.append(f"status.devices has an entry for {name}, which is not allocated to this claim")
            continue
        dev = device_of.get(key)
        data = e.get("data") or {}
        bad = False
        if dev is not None and dev.kind == "neuron" and "serial" in data and data["serial"] != dev.serial:
            reasons.append(f"status.devices says {name} is the chip with serial {data['serial']!r}, but it lies on "
                           f"{dev.id}, serial {dev.serial!r}")
            bad = True
        if dev is not None and dev.kind == "efa":
            if e.get("networkData"):
                reasons.append(f"status.devices gives {name} networkData {e['networkData']}, but an EFA-only "
                               f"function ({dev.id}) has no interface or address")
                bad = True
            if data.get("rdmaDevice") and data["rdmaDevice"] != dev.rdma:
                reasons.append(f"status.devices names RDMA device {data['rdmaDevice']!r} for {name}, but {dev.id} "
                               f"is {dev.rdma!r}")
                bad = True
        good += not bad
    if good == len(entries):
        missing = len(allocated - seen)
        checks.append(f"status.devices: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} true to the allocation "
                      f"and the hardware" + (f" ({missing} allocated device(s) without one yet)" if missing else ""))
