"""Replay a workload trace against a cluster faster than real time and record the metrics.

Each workload becomes a pod in a namespace of its team, taking its devices through its class's
ResourceClaimTemplate (so quota, priority and admission apply as they would), and is deleted
`duration` trace-seconds after it got them. A workload whose team may not use its class asks
the way a user copying YAML would, with a ResourceClaim of the class's DeviceClass, and is
denied at admission. With `evict_after`, an on-call admin deletes lower-priority work on one
node for a workload pending that long: the manual intervention the metrics count.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fakedev import Truth
from kubernetes.client.rest import ApiException

from ..judge.explain import explain
from ..kube import Kube, retrying, transient
from . import kit as kitmod
from .ledger import Denial, Failure, Intervention, Ledger
from .recorder import NEEDS_ANNOTATION, RUN_LABEL, Recorder
from .trace import Trace, Workload

log = logging.getLogger("replay")
SAMPLE_EVERY = 1.0  # real seconds


@dataclass
class Running:
    workload: Workload
    key: str  # namespace/pod


def workload_pod(w: Workload, ns: str, name: str, run: str = "") -> dict:
    """The pod a workload runs as: its class's claim template, priority and `needs` annotation,
    labelled with the replay run that made it."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "annotations": {NEEDS_ANNOTATION: str(w.needs)},
                         "labels": {kitmod.CLASS_LABEL: w.klass, RUN_LABEL: run}},
            "spec": {"priorityClassName": f"gp-{w.klass}", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "job", "image": "replay", "resources": {"claims": [{"name": "devices"}]}}],
                     "resourceClaims": [{"name": "devices", "resourceClaimTemplateName": w.klass}]}}


def apply_kit(kube: Kube, kit: kitmod.Kit, timeout: float = 30) -> None:
    """Apply the kit and wait until every class's access policy denies an outsider. Each
    ValidatingAdmissionPolicy takes effect on its own, asynchronously: waiting for one (as this
    once did) let a request to another class through in the first second."""
    for o in kitmod.render(kit):
        kube.apply(o)
    deadline = time.monotonic() + timeout
    for g in kit.classes.values():
        outsider = next((t for t in kit.teams if t not in g.teams and kit.teams[t]), None)
        if outsider is None:
            continue
        ns = kit.teams[outsider][0]
        while True:
            probe = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                     "metadata": {"name": f"kit-probe-{g.name}"[:63], "namespace": ns}, "spec": kitmod.claim_spec(g)}
            try:
                kube.res.create_namespaced_resource_claim(ns, probe)
                kube.res.delete_namespaced_resource_claim(probe["metadata"]["name"], ns)
            except ApiException as e:
                if e.status in (403, 422):
                    break
                if not transient(e):
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kit's admission policy gp-{g.name}-access did not take effect within {timeout:.0f} s")
            time.sleep(0.2)


class Replay:
    def __init__(self, kube: Kube, trace: Trace, kit: kitmod.Kit, truths: dict[str, Truth], speed: float,
                 progress: Callable[[str], None] = lambda s: None) -> None:
        self.kube, self.trace, self.kit, self.truths, self.speed = kube, trace, kit, truths, speed
        self.progress = progress
        self.t0 = 0.0
        # this run's label and name part: a replay on a cluster an earlier one used neither
        # collides with its pods nor counts them (reliability-probe-2.md row 49)
        self.run_id = uuid.uuid4().hex[:6]
        self.recorder = Recorder(kube, kit, truths, self.clock, run=self.run_id)
        self.running: dict[str, Running] = {}  # pod key -> workload
        self.evicted_for: set[str] = set()

    def clock(self) -> float:
        """Trace seconds since the replay started."""
        return (time.monotonic() - self.t0) * self.speed

    @property
    def ledger(self) -> Ledger:
        return self.recorder.ledger

    def run(self) -> Ledger:
        """Replay the trace; whatever happens, this run's pods and claims are gone at the end
        (a workload longer than the trace would otherwise stay Running, row 48)."""
        apply_kit(self.kube, self.kit)
        try:
            return self._run()
        finally:
            self.clean_up()

    def clean_up(self, timeout: float = 60) -> None:
        """Delete this run's pods and claims and wait (bounded) until they are gone, so their
        devices are free for whatever runs next."""
        sel = f"{RUN_LABEL}={self.run_id}"
        nss = sorted({ns for nss in self.kit.teams.values() for ns in nss})
        deadline = time.monotonic() + timeout
        while True:
            left = 0
            try:
                for ns in nss:
                    pods = self.kube.core.list_namespaced_pod(ns, label_selector=sel).items
                    if pods:
                        self.kube.core.delete_collection_namespaced_pod(ns, label_selector=sel, grace_period_seconds=0)
                    mine = [c for c in self.kube.res.list_namespaced_resource_claim(ns).items
                            if (c.metadata.labels or {}).get(RUN_LABEL) == self.run_id
                            or any(f"-{self.run_id}-" in o.name for o in c.metadata.owner_references or [])]
                    for c in mine:  # the template claims go with their pods; the rest by name
                        if not c.metadata.owner_references and c.metadata.deletion_timestamp is None:
                            self.kube.res.delete_namespaced_resource_claim(c.metadata.name, ns)
                    left += len(pods) + len(mine)
            except ApiException as e:
                log.warning("cleaning up replay run %s: %s %s", self.run_id, e.status, e.reason)
            except Exception as e:  # the API server gone: say so, do not hang
                log.warning("cleaning up replay run %s: %s", self.run_id, e)
                return
            if not left:
                return
            if time.monotonic() > deadline:
                log.warning("replay run %s: %d pods or claims still present after %.0f s", self.run_id, left, timeout)
                return
            time.sleep(0.5)

    def _run(self) -> Ledger:
        self.t0 = time.monotonic()
        self.recorder.start()
        todo = list(self.trace.workloads)
        next_sample = 0.0
        i = 0
        while True:
            now = self.clock()
            while todo and todo[0].at <= now:
                self._arrive(todo.pop(0), i)
                i += 1
            self._finish_due(now)
            if self.trace.evict_after is not None:
                self._on_call(now)
            if time.monotonic() >= next_sample:
                s = self.recorder.sample()
                next_sample = time.monotonic() + SAMPLE_EVERY
                self.progress(f"t={s.t:7.0f}s  arrived {i}/{len(self.trace.workloads)}  running {s.running}  "
                              f"pending {s.pending}  Neuron held {s.neuron_held}/{s.neuron_total}")
            if now >= self.trace.duration and not todo:
                break
            time.sleep(0.02)
        self.recorder.sample()
        self._explain_pending()
        self.recorder.stop()
        return self.ledger

    def _arrive(self, w: Workload, i: int) -> None:
        name = f"w{i:05d}-{self.run_id}-{w.klass}"[:63].rstrip("-")
        nss = self.kit.teams.get(w.team) or []
        if not nss:  # counted, not skipped: the kit gives this team no namespace to run in
            self.ledger.failures.append(Failure(self.clock(), w.team, w.klass, f"-/{name}", 0,
                                                f"team {w.team} has no namespace in kit {self.kit.name}"))
            return
        ns = nss[0]
        g = self.kit.classes[w.klass]
        try:
            if w.team not in g.teams:  # asks with a claim of the class, as copied YAML would
                retrying(self.kube.res.create_namespaced_resource_claim, ns, {
                    "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                    "metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL: self.run_id}},
                    "spec": kitmod.claim_spec(g)})
                return
            retrying(self.kube.core.create_namespaced_pod, ns, workload_pod(w, ns, name, self.run_id))
            self.running[f"{ns}/{name}"] = Running(w, f"{ns}/{name}")
        except ApiException as e:
            if e.status in (403, 422):
                self.ledger.denials.append(Denial(self.clock(), w.team, w.klass, "access", denial_message(e)))
            else:  # never dropped: counted with its reason (transient errors were retried)
                log.warning("creating %s/%s: %s %s", ns, name, e.status, denial_message(e))
                self.ledger.failures.append(Failure(self.clock(), w.team, w.klass, f"{ns}/{name}", e.status or 0,
                                                    denial_message(e)))
        except Exception as e:  # no answer even after the retries (an API server down): counted too
            log.warning("creating %s/%s: %s", ns, name, e)
            self.ledger.failures.append(Failure(self.clock(), w.team, w.klass, f"{ns}/{name}", 0, str(e)[:300]))

    def _finish_due(self, now: float) -> None:
        for key, run in list(self.running.items()):
            rec = self.ledger.claims.get(key)
            if rec is not None and rec.allocated is not None and rec.allocated + run.workload.duration <= now:
                self._delete(key)

    def _delete(self, key: str) -> None:
        ns, name = key.split("/")
        self.running.pop(key, None)
        try:
            self.kube.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                log.warning("deleting %s: %s", key, e.reason)

    def _on_call(self, now: float) -> None:
        """For a workload pending longer than evict_after: free one node of lower-priority work."""
        for key, rec in list(self.ledger.claims.items()):
            if rec.allocated is not None or rec.released is not None or key in self.evicted_for \
                    or now - rec.created < self.trace.evict_after:
                continue
            mine = self.kit.classes[rec.klass].priority
            lower: dict[str, list[str]] = {}
            for other in list(self.ledger.claims.values()):
                if other.allocated is not None and other.released is None and other.node and \
                        self.kit.classes[other.klass].priority < mine and other.key in self.running:
                    lower.setdefault(other.node, []).append(other.key)
            self.evicted_for.add(key)
            if not lower:
                continue
            node = max(lower, key=lambda n: sum(len(self.ledger.claims[k].neuron) for k in lower[n]))
            for victim in lower[node]:
                self.ledger.interventions.append(Intervention(self.clock(), "admin", "delete-pod", victim,
                                                              f"{key} pending {now - rec.created:.0f}s"))
                self._delete(victim)

    def _explain_pending(self) -> None:
        claims, _ = self.kube.list("ResourceClaimAll")
        classes, _ = self.kube.list("DeviceClass")
        slices = self.kube.list("ResourceSlice")[0]
        for c in claims:
            if (c.get("status") or {}).get("allocation"):
                continue
            owner = next((o["name"] for o in c["metadata"].get("ownerReferences") or [] if o.get("kind") == "Pod"), None)
            key = f"{c['metadata']['namespace']}/{owner}" if owner else None
            if key in self.ledger.claims:
                self.ledger.explanations[key] = str(explain(c, self.truths, claims, classes, slices=slices))


def denial_message(e: ApiException) -> str:
    """The API server's reason for refusing a request (admission policy, quota), one line."""
    import json

    try:
        return json.loads(e.body).get("message", "")[:300]
    except (ValueError, TypeError, AttributeError):
        return str(e.reason)


def write_run(out: Path, ledger: Ledger, trace: Trace, kit: kitmod.Kit, truths: dict[str, Truth], claims: list[dict]) -> None:
    """What `dra-harness report` reads: the ledger, the trace, the kit, the truths, the claims."""
    import json

    from ..judge.files import write_file

    out.mkdir(parents=True, exist_ok=True)
    ledger.write(out / "ledger.json")
    write_file(out / "run.json", json.dumps({"trace": trace.name, "kit": trace.kit, "nodes": trace.nodes,
                                              "speed": None, "truths": {n: t.to_dict() for n, t in truths.items()},
                                              "claims": claims}))
