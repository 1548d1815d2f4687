"""What a test run records for its summary: how long each claim sat pending, each verdict of
the oracle, stranded capacity where a test measured it. One record per run; pytest-xdist
workers hand theirs to the controller as JSON, which merges them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class PendingTime:
    test: str
    claim: str
    seconds: float | None  # None: the harness did not see the claim created


@dataclass
class Judged:
    test: str
    claim: str
    ok: bool
    node: str | None


@dataclass
class StrandedAt:
    test: str
    node: str
    instance_type: str
    neuron: int
    free: int
    stranded: dict[int, int | None]


@dataclass
class RunRecord:
    pending: list[PendingTime] = field(default_factory=list)
    verdicts: list[Judged] = field(default_factory=list)
    stranded: list[StrandedAt] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.pending or self.verdicts or self.stranded)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def merge_json(self, text: str) -> None:
        data = json.loads(text)
        self.pending += [PendingTime(**p) for p in data.get("pending", [])]
        self.verdicts += [Judged(**v) for v in data.get("verdicts", [])]
        self.stranded += [StrandedAt(**{**s, "stranded": {int(k): v for k, v in s["stranded"].items()}})
                          for s in data.get("stranded", [])]
