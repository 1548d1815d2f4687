"""Fills a Ledger from what the cluster shows: pods of golden-path workloads (by their claim
template), their claims' allocations (watched, so pending time has the watch's resolution, not
the API's one-second timestamps), quota denials from the resource-claim controller's events,
and samples of pending work and stranded capacity.

Three informers (pods, claims, events) feed one join. They deliver in no order relative to each
other: a claim's allocation can arrive before its pod, a quota event before either, a re-list
can replace a stream. So each handler only records what its own stream says (first sighting,
first allocation, denial) and then joins by pod; whichever stream arrives last completes the
record. Nothing depends on which came first, and a record is made once per pod."""

from __future__ import annotations

import logging
import re
import threading
from typing import Callable

from fakedev import Truth

from ..judge.identity import allocations, holders
from ..kube import Kube
from ..kube.informer import Informer, start
from .kit import Kit
from .ledger import ClaimRecord, Denial, Intervention, Ledger, Sample
from .metrics import stranded_by_class, waiting_cost
from .topology import fraction

log = logging.getLogger("recorder")
RUN_LABEL = "dra-harness.io/replay-run"
NO_TEAM = "(no team)"  # a namespace no team of the kit owns
_GOLDEN = re.compile(r"golden path (\S+) is for teams")


def access_denial(message: str) -> str | None:
    """The class a kit admission policy refused in `message` (a golden path's name, or
    `driver-class` for the reserving policy), else None: so every route's denial counts as a
    wrong-class request, not only a claim's (reliability-probe-2.md, issue 20 item 1)."""
    m = _GOLDEN.search(message)
    if m:
        return m[1].rstrip(";")
    if "driver DeviceClasses are reserved" in message:
        return "driver-class"
    return None


NEEDS_ANNOTATION = "dra-harness.io/needs-devices"


def _owner_pod(obj: dict) -> str | None:
    md = obj["metadata"]
    owner = next((o["name"] for o in md.get("ownerReferences") or [] if o.get("kind") == "Pod"), None)
    return f"{md['namespace']}/{owner}" if owner else None


def _evicted_by_taint(pod: dict) -> bool:
    return any(c.get("type") == "DisruptionTarget" and c.get("reason") == "DeletionByDeviceTaintManager"
               for c in (pod.get("status") or {}).get("conditions") or [])


class Recorder:
    def __init__(self, kube: Kube, kit: Kit, truths: dict[str, Truth], clock: Callable[[], float],
                 run: str | None = None) -> None:
        self.kube, self.kit, self.truths, self.clock = kube, kit, truths, clock
        self.run = run  # only pods labelled with this replay run (an earlier run's are not this one's)
        self.ledger = Ledger(kit=kit.name)
        self.team_of = {ns: team for team, nss in kit.teams.items() for ns in nss}
        # what a class taking "all" devices asks for: the largest node's Neuron devices
        self.node_neurons = max((len(t.of_kind("neuron", usable_only=True)) for t in truths.values()), default=0)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.claims: dict[str, dict] = {}  # ns/name -> claim (current)
        # the join's memory, by pod: first sighting on any stream, first allocation seen (kept
        # after the claim is gone, so a pod seen late still gets it), a denial waiting for its pod
        self.first_seen: dict[str, float] = {}
        self.allocation_of: dict[str, tuple[float, str, dict]] = {}  # pod -> (time, claim key, claim)
        self.denial_for: dict[str, str] = {}
        self.quota_seen: set[str] = set()
        self.access_seen: set[tuple[str, str]] = set()
        self.informers = [Informer(kube, "PodAll", self._pod), Informer(kube, "ResourceClaimAll", self._claim),
                          Informer(kube, "EventAll", self._event)]

    def start(self, sync_timeout: float = 30) -> None:
        """Start the informers and return once each has listed (as WaitForCacheSync)."""
        start(self.informers, self.stop_event, sync_timeout)

    def stop(self) -> None:
        self.stop_event.set()
        self.ledger.end = self.clock()

    # -- the three streams ------------------------------------------------------------------------------
    def _pod(self, typ: str, pod: dict) -> None:
        md = pod["metadata"]
        team = self.team_of.get(md["namespace"])
        tmpl = next((rc.get("resourceClaimTemplateName") for rc in pod["spec"].get("resourceClaims") or []), None)
        if team is None or tmpl not in self.kit.classes:
            return
        if self.run is not None and (md.get("labels") or {}).get(RUN_LABEL) != self.run:
            return
        key = f"{md['namespace']}/{md['name']}"
        with self.lock:
            now = self.clock()
            rec = self.ledger.claims.get(key)
            if rec is None:
                g = self.kit.classes[tmpl]
                needs = (md.get("annotations") or {}).get(NEEDS_ANNOTATION)
                rec = self.ledger.claims[key] = ClaimRecord(
                    key=key, team=team, klass=tmpl, created=self.first_seen.setdefault(key, now),
                    devices_requested=g.neuron_devices(self.node_neurons),
                    needs=int(needs) if needs and needs.isdigit() else None)
                if key in self.denial_for:
                    self._deny(key, rec, self.denial_for.pop(key))
            if rec.released is None and (typ == "DELETED" or md.get("deletionTimestamp")):
                rec.released = now
            evicting = rec.evicted is None and _evicted_by_taint(pod)
            if evicting:
                rec.evicted = now
            self._join(key)
        if evicting:  # outside the lock: which taint it was takes a look at the rules
            self._eviction(key, rec)

    def _eviction(self, key: str, rec: ClaimRecord) -> None:
        """An eviction by the device-taint manager: automatic when its devices' drivers tainted
        them (a fault), manual when a DeviceTaintRule (an admin's maintenance) selects one."""
        seen = self.allocation_of.get(key)
        devices = {(r["driver"], r["pool"], r["device"]) for _, _, r, _ in allocations([seen[2]])} if seen else set()
        try:
            rules = self.kube.taint_rules()
        except Exception as e:  # the ledger keeps the eviction either way
            log.warning("cannot read DeviceTaintRules: %s", e)
            rules = []
        by = next((f"rule {r['metadata']['name']}" for r in rules
                   if (r["spec"].get("taint") or {}).get("effect") == "NoExecute"
                   and (sel := r["spec"].get("deviceSelector")) is not None
                   and any(all(sel.get(f) in (None, v) for f, v in zip(("driver", "pool", "device"), d)) for d in devices)),
                  "driver taint")
        with self.lock:
            rec.evicted_by = by
            self.ledger.interventions.append(Intervention(rec.evicted, "device-taint-manager", "evict", key, by))

    def _claim(self, typ: str, claim: dict) -> None:
        md = claim["metadata"]
        ckey = f"{md['namespace']}/{md['name']}"
        pod = _owner_pod(claim)
        with self.lock:
            now = self.clock()
            if typ == "DELETED":
                self.claims.pop(ckey, None)
                return
            self.claims[ckey] = claim
            if pod is None:
                return
            self.first_seen.setdefault(pod, now)
            if pod not in self.allocation_of and any(True for _ in allocations([claim])):
                self.allocation_of[pod] = (now, ckey, claim)
            self._join(pod)

    def _event(self, typ: str, ev: dict) -> None:
        if typ == "DELETED":
            return
        obj = ev.get("involvedObject") or {}
        key = f"{obj.get('namespace')}/{obj.get('name')}"
        message = ev.get("message", "")
        if obj.get("kind") == "Pod" and ev.get("reason") in ("FailedScheduling", "FailedResourceClaimCreation"):
            route = access_denial(message)
            if route is not None:  # a pod's own route refused by the kit (an extended resource, a template)
                self._deny_access(key, obj.get("namespace", ""), route, message)
                return
        if ev.get("reason") != "FailedResourceClaimCreation" or "exceeded quota" not in message:
            return
        if obj.get("namespace") not in self.team_of:
            return
        with self.lock:
            rec = self.ledger.claims.get(key)
            if rec is None:  # the pod's stream is behind: the denial waits for it
                self.denial_for.setdefault(key, ev["message"])
            else:
                self._deny(key, rec, ev["message"])

    def _deny_access(self, key: str, ns: str, klass: str, message: str) -> None:
        """Once per pod and class: the scheduler says it again on every retry."""
        with self.lock:
            if (key, klass) in self.access_seen:
                return
            self.access_seen.add((key, klass))
            self.ledger.denials.append(Denial(self.clock(), self.team_of.get(ns, NO_TEAM), klass, "access", message[:300]))

    # -- the join ---------------------------------------------------------------------------------------
    def _deny(self, key: str, rec: ClaimRecord, message: str) -> None:
        if key not in self.quota_seen:
            self.quota_seen.add(key)
            self.ledger.denials.append(Denial(self.clock(), rec.team, rec.klass, "quota", message[:300]))

    def _join(self, pod: str) -> None:
        """Complete a pod's record from its claim's first allocation, once both are known."""
        rec = self.ledger.claims.get(pod)
        seen = self.allocation_of.get(pod)
        if rec is None or seen is None or rec.allocated is not None:
            return
        t, ckey, claim = seen
        results = [(r, tid) for _, _, r, tid in allocations([claim])]
        allocated = max(t, rec.created)
        rec.node = results[0][0]["pool"]
        for r, tid in results:
            if tid:
                (rec.neuron if r["driver"] == "neuron.aws.com" else rec.efa).append(tid)
        truth = self.truths.get(rec.node)
        if truth is not None and rec.neuron:
            rec.topology_fraction = fraction(truth, rec.neuron, rec.efa, self._efa_sharers(ckey, rec.node))
        last = self.ledger.interventions[-1] if self.ledger.interventions else None
        if last and rec.created < last.t <= allocated:
            rec.unblocked_by = f"{last.action} {last.target}"
        rec.allocated = allocated  # last: a reader polling `allocated` sees a complete record

    def _neuron_lost(self) -> int:
        """Neuron devices of this run's nodes that their driver taints NoSchedule or NoExecute."""
        try:
            slices, _ = self.kube.list("ResourceSlice", field_selector="spec.driver=neuron.aws.com")
        except Exception as e:  # a sample without the count rather than none
            log.warning("cannot list slices: %s", e)
            return 0
        return sum(1 for sl in slices if sl["spec"].get("nodeName") in self.truths for d in sl["spec"].get("devices") or []
                   if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in d.get("taints") or []))

    def _efa_sharers(self, own: str, node: str) -> dict[str, int]:
        """EFA id -> how many other current claims hold it on `node` (EFAs may be shared by rule;
        ids are PCI addresses, the same on every node of a type)."""
        # a claim being deleted no longer holds its devices for the scheduler (it may hand them on
        # before the claim is gone), nor for this count
        others = [c for key, c in self.claims.items() if key != own and not c["metadata"].get("deletionTimestamp")]
        count: dict[str, int] = {}
        for _, _, r, tid in allocations(others):
            if r["driver"] == "dra.net" and r["pool"] == node:
                count[tid] = count.get(tid, 0) + 1
        return count

    # -- samples -------------------------------------------------------------------------------------
    def sample(self) -> Sample:
        """Pending and running workloads, held and stranded capacity now; appended to the ledger."""
        with self.lock:
            claims = list(self.claims.values())
            recs = list(self.ledger.claims.values())
        now = self.clock()
        held = holders(claims)
        total = sum(len(t.of_kind("neuron", usable_only=True)) for t in self.truths.values())
        n_held = sum(1 for node in held.values() for tid in node if tid.startswith("neuron"))
        neuron, efa = stranded_by_class(self.truths, held, self.kit)
        prev = self.ledger.samples[-1] if self.ledger.samples else None
        waiting = [r for r in recs if r.allocated is None and r.released is None]
        cost = prev.pending_cost if prev else 0.0
        if prev:
            cost += sum(waiting_cost(r, now - prev.t, self.kit) for r in waiting)
        s = Sample(now, len(waiting), sum(1 for r in recs if r.allocated is not None and r.released is None),
                   n_held, total, neuron, efa, round(cost, 4), self._neuron_lost())
        self.ledger.samples.append(s)
        return s
