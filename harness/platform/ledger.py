"""What happened to a platform's claims, in the order the cluster showed it: the record the five
metrics are computed from. Times are seconds of the run's clock (a replay's trace time)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ClaimRecord:
    key: str  # namespace/name
    team: str
    klass: str  # golden path, "" when the claim uses none
    created: float
    devices_requested: int = 0  # Neuron devices the class allocates (all: the node's)
    needs: int | None = None  # Neuron devices the workload says it uses (dra-harness.io/needs-devices)
    allocated: float | None = None
    released: float | None = None
    node: str = ""
    neuron: list[str] = field(default_factory=list)  # truth ids
    efa: list[str] = field(default_factory=list)
    topology_fraction: float | None = None  # topology.fraction at allocation
    unblocked_by: str = ""  # the intervention after which it was allocated, if any
    evicted: float | None = None  # when the device-taint eviction controller evicted its pod
    evicted_by: str = ""  # "driver taint" (automatic: a fault) or "rule NAME" (manual: maintenance)


@dataclass
class Denial:
    t: float
    team: str
    klass: str
    reason: str  # "access" (admission policy) | "quota"
    message: str


@dataclass
class Failure:
    """A request the API server refused for a reason that is neither access nor quota, after
    transient errors were retried: kept, so a run's counts add up and the reason is visible."""
    t: float
    team: str
    klass: str
    name: str
    status: int
    message: str


@dataclass
class Intervention:
    t: float
    actor: str
    action: str  # delete-pod | delete-claim | deallocate | raise-quota | evict (actor device-taint-manager)
    target: str
    why: str = ""


@dataclass
class Sample:
    t: float
    pending: int
    running: int
    neuron_held: int
    neuron_total: int
    stranded_neuron: dict[str, int]  # class -> free Neuron devices no placement of its shape can use
    stranded_efa: dict[str, int]
    pending_cost: float  # cumulative device-hours waiting x cost
    neuron_lost: int = 0  # Neuron devices their drivers taint NoSchedule/NoExecute (lost to faults)


@dataclass
class Ledger:
    kit: str
    claims: dict[str, ClaimRecord] = field(default_factory=dict)
    denials: list[Denial] = field(default_factory=list)
    interventions: list[Intervention] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    end: float = 0.0
    explanations: dict[str, str] = field(default_factory=dict)  # still-pending claim -> explain's answer
    failures: list[Failure] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def write(self, path: Path) -> None:
        from ..judge.files import write_file

        write_file(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> "Ledger":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, d: dict) -> "Ledger":
        return cls(kit=d["kit"], claims={k: ClaimRecord(**v) for k, v in d["claims"].items()},
                   denials=[Denial(**x) for x in d["denials"]], interventions=[Intervention(**x) for x in d["interventions"]],
                   samples=[Sample(**x) for x in d["samples"]], end=d["end"], explanations=d.get("explanations", {}),
                   failures=[Failure(**x) for x in d.get("failures", [])])
