"""The five platform metrics, per team and per class, from a Ledger (definitions in the README):

  pending        how long workloads waited for their devices (p50, p95, max, in the run's
                 seconds) and what the waiting cost: device-hours waiting x the class's cost
  wrong class    requests denied for class access, plus requests whose shape contradicts the
                 class: a workload that says it uses fewer than half the devices its class
                 allocates (oversized), or more (undersized)
  stranded       free devices no placement of a class's shape can use now (Neuron and EFA)
  interventions  workloads that got their devices only after someone else acted (an admin
                 deleting or deallocating, a quota raised, an eviction); evictions by the
                 device-taint manager, automatic (a driver tainted a fault) or manual (a
                 DeviceTaintRule: maintenance); devices lost to faults (peak, from the samples)
  topology       each allocation's collective bandwidth as a fraction of the best placement on
                 its node (topology.py); below 0.9 is "topology-incorrect but green"
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from fakedev import Truth

from .kit import Kit
from .ledger import ClaimRecord, Ledger

SLOW = 0.9
ALIGN_KIND = {"topology4_id": "topology4", "topology8_id": "topology8", "pcieRoot": "pcieRoot", "numaNode": "numaNode"}


def _align_kind(attr: str) -> str | None:
    name = attr.rpartition("/")[2]
    if name.startswith("devicegroup") and name.endswith("_id"):
        return name[:-3]
    return ALIGN_KIND.get(name)


def stranded_by_class(truths: dict[str, Truth], held: dict[str, dict[str, str]], kit: Kit
                      ) -> tuple[dict[str, int], dict[str, int]]:
    """class -> free Neuron devices (and EFAs, for classes that take EFAs) that no placement of
    the class's shape can use, given what is held now."""
    neuron_out: dict[str, int] = {}
    efa_out: dict[str, int] = {}
    for g in kit.classes.values():
        req_n = next((r for r in g.requests if r.device == "neuron"), None)
        req_e = next((r for r in g.requests if r.device == "efa"), None)
        kind = next((_align_kind(attr) for _, attr in g.constraints if _align_kind(attr)), None)
        s_n = s_e = 0
        for node, truth in truths.items():
            busy = held.get(node, {})
            neurons = [d for d in truth.of_kind("neuron", usable_only=True)]
            efas = [d for d in truth.of_kind("efa", usable_only=True)]
            free_n = [d for d in neurons if d.id not in busy]
            free_e = [d for d in efas if d.id not in busy]
            # "all": every device of the node
            need_n = 0 if req_n is None else (len(neurons) if req_n.count is None else req_n.count)
            need_e = 0 if req_e is None else (len(efas) if req_e.count is None else req_e.count)
            groups: dict[str, tuple[list, list]] = {}
            for d in free_n:
                for gid in (d.align.of(kind) if kind else {"node"}):
                    groups.setdefault(gid, ([], []))[0].append(d)
            for d in free_e:
                for gid in (d.align.of(kind) if kind else {"node"}):
                    groups.setdefault(gid, ([], []))[1].append(d)
            ok_n, ok_e = set(), set()
            for ns, es in groups.values():
                if len(ns) >= need_n and len(es) >= need_e and (need_n or need_e):
                    ok_n |= {d.id for d in ns}
                    ok_e |= {d.id for d in es}
            s_n += sum(1 for d in free_n if d.id not in ok_n) if need_n else 0
            s_e += sum(1 for d in free_e if d.id not in ok_e) if need_e else 0
        neuron_out[g.name] = s_n
        if req_e is not None:
            efa_out[g.name] = s_e
    return neuron_out, efa_out


def wait_of(r: ClaimRecord, end: float) -> float:
    stop = r.allocated if r.allocated is not None else (r.released if r.released is not None else end)
    return max(0.0, stop - r.created)


def waiting_cost(r: ClaimRecord, seconds: float, kit: Kit) -> float:
    """Device-hours waited x the class's price (at least one device: a class of 0 still costs)."""
    g = kit.classes.get(r.klass)
    return seconds / 3600 * max(r.devices_requested, 1) * g.cost_per_device_hour if g else 0.0


def shape_problem(r: ClaimRecord) -> str:
    if r.needs is None or not r.devices_requested:
        return ""
    if r.needs > r.devices_requested:
        return "undersized"
    if r.needs * 2 < r.devices_requested:
        return "oversized"
    return ""


@dataclass
class Row:
    """One team's or one class's metrics."""

    workloads: int = 0
    pending_p50: float = 0.0
    pending_p95: float = 0.0
    pending_max: float = 0.0
    still_pending: int = 0
    pending_cost: float = 0.0
    denied_access: int = 0
    denied_quota: int = 0
    wrong_shape: int = 0
    interventions: int = 0
    evictions_automatic: int = 0  # by a driver's taint: the hardware failed
    evictions_manual: int = 0  # by a DeviceTaintRule: someone drained
    topology_mean: float | None = None
    topology_slow: int = 0
    waits: list[float] = field(default_factory=list, repr=False)

    @property
    def wrong_class(self) -> int:
        return self.denied_access + self.wrong_shape


def _q(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q * 100) - 1]


def compute(ledger: Ledger, kit: Kit) -> dict[str, dict[str, Row]]:
    """{"team": {team: Row}, "class": {class: Row}, "all": {"all": Row}}."""
    out: dict[str, dict[str, Row]] = {"team": {}, "class": {}, "all": {}}

    def rows(team: str, klass: str) -> list[Row]:
        return [out["team"].setdefault(team, Row()), out["class"].setdefault(klass, Row()), out["all"].setdefault("all", Row())]

    fractions: dict[int, list[float]] = {}
    for r in ledger.claims.values():
        w = wait_of(r, ledger.end)
        cost = waiting_cost(r, w, kit)
        for row in rows(r.team, r.klass):
            row.workloads += 1
            row.waits.append(w)
            row.pending_cost += cost
            row.still_pending += r.allocated is None and r.released is None
            row.wrong_shape += bool(shape_problem(r))
            row.interventions += bool(r.unblocked_by)
            if r.evicted is not None:
                row.evictions_manual += r.evicted_by.startswith("rule ")
                row.evictions_automatic += not r.evicted_by.startswith("rule ")
            if r.topology_fraction is not None:
                fractions.setdefault(id(row), []).append(r.topology_fraction)
                row.topology_slow += r.topology_fraction < SLOW
    for d in ledger.denials:
        for row in rows(d.team, d.klass):
            if d.reason == "access":
                row.denied_access += 1
            else:
                row.denied_quota += 1
    for group in out.values():
        for row in group.values():
            row.pending_p50, row.pending_p95 = round(_q(row.waits, 0.5), 3), round(_q(row.waits, 0.95), 3)
            row.pending_max = round(max(row.waits, default=0.0), 3)
            row.pending_cost = round(row.pending_cost, 6)
            fs = fractions.get(id(row))
            row.topology_mean = round(statistics.fmean(fs), 3) if fs else None
    return out


def legacy_alignment(truths: dict[str, Truth], legacy: list[dict], aligned: list[dict]) -> dict:
    """"Alignment lost to legacy requests": the topology fraction (topology.py) that claims made
    for pods asking by count (the scheduler's special claims of extended resources, which carry
    no constraints) get, against the fraction the aligned classes' claims get on the same nodes."""
    from ..judge.identity import truth_id
    from .topology import fraction

    def fractions(claims: list[dict]) -> list[float]:
        out = []
        for c in claims:
            results = (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []
            truth = truths.get(results[0]["pool"]) if results else None
            if truth is None:
                continue
            ids = [truth_id(r["driver"], r["device"]) for r in results]
            kinds = {d.id: d.kind for d in truth.devices}
            out.append(fraction(truth, [i for i in ids if kinds.get(i) == "neuron"], [i for i in ids if kinds.get(i) == "efa"]))
        return out

    mine, theirs = fractions(legacy), fractions(aligned)
    lo = statistics.mean(mine) if mine else None
    hi = statistics.mean(theirs) if theirs else None
    return {"legacy_claims": len(mine), "legacy_fraction": None if lo is None else round(lo, 3),
            "aligned_claims": len(theirs), "aligned_fraction": None if hi is None else round(hi, 3),
            "alignment_lost": None if lo is None or hi is None else round(hi - lo, 3),
            "legacy_below_0_9": sum(1 for f in mine if f < SLOW)}
