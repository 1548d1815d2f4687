"""A driver's report card (`dra-harness conform --driver PROFILE`): the seven behaviours of the
proposed upstream DRA driver conformance suite (KEP-5970, kubernetes/enhancements#5970:
registration, slices, allocation, prepare, pod running, unprepare, reuse; research/anchors-2026.md
§1 row 1) and what only an oracle that knows the hardware can judge: identity, alignment of every
intent the driver publishes, hotplug, faults, sharing, partitions and claim device status.

The checks are pytest tests (suite.py) run by the harness's own plugin against one driver profile
on a cluster of fake nodes; the card (card.py) reads their JUnit report. A check that does not
apply to a driver says "not applicable" and why (a skip), never pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUITE = Path(__file__).with_name("suite.py")


@dataclass(frozen=True)
class Check:
    name: str  # the test's name without test_
    part: str  # "contract" (KEP-5970) or "oracle"
    what: str  # one line: what passing means
    catches: tuple[str, ...] = ()  # the reference drivers' injectable bugs this check fails on (refdriver bugs)


CHECKS: tuple[Check, ...] = (
    Check("registration", "contract", "the node's kubelet registered the driver's plugin"),
    Check("slices", "contract", "ResourceSlices of the node: complete pools, unique device names"),
    Check("allocation", "contract", "the scheduler allocates a device of the driver's class on the node"),
    Check("prepare", "contract", "NodePrepareResources gives every allocated device its own CDI device"),
    Check("pod_running", "contract", "the pod using the claim runs"),
    Check("unprepare", "contract", "the pod's deletion unprepares its devices (CDI specs and status gone)"),
    Check("reuse", "contract", "released devices are allocated and prepared again (every device of the class)"),
    Check("identity", "oracle", "every device maps to one real device; every real device is published once",
          ("partition-no-counters",)),
    Check("alignment", "oracle", "every group of every topology attribute is really together; claims judged ALIGNED",
          ("efa-shift", "wrong-pcie-root", "swapped-numa", "group-by-probe-order")),
    Check("hotplug", "oracle", "a removed device is withdrawn, a re-added one published again",
          ("stale-after-hotplug",)),
    Check("faults", "oracle", "a broken device is tainted (or withdrawn), nothing else; healed, untainted; "
          "a restart keeps timeAdded", ("no-taint-on-ecc", "taint-neighbour", "taint-sticky", "taint-time-reset")),
    Check("sharing", "oracle", "a shared device's capacity is the hardware's, shares are distinct CDI devices, "
          "never over-committed", ("bandwidth-doubled", "share-cdi-collide")),
    Check("partitions", "oracle", "a whole device and a partition of it are never allocated together",
          ("partition-no-counters",)),
    Check("claim_status", "oracle", "status.devices is true to the allocation and the hardware",
          ("status-neighbour-serial",)),
)
BY_NAME = {c.name: c for c in CHECKS}
