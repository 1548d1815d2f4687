"""The platform-team side of a suite: a golden-path kit applied for one test, with its team
namespaces made unique to the test, workloads run as the teams would run them, an admin who
acts (each action a manual intervention), and the five metrics computed from what the cluster
showed meanwhile.

    def test_wrong_team_is_denied_and_counted(dra_platform):
        p = dra_platform("platform/golden-paths.yaml")
        with pytest.raises(Denied):
            p.request_as("inference", "distributed-training")
        assert p.metrics()["team"]["inference"].denied_access == 1
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from kubernetes.client.rest import ApiException

from ..judge.explain import Explanation, explain
from ..kube import Kube, poll_until
from ..platform import kit as kitmod
from ..platform.ledger import Denial, Intervention
from ..platform.metrics import Row, compute
from ..platform.recorder import Recorder
from ..platform.replay import apply_kit, denial_message, workload_pod
from ..platform.trace import Workload


class Denied(Exception):
    """The API server refused a request at admission (access policy or quota)."""


class Platform:
    def __init__(self, kube: Kube, kit_path: str | Path, prefix: str, truths) -> None:
        kit = kitmod.load(kit_path)
        kit.name = f"{kit.name}-{prefix}"
        # Team namespaces unique to the test; cluster-scoped objects (classes, policies) are shared.
        kit.teams = {team: [f"{prefix}-{team}"[:63] for _ in nss[:1]] for team, nss in kit.teams.items()}
        self.kube, self.kit, self.truths = kube, kit, truths
        self.t0 = time.monotonic()
        apply_kit(kube, kit)
        self.recorder = Recorder(kube, kit, truths, lambda: time.monotonic() - self.t0)
        self.recorder.start()
        self.n = 0

    @property
    def ledger(self):
        return self.recorder.ledger

    def ledger_json(self) -> str:
        """The ledger as recorded so far (for a failure bundle)."""
        with self.recorder.lock:
            return self.ledger.to_json()

    def ns(self, team: str) -> str:
        return self.kit.teams[team][0]

    def workload(self, team: str, klass: str, needs: int | None = None, node: str | None = None) -> str:
        """A pod of `team` taking its devices through the class's claim template; returns ns/name."""
        size = self.kit.classes[klass].neuron_devices(whole_node=16)
        name = f"w{self.n}-{klass}"[:63]
        self.n += 1
        pod = workload_pod(Workload(0, 0, team, klass, needs if needs is not None else size), self.ns(team), name)
        if node:
            pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        self.kube.core.create_namespaced_pod(self.ns(team), pod)
        key = f"{self.ns(team)}/{name}"
        self._wait(lambda: key in self.ledger.claims, f"the recorder to see {key}")
        return key

    def request_as(self, team: str, klass: str) -> None:
        """A ResourceClaim of the class in the team's namespace, as copied YAML would ask."""
        name = f"r{self.n}-{klass}"[:63]
        self.n += 1
        try:
            self.kube.res.create_namespaced_resource_claim(self.ns(team), {
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": name, "namespace": self.ns(team)}, "spec": kitmod.claim_spec(self.kit.classes[klass])})
        except ApiException as e:
            if e.status in (403, 422):
                self.ledger.denials.append(Denial(self.recorder.clock(), team, klass, "access", denial_message(e)))
                raise Denied(denial_message(e)) from None
            raise

    # -- outcomes -------------------------------------------------------------------------------------
    def _wait(self, cond, what: str, timeout: float = 60) -> None:
        poll_until(cond, what, timeout)  # the ledger is in-process state: no API to watch

    def allocated(self, key: str, timeout: float = 60):
        def done() -> bool:
            with self.recorder.lock:  # a record is completed under the lock: read it whole
                return self.ledger.claims[key].allocated is not None

        self._wait(done, f"{key} to get its devices", timeout)
        with self.recorder.lock:
            return copy.deepcopy(self.ledger.claims[key])

    def stays_pending(self, key: str, seconds: float = 3) -> None:
        time.sleep(seconds)
        assert self.ledger.claims[key].allocated is None, f"{key} got devices: {self.ledger.claims[key]}"

    def evicted(self, key: str, timeout: float = 30):
        """Wait until the ledger records the workload's eviction by the device-taint manager."""
        self._wait(lambda: self.ledger.claims[key].evicted_by != "", f"{key} evicted by a device taint", timeout)
        with self.recorder.lock:
            return copy.deepcopy(self.ledger.claims[key])

    def quota_denied(self, key: str, timeout: float = 30) -> Denial:
        self._wait(lambda: any(d.reason == "quota" and key.split("/")[1] in d.message for d in self.ledger.denials),
                   f"a quota denial for {key}", timeout)
        return next(d for d in self.ledger.denials if d.reason == "quota" and key.split("/")[1] in d.message)

    def explain(self, key: str) -> Explanation:
        ns, pod = key.split("/")
        claims, _ = self.kube.list("ResourceClaimAll")
        mine = next(c for c in claims if c["metadata"]["namespace"] == ns and any(
            o.get("name") == pod for o in c["metadata"].get("ownerReferences") or []))
        return explain(mine, self.truths, claims, self.kube.list("DeviceClass")[0], slices=self.kube.list("ResourceSlice")[0])

    # -- people ---------------------------------------------------------------------------------------
    def finish(self, key: str) -> None:
        """The owner's job ends: its pod goes (not an intervention)."""
        ns, name = key.split("/")
        self.kube.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)

    def admin_delete(self, key: str, why: str = "") -> None:
        """An admin removes someone else's workload: a manual intervention."""
        self.ledger.interventions.append(Intervention(self.recorder.clock(), "admin", "delete-pod", key, why))
        self.finish(key)

    def admin_raise_quota(self, team: str, klass: str, devices: int) -> None:
        g = self.kit.classes[klass]
        self.ledger.interventions.append(Intervention(self.recorder.clock(), "admin", "raise-quota",
                                                      f"{team}/{klass}", f"to {devices}"))
        hard = {f"{g.device_class(k)}.deviceclass.resource.k8s.io/devices": str(devices) for k in {r.device for r in g.requests}}
        self.kube.core.patch_namespaced_resource_quota(f"gp-{klass}", self.ns(team), {"spec": {"hard": hard}})

    def metrics(self) -> dict[str, dict[str, Row]]:
        self.recorder.sample()
        with self.recorder.lock:  # the informers may be adding records meanwhile
            self.ledger.end = self.recorder.clock()
            return compute(self.ledger, self.kit)

    def close(self) -> None:
        self.recorder.stop()
        for nss in self.kit.teams.values():
            for ns in nss:
                try:
                    self.kube.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
                    # claims made with request_as belong to no pod: nothing else removes them
                    self.kube.res.delete_collection_namespaced_resource_claim(ns)
                except ApiException:
                    pass
        for nss in self.kit.teams.values():
            for ns in nss:
                try:
                    self.kube.wait("Pod", lambda lst: not lst["items"], namespace=ns, timeout=60, what=f"pods of {ns} gone")
                    self.kube.wait("ResourceClaim", lambda lst: not lst["items"], namespace=ns, timeout=60,
                                   what=f"claims of {ns} gone")
                    self.kube.core.delete_namespace(ns)
                except ApiException:
                    pass


__all__ = ["Denied", "Platform"]
