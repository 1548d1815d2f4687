"""NeuronCores as partitions (KEP-4815, partitionable devices; ../shared/research/dra-features.md
§1.2 and §4.2). A design of ours: AWS's Neuron driver publishes whole devices only and sets the
logical core size per claim (neuron-efa.md §3.4), so a claim cannot ask for two cores of a chip.

With `--partition-cores` each Neuron device N publishes:
  - a counter set `neuron-device-N-counters`: `cores` = its physical NeuronCores (sysfs
    `core_count`: Trn1/Inf2 2, Trn2 8, neuron-efa.md §1) and `memory` = its HBM (§3: 32 GiB on
    V2, 96 GiB on V3), both spent by the devices below;
  - the full device `neuron-device-N`, consuming every core and all the memory;
  - its core groups of the logical core size (LNC: 2 on Trn2, 1 elsewhere, as the driver's
    DEFAULT_LNC; `--partition-lnc` sets it, as an operator sets a node's LNC)
    `neuron-device-N-cores-A-B`, each consuming its cores and their share of memory.
The scheduler then never hands out a full device beside a partition of it, nor two partitions
over more cores than the chip has. Partitions keep the device's attributes (so topology
constraints still hold) with `resourceType: neuron_cores`, `coreStart` and `coreCount`.

The slice shape follows the server (KEP-4815 §Proposal, dra-features.md §1.2): in 1.34 the
counter sets sit in the slices of the devices that consume them; from 1.35 a slice holds either
devices or counter sets, and the counter sets get a slice of their own in the same pool."""

from __future__ import annotations

import copy
import re

COUNTERS = "cores"
MEMORY = "memory"
HBM_GIB = {2: 32, 8: 96}  # by physical cores per device: V2 (Trn1/Inf2), V3 (Trn2) (neuron-efa.md §1, §3)
DEFAULT_LNC = {8: 2}  # physical cores per device -> logical core size (Trn2 LNC=2)
PARTITION_RE = re.compile(r"neuron-device-(?P<index>\d+)-cores-(?P<first>\d+)-(?P<last>\d+)\Z")


def counter_set(index: int) -> str:
    return f"neuron-device-{index}-counters"


def partition_name(index: int, first: int, last: int) -> str:
    return f"neuron-device-{index}-cores-{first}-{last}"


def parse(name: str) -> tuple[int, int, int] | None:
    """(device index, first core, last core) of a partition's name; None for a full device."""
    m = PARTITION_RE.match(name)
    return (int(m["index"]), int(m["first"]), int(m["last"])) if m else None


def _counters(cores: int, gib: int | None) -> dict:
    """Cores (and memory, where the generation's HBM is known) as counter values."""
    counters = {COUNTERS: {"value": str(cores)}}
    if gib is not None:
        counters[MEMORY] = {"value": f"{gib}Gi"}
    return counters


def _consume(index: int, cores: int, gib: int | None) -> list[dict]:
    return [{"counterSet": counter_set(index), "counters": _counters(cores, gib)}]


def partition(devices: list[dict], core_counts: dict[int, int], bugs: list[str] = (),
              lnc: int | None = None) -> tuple[list[dict], list[dict]]:
    """(counter sets, devices): each full device of `devices` (neuron_devices' output) followed
    by its core groups of `lnc` cores (default: the generation's LNC), all consuming the
    device's counter set. `core_counts`: index -> cores. Bug `partition-no-counters` publishes
    the partitions without consumesCounters, so the scheduler may hand one chip's cores out
    twice (the oracle must say so)."""
    sets, out = [], []
    for dev in devices:
        index = dev["attributes"]["deviceId"]["int"]
        cores = core_counts.get(index, 0)
        if cores < 1:
            out.append(dev)
            continue
        gib = HBM_GIB.get(cores)
        sets.append({"name": counter_set(index), "counters": _counters(cores, gib)})
        full = copy.deepcopy(dev)
        full["attributes"].update(coreStart={"int": 0}, coreCount={"int": cores})
        full["consumesCounters"] = _consume(index, cores, gib)
        out.append(full)
        size = lnc or DEFAULT_LNC.get(cores, 1)
        if cores % size:
            size = 1  # a logical core size the chip does not divide into: single cores
        for first in range(0, cores - size + 1, size):
            part = copy.deepcopy(dev)
            part["name"] = partition_name(index, first, first + size - 1)
            part["attributes"].update(resourceType={"string": "neuron_cores"}, coreStart={"int": first},
                                      coreCount={"int": size})
            if "partition-no-counters" not in bugs:
                part["consumesCounters"] = _consume(index, size, gib * size // cores if gib is not None else None)
            out.append(part)
    return sets, out


def device_index(name: str) -> int | None:
    """The Neuron device a published device lies on: neuron-device-N or one of its partitions."""
    p = parse(name)
    if p:
        return p[0]
    m = re.fullmatch(r"neuron-device-(\d+)", name)
    return int(m[1]) if m else None


def cores_of(name: str, core_count: int) -> range:
    """The physical cores a device hands to the workload: a partition's group, or all of them."""
    p = parse(name)
    return range(p[1], p[2] + 1) if p else range(core_count)
