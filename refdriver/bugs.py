"""Injectable driver bugs: each makes a reference driver wrong in one realistic way, so the
harness's oracle can be proven to catch it (the scheduler happily allocates either way)."""

from __future__ import annotations

BUGS: dict[str, str] = {
    "efa-shift": "the Neuron->EFA map is read shifted by one device: neuron N gets the EFA of N+1 "
                 "(devicegroup ids then pair devices that do not share an EFA group)",
    "wrong-pcie-root": "pcieRoot is taken from the neighbouring device in PCI order, so devices on "
                       "different root complexes look co-located",
    "swapped-numa": "NUMA nodes 0 and 1 are swapped in the numaNode attributes",
    "group-by-probe-order": "devicegroup4/8/16 are computed over devices in PCI probe (BDF) order "
                            "instead of by Neuron index",
    "stale-after-hotplug": "slices are published once and never republished after the tree changes",
    "no-taint-on-ecc": "an uncorrected ECC error is reported as unhealthy but never tainted",
    "taint-neighbour": "a Neuron device's ECC taints are published on the next device by index",
    "taint-time-reset": "a restarted driver stamps its taints with a new timeAdded (the eviction "
                        "deadline moves on every restart)",
    "taint-sticky": "a taint stays after its fault is cleared (until the driver restarts)",
    "bandwidth-doubled": "with --share-efa, a shared EFA's bandwidth capacity is published at twice its "
                         "port rate, so the scheduler over-commits the NIC",
    "share-cdi-collide": "with --share-efa, two shares of one EFA in one claim get one CDI device "
                         "(the second overwrites the first)",
    "partition-no-counters": "with --partition-cores, the core partitions are published without "
                             "consumesCounters, so the scheduler hands one chip's cores out twice",
    "status-neighbour-serial": "the claim's status.devices reports the serial number of the next Neuron "
                               "device by index, not of the prepared one",
}


def check(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in BUGS]
    if unknown:
        raise ValueError(f"unknown bug(s) {', '.join(unknown)}; known: {', '.join(BUGS)}")
    return names
