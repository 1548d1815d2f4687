"""Fills a Ledger from what the cluster shows: pods of golden-path workloads (by their claim
template), their claims' allocations (watched, so pending time has the watch's resolution, not
the API's one-second timestamps), quota denials from the resource-claim controller's events,
and samples of pending work and stranded capacity."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from fakedev import Truth

from ..judge.identity import allocations, holders
from ..kube import Kube
from .kit import CLASS_LABEL, Kit
from .ledger import ClaimRecord, Denial, Ledger, Sample
from .metrics import stranded_by_class, waiting_cost
from .topology import fraction

log = logging.getLogger("recorder")
NEEDS_ANNOTATION = "dra-harness.io/needs-devices"


class Recorder:
    def __init__(self, kube: Kube, kit: Kit, truths: dict[str, Truth], clock: Callable[[], float]) -> None:
        self.kube, self.kit, self.truths, self.clock = kube, kit, truths, clock
        self.ledger = Ledger(kit=kit.name)
        self.team_of = {ns: team for team, nss in kit.teams.items() for ns in nss}
        # what a class taking "all" devices asks for: the largest node's Neuron devices
        self.node_neurons = max((len(t.of_kind("neuron", usable_only=True)) for t in truths.values()), default=0)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.claims: dict[str, dict] = {}  # ns/name -> claim (current)
        self.quota_seen: set[str] = set()
        self.threads = [threading.Thread(target=self._watch, args=(k,), name=f"rec-{k}", daemon=True)
                        for k in ("PodAll", "ResourceClaimAll", "EventAll")]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.ledger.end = self.clock()

    # -- watches -------------------------------------------------------------------------------------
    def _watch(self, kind: str) -> None:
        """List once, then watch on from the last resourceVersion seen; a re-list (after an
        error) replaces what was known, so objects deleted meanwhile are not kept."""
        handle = {"PodAll": self._pod, "ResourceClaimAll": self._claim, "EventAll": self._event}[kind]
        rv = None
        while not self.stop_event.is_set():
            try:
                if rv is None:
                    items, rv = self.kube.list(kind)
                    self._relisted(kind, items)
                    for o in items:
                        handle("ADDED", o)
                for typ, o in self.kube.stream(kind, None, rv, 5):
                    if self.stop_event.is_set():
                        return
                    if typ == "ERROR":  # e.g. 410 Gone: the resourceVersion is too old
                        rv = None
                        break
                    rv = o["metadata"].get("resourceVersion", rv)
                    handle(typ, o)
            except Exception as e:  # keep recording across API hiccups (410 Gone included): re-list
                rv = None
                if self.stop_event.is_set():
                    return
                log.warning("%s watch: %s", kind, e)
                self.stop_event.wait(0.2)

    def _relisted(self, kind: str, items: list[dict]) -> None:
        keys = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in items}
        with self.lock:
            if kind == "ResourceClaimAll":
                self.claims = {k: v for k, v in self.claims.items() if k in keys}
            elif kind == "PodAll":
                for rec in self.ledger.claims.values():
                    if rec.key not in keys and rec.released is None:
                        rec.released = self.clock()

    def _pod(self, typ: str, pod: dict) -> None:
        md = pod["metadata"]
        team = self.team_of.get(md["namespace"])
        tmpl = next((rc.get("resourceClaimTemplateName") for rc in pod["spec"].get("resourceClaims") or []), None)
        if team is None or tmpl not in self.kit.classes:
            return
        key = f"{md['namespace']}/{md['name']}"
        with self.lock:
            rec = self.ledger.claims.get(key)
            if rec is None and typ != "DELETED":
                g = self.kit.classes[tmpl]
                needs = (md.get("annotations") or {}).get(NEEDS_ANNOTATION)
                rec = self.ledger.claims[key] = ClaimRecord(
                    key=key, team=team, klass=tmpl, created=self.clock(),
                    devices_requested=g.neuron_devices(self.node_neurons),
                    needs=int(needs) if needs and needs.isdigit() else None)
            if rec and rec.released is None and (typ == "DELETED" or md.get("deletionTimestamp")):
                rec.released = self.clock()

    def _claim(self, typ: str, claim: dict) -> None:
        md = claim["metadata"]
        ckey = f"{md['namespace']}/{md['name']}"
        with self.lock:
            if typ == "DELETED":
                self.claims.pop(ckey, None)
                return
            self.claims[ckey] = claim
            owner = next((o["name"] for o in md.get("ownerReferences") or [] if o.get("kind") == "Pod"), None)
            rec = self.ledger.claims.get(f"{md['namespace']}/{owner}") if owner else None
            results = [(r, tid) for _, _, r, tid in allocations([claim])]
            if rec is None or rec.allocated is not None or not results:
                return
            rec.allocated = self.clock()
            rec.node = results[0][0]["pool"]
            for r, tid in results:
                if tid:
                    (rec.neuron if r["driver"] == "neuron.aws.com" else rec.efa).append(tid)
            truth = self.truths.get(rec.node)
            if truth is not None and rec.neuron:
                rec.topology_fraction = fraction(truth, rec.neuron, rec.efa, self._efa_sharers(ckey, rec.node))
            last = self.ledger.interventions[-1] if self.ledger.interventions else None
            if last and rec.created < last.t <= rec.allocated:
                rec.unblocked_by = f"{last.action} {last.target}"

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

    def _event(self, typ: str, ev: dict) -> None:
        if typ != "ADDED" or ev.get("reason") != "FailedResourceClaimCreation" or "exceeded quota" not in ev.get("message", ""):
            return
        obj = ev["involvedObject"]
        key = f"{obj.get('namespace')}/{obj.get('name')}"
        with self.lock:
            rec = self.ledger.claims.get(key)
            if rec is None or key in self.quota_seen:
                return
            self.quota_seen.add(key)
            self.ledger.denials.append(Denial(self.clock(), rec.team, rec.klass, "quota", ev["message"][:300]))

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
                   n_held, total, neuron, efa, round(cost, 4))
        self.ledger.samples.append(s)
        return s
