"""The platform recorder misses nothing, whatever order its three watches deliver in.

Bursts of claims are allocated by the real scheduler on a 2-node local cluster while the
recorder's watch streams are held back by different delays (every ordering of pods, claims and
events), broken between two updates (re-watch from the last resourceVersion) or answered with
410 Gone (re-list). Every allocation must be recorded exactly once, with the devices the API
server shows, and the one claim the quota refuses must be recorded as denied. The fault
injection wraps the real client (`Delayed`); nothing of the API server is faked."""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid

import pytest

from harness.judge.identity import allocations
from harness.kube import Kube, poll_until
from harness.platform import kit as kitmod
from harness.platform.recorder import Recorder
from harness.platform.replay import apply_kit, workload_pod
from harness.platform.trace import Workload

from .conftest import local_cluster

BURST = 32  # both nodes' Neuron devices; the quota lets 31 through
KIT = """kit: stress
teams:
  stress: {namespaces: [stress]}
classes:
  one:
    requests:
      - {name: neuron, device: neuron, count: 1, logical_neuron_core: 1}
    teams: [stress]
    quota: {stress: 31}
    cost_per_device_hour: 1
    priority: 1000
"""
STREAMS = ("PodAll", "ResourceClaimAll", "EventAll")


class Delayed:
    """A client whose watch streams are late by `delay[kind]` seconds per event (a delay line:
    order within a stream is kept), and which can end a stream after `cut[kind]` events (a
    connection closed between two updates) or answer 410 Gone after `gone[kind]` events."""

    def __init__(self, kube: Kube, delay: dict[str, float], cut: dict[str, int] | None = None,
                 gone: dict[str, int] | None = None) -> None:
        self.kube, self.delay, self.cut, self.gone = kube, delay, cut or {}, gone or {}
        self.injected = {"cut": 0, "gone": 0}

    def list(self, kind, namespace=None, **kw):
        return self.kube.list(kind, namespace=namespace, **kw)

    def stream(self, kind, namespace, rv, timeout, **kw):
        line: queue.Queue = queue.Queue()

        def pump():
            try:
                for ev in self.kube.stream(kind, namespace, rv, timeout, **kw):
                    line.put((time.monotonic(), ev))
                line.put(None)
            except Exception as e:  # handed to the reader, as the stream itself would raise it
                line.put(e)

        threading.Thread(target=pump, daemon=True).start()
        n = 0
        while (item := line.get()) is not None:
            if isinstance(item, Exception):
                raise item
            t, ev = item
            time.sleep(max(0.0, t + self.delay.get(kind, 0.0) - time.monotonic()))
            n += 1
            if n == self.gone.get(kind):
                self.injected["gone"] += 1
                yield "ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
                return
            if n == self.cut.get(kind):
                self.injected["cut"] += 1
                return
            yield ev


def _orderings() -> list[tuple[str, dict, dict, dict]]:
    """Every order of the three streams (each one most late once, each first once), then a
    stream cut between updates and a 410 Gone on the claims and the pods."""
    out = []
    for perm in itertools.permutations(STREAMS):
        delay = {kind: 0.5 * i for i, kind in enumerate(perm)}
        out.append((">".join(k.removesuffix("All") for k in perm), delay, {}, {}))
    out.append(("cut-claims", {"PodAll": 0.5}, {"ResourceClaimAll": 7}, {}))
    out.append(("gone-claims+pods", {"PodAll": 0.3}, {}, {"ResourceClaimAll": 9, "PodAll": 11}))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "st", "trn1.32xlarge,trn1.32xlarge", netns=False)


_wait = poll_until  # the ledger is in-process state: no API to watch


@pytest.mark.slow
def test_every_allocation_is_recorded_once_in_every_watch_order(cluster, tmp_path):
    kube = Kube(str(cluster.kubeconfig))
    truths = cluster.truths()
    (tmp_path / "kit.yaml").write_text(KIT)
    misses = []
    total = 0
    for label, delay, cut, gone in _orderings():
        kit = kitmod.load(tmp_path / "kit.yaml")
        ns = f"st-{uuid.uuid4().hex[:6]}"
        kit.teams = {"stress": [ns]}
        kit.name = ns
        apply_kit(kube, kit)
        source = Delayed(kube, delay, cut, gone)
        t0 = time.monotonic()
        rec = Recorder(source, kit, truths, lambda: time.monotonic() - t0)
        rec.start()
        try:
            for i in range(BURST):
                kube.core.create_namespaced_pod(ns, workload_pod(Workload(0, 0, "stress", "one", 1), ns, f"p{i:02d}"))
            # what the API server says was allocated, independently of the recorder
            got = kube.wait("ResourceClaim", lambda lst: sum(1 for c in lst["items"] if (c.get("status") or {}).get("allocation"))
                            >= BURST - 1, namespace=ns, timeout=120, what=f"{BURST - 1} claims of {ns} allocated")
            truth_alloc = {}
            for c in got["items"]:
                owner = next(o["name"] for o in c["metadata"]["ownerReferences"] if o["kind"] == "Pod")
                ids = [tid for _, _, _, tid in allocations([c])]
                if ids:
                    truth_alloc[f"{ns}/{owner}"] = ids
            total += len(truth_alloc)
            led = rec.ledger

            def caught_up():
                with rec.lock:
                    return (sum(1 for r in led.claims.values() if r.allocated is not None) >= len(truth_alloc)
                            and len(led.denials) >= 1)

            try:
                _wait(caught_up, f"[{label}] the recorder to see {len(truth_alloc)} allocations and 1 denial", 20)
            except AssertionError as e:
                misses.append(str(e))
            with rec.lock:
                recorded = {k: r.neuron for k, r in led.claims.items() if r.allocated is not None}
                unallocated = [k for k, r in led.claims.items() if r.allocated is None]
                denials = [d for d in led.denials if d.reason == "quota"]
            if recorded != truth_alloc:
                misses.append(f"[{label}] recorded {len(recorded)} of {len(truth_alloc)} allocations; missing "
                              f"{sorted(set(truth_alloc) - set(recorded))[:5]}, differing "
                              f"{[k for k in recorded if k in truth_alloc and recorded[k] != truth_alloc[k]][:5]}")
            if len(led.claims) != BURST or len(unallocated) != 1 or len(denials) != 1 \
                    or unallocated[0].split("/")[1] not in denials[0].message:
                misses.append(f"[{label}] {len(led.claims)} records, unallocated {unallocated}, "
                              f"{len(denials)} quota denial(s)")
            for inf in getattr(rec, "informers", []):
                if inf.counts["handler_errors"]:
                    misses.append(f"[{label}] {inf.kind} handler failed {inf.counts['handler_errors']} time(s)")
            if cut and not source.injected["cut"] or gone and not source.injected["gone"]:
                misses.append(f"[{label}] the fault was not injected: {source.injected}")
            # released: every record once its pod is gone
            kube.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
            kube.wait("Pod", lambda lst: not lst["items"], namespace=ns, timeout=60, what=f"the pods of {ns} gone")
            try:
                _wait(lambda: all(r.released is not None for r in list(led.claims.values())),
                      f"[{label}] every record released", 20)
            except AssertionError as e:
                misses.append(str(e))
            kube.wait("ResourceClaim", lambda lst: not lst["items"], namespace=ns, timeout=60, what=f"the claims of {ns} gone")
        finally:
            rec.stop()
            kube.core.delete_namespace(ns)
    assert not misses, "\n".join(misses)
    assert total == len(_orderings()) * (BURST - 1)
