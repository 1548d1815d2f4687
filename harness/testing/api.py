"""The small Python API tests use: build claims and pods, create them in the test's namespace,
wait for outcomes (watch-based, with explanations on failure), and judge allocations.

    def test_four_aligned(dra):
        dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 4),
                             match=("resource.aws.com/devicegroup4_id", ["n"])), dra.pod("p", "c"))
        dra.assert_aligned("c")
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from fakedev import Truth, safeyaml

from ..backends.handle import Cluster
from ..judge.capacity import Stranded, stranded
from ..judge.explain import Explanation, explain, scheduler_events
from ..judge.identity import Identity
from ..judge.oracle import Verdict, judge_live
from ..judge.taints import Finding, audit, device_taints
from ..judge.record import Judged, PendingTime, RunRecord, StrandedAt
from ..kube import Kube, WaitTimeout
from ..platform import drain as drainmod


WORKLOAD_IMAGE = os.environ.get("DRA_HARNESS_WORKLOAD_IMAGE", "localhost/dra-harness-refdriver:dev")


class Dra:
    def __init__(self, cluster: Cluster, namespace: str, kube: Kube, record: RunRecord | None = None,
                 test: str = "") -> None:
        self.cluster, self.ns, self.kube = cluster, namespace, kube
        self.record = record if record is not None else RunRecord()
        self.test = test
        self.created: dict[tuple[str, str], float] = {}  # (kind, name) -> monotonic creation time
        self.verdicts: list[Verdict] = []
        # what a failure bundle collects besides the test's namespace: namespaces the test made
        # through the platform side, and their ledgers (name -> a callable giving the ledger's JSON)
        self.namespaces: list[str] = [namespace]
        self.ledgers: dict[str, object] = {}
        self.rules: list[dict] = []  # DeviceTaintRules made by taint_rule(), deleted by cleanup()
        self.faulty: list[tuple[str, str]] = []  # (node, device) broken by fault(), healed by cleanup()
        self.taint_times: dict[tuple, str] = {}  # each taint's timeAdded as first seen (audit)

    # -- builders ---------------------------------------------------------------------------------
    @staticmethod
    def request(name: str, device_class: str, count: int = 1, *, selectors: list[str] = (), all: bool = False,
                admin: bool = False, capacity: dict[str, str] | None = None) -> dict:
        """One `exactly` request; `capacity`: what to consume of a shared device ({"bandwidth": "50G"})."""
        ex: dict = {"deviceClassName": device_class}
        if all:
            ex["allocationMode"] = "All"
        else:
            ex["count"] = count
        if selectors:
            ex["selectors"] = [{"cel": {"expression": s}} for s in selectors]
        if admin:
            ex["adminAccess"] = True
        if capacity:
            ex["capacity"] = {"requests": dict(capacity)}
        return {"name": name, "exactly": ex}

    @staticmethod
    def first_available(name: str, *subs: tuple[str, str, int]) -> dict:
        return {"name": name, "firstAvailable": [{"name": s, "deviceClassName": c, "count": n} for s, c, n in subs]}

    def claim(self, name: str, *requests: dict, match: tuple[str, list[str]] | list | None = None,
              config: list[dict] | None = None, distinct: tuple[str, list[str]] | None = None) -> dict:
        """A claim; `match` (attribute, requests) or a list of them; `distinct`: a distinctAttribute."""
        constraints = []
        for attr, reqs in ([match] if isinstance(match, tuple) else match or []):
            constraints.append({"requests": list(reqs), "matchAttribute": attr})
        if distinct:
            constraints.append({"requests": list(distinct[1]), "distinctAttribute": distinct[0]})
        spec = {"devices": {"requests": list(requests), "constraints": constraints, "config": config or []}}
        return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": name, "namespace": self.ns}, "spec": spec}

    def template(self, name: str, *requests: dict, match=None, config=None) -> dict:
        c = self.claim(name, *requests, match=match, config=config)
        return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                "metadata": {"name": name, "namespace": self.ns}, "spec": {"spec": c["spec"]}}

    @staticmethod
    def neuron_config(lnc: int = 1, requests: list[str] = ()) -> dict:
        return {"requests": list(requests), "opaque": {"driver": "neuron.aws.com", "parameters": {
            "apiVersion": "neuron.aws.com/v1", "kind": "NeuronConfig", "logicalNeuronCore": lnc}}}

    def pod(self, name: str, claim: str | None = None, *, template: str | None = None, node: str | None = None) -> dict:
        rc = {"name": "devices", **({"resourceClaimName": claim} if claim else {"resourceClaimTemplateName": template})}
        # A workload image every backend has: the driver image (kind loads it into the nodes); the
        # local backend's kubelet stand-in never pulls it.
        spec: dict = {"containers": [{"name": "main", "image": WORKLOAD_IMAGE, "imagePullPolicy": "IfNotPresent",
                                      "command": ["sleep", "86400"], "resources": {"claims": [{"name": "devices"}]}}],
                      "resourceClaims": [rc], "terminationGracePeriodSeconds": 0}
        if node:
            spec["nodeSelector"] = {"kubernetes.io/hostname": node}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": self.ns}, "spec": spec}

    def load_yaml(self, path: str | Path) -> list[dict]:
        """Objects from a YAML file, namespaced into the test's namespace."""
        out = []
        for obj in safeyaml.load_file(path, all_documents=True):
            if obj:
                obj = copy.deepcopy(obj)
                if obj["kind"] in ("ResourceClaim", "ResourceClaimTemplate", "Pod"):
                    obj["metadata"]["namespace"] = self.ns
                out.append(obj)
        return out

    # -- actions ----------------------------------------------------------------------------------
    def create(self, *objs: dict) -> list[dict]:
        out = []
        for o in objs:
            if o["kind"] in ("ResourceClaim", "ResourceClaimTemplate", "Pod"):
                o = {**o, "metadata": {**o["metadata"], "namespace": self.ns}}
            out.append(self.kube.apply(o))
            self.created[(o["kind"], o["metadata"]["name"])] = time.monotonic()
        return out

    def delete(self, kind: str, name: str, wait: bool = True) -> None:
        api = "v1" if kind == "Pod" else "resource.k8s.io/v1"
        self.kube.delete({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": self.ns}},
                         wait=wait, timeout=60)

    def get_claim(self, name: str) -> dict | None:
        return self.kube.get("ResourceClaim", name, self.ns)

    def claim_of_pod(self, pod: str, timeout: float = 30) -> str:
        """The claim generated for a pod from a template."""
        p = self.kube.wait("Pod", lambda o: bool(o and (o.get("status") or {}).get("resourceClaimStatuses")),
                           namespace=self.ns, name=pod, timeout=timeout, what=f"pod {pod}'s generated claim")
        return p["status"]["resourceClaimStatuses"][0]["resourceClaimName"]

    # -- waits ------------------------------------------------------------------------------------
    def allocated(self, claim: str, timeout: float = 30) -> dict:
        try:
            c = self.kube.wait("ResourceClaim", lambda o: bool(o and (o.get("status") or {}).get("allocation")),
                               namespace=self.ns, name=claim, timeout=timeout, what=f"claim {self.ns}/{claim} allocated")
        except WaitTimeout as e:
            raise WaitTimeout(f"{e}\n{self.explain(claim)}") from None
        t0 = self.created.get(("ResourceClaim", claim)) or self.created.get(("Pod", claim))
        self.record.pending.append(PendingTime(self.test, claim, round(time.monotonic() - t0, 3) if t0 else None))
        return c

    def stays_pending(self, claim: str, seconds: float = 5) -> dict:
        """Assert the claim is not allocated for `seconds` (watch until the deadline)."""
        self.kube.stays("ResourceClaim", lambda o: not (o and (o.get("status") or {}).get("allocation")),
                        namespace=self.ns, name=claim, seconds=seconds, what=f"claim {self.ns}/{claim} to stay pending",
                        describe=lambda o: json.dumps((o or {}).get("status"), default=str)[:800])
        return self.get_claim(claim)

    def pod_running(self, pod: str, timeout: float = 30) -> dict:
        def describe(o):
            return f"phase {(o or {}).get('status', {}).get('phase')}; events: {self._pod_events(pod)}"

        return self.kube.wait("Pod", lambda o: bool(o and (o.get("status") or {}).get("phase") == "Running"),
                              namespace=self.ns, name=pod, timeout=timeout, describe=describe,
                              what=f"pod {self.ns}/{pod} Running (devices prepared by the node's drivers)")

    def check_prepared(self, pod: str) -> list[str]:
        """What the pod's drivers prepared against what was allocated: every allocated device, and
        every share of a shared one, must be its own CDI device (one per share_id,
        dra-features.md §1.3), or two containers' shares collapse into one. Reads the CDI ids the
        node recorded on the pod (the local backend's kubelet stand-in records them)."""
        p = self.kube.get("Pod", pod, self.ns)
        raw = ((p or {}).get("metadata", {}).get("annotations") or {}).get("dra-harness.io/cdi-devices")
        info = self.cluster.nodes.get((p or {}).get("spec", {}).get("nodeName"))
        if raw is None and info is not None and info.cdi_dir is None:  # kind: a real kubelet, CDI inside the node
            pytest.skip("what was prepared is recorded by the local backend's kubelet stand-in; this backend's "
                        "kubelet keeps its CDI devices inside the node")
        if raw is None:
            return [f"pod {pod}: no CDI devices recorded (not started by the local backend's kubelet stand-in?)"]
        out = []
        for claim, ids in json.loads(raw).items():
            c = self.get_claim(claim) or {}
            results = ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results") or []
            mine = [r for r in results if r.get("pool") == p["spec"].get("nodeName")]
            if len(set(ids)) < len(mine):
                out.append(f"claim {claim}: {len(mine)} allocated device(s)/share(s) but {len(set(ids))} distinct CDI "
                           f"device(s) prepared ({', '.join(sorted(set(ids)))})")
        return out

    def _pod_events(self, pod: str) -> list[str]:
        events, _ = self.kube.list("Event", namespace=self.ns)
        return [f"{e.get('reason')}: {e.get('message', '')[:300]}" for e in events if e["involvedObject"].get("name") == pod][-3:]

    # -- judging ----------------------------------------------------------------------------------
    def truths(self) -> dict[str, Truth]:
        return self.cluster.truths()

    def mutate(self, node: str, op: str, *args: str) -> str:
        """Change a node's fake hardware as its drivers see it (see Cluster.mutate)."""
        return self.cluster.mutate(node, op, *args)

    # -- faults and device taints -----------------------------------------------------------------
    def fault(self, node: str, op: str, device: str, *args: str) -> str:
        """Break a device through its error counters (op "ecc" or "efa_fail", see fakedev mutate);
        it is healed again when the test ends."""
        if op not in ("ecc", "efa_fail"):
            raise ValueError(f"fault() takes the counter faults ecc and efa_fail, not {op!r} (mutate() does the rest)")
        what = self.mutate(node, op, device, *args)
        if (node, device) not in self.faulty:
            self.faulty.append((node, device))
        return what

    def heal(self, node: str, device: str) -> str:
        self.faulty = [f for f in self.faulty if f != (node, device)]
        return self.mutate(node, "heal", device)

    def taint_rule(self, name: str, *, key: str = "dra-harness.io/maintenance", value: str | None = None,
                   effect: str = "NoExecute", driver: str | None = None, pool: str | None = None,
                   device: str | None = None) -> dict:
        """A DeviceTaintRule (cluster-scoped; deleted when the test ends) in the version this
        server serves. driver/pool/device select devices; none of them: every device (`{}`)."""
        api = self.kube.taint_rule_api()
        if api is None:
            raise AssertionError("this API server serves no DeviceTaintRule (1.34/1.35 need the DRADeviceTaintRules "
                                 "gate and resource.k8s.io/v1alpha3; 1.36 v1beta2)")
        rule = drainmod.rule(api, name, key=key, value=value, effect=effect, driver=driver, pool=pool, device=device)
        made = self.kube.apply(rule)
        self.rules.append(rule)
        return made

    def delete_taint_rule(self, name: str) -> None:
        for r in [r for r in self.rules if r["metadata"]["name"] == name]:
            self.kube.delete(r)
            self.rules.remove(r)

    def taints(self) -> dict[tuple[str, str, str], list[dict]]:
        """Every device's taints now: (driver, pool, device) -> its slice's and its rules' taints."""
        return device_taints(self.kube.list("ResourceSlice")[0], self.kube.taint_rules())

    def tainted(self, node: str, device: str, key: str | None = None, timeout: float = 15) -> dict:
        """Wait until a device of `node` (its slice name, like neuron-device-3) carries a taint
        from its driver (with `key`, if given); returns the taint."""
        def taint_of(lst):
            for sl in lst["items"]:
                if sl["spec"].get("nodeName") == node:
                    for d in sl["spec"].get("devices") or []:
                        if d["name"] == device:
                            return next((t for t in d.get("taints") or [] if key is None or t["key"] == key), None)
            return None

        lst = self.kube.wait("ResourceSlice", lambda lst: taint_of(lst) is not None, timeout=timeout,
                             what=f"a taint{' ' + key if key else ''} on {node}'s {device}")
        return taint_of(lst)

    def untainted(self, node: str, device: str, timeout: float = 15) -> None:
        """Wait until the driver has withdrawn every taint of the device."""
        def clean(lst):
            return all(not d.get("taints") for sl in lst["items"] if sl["spec"].get("nodeName") == node
                       for d in sl["spec"].get("devices") or [] if d["name"] == device)

        self.kube.wait("ResourceSlice", clean, timeout=timeout, what=f"{node}'s {device} without taints")

    def evicted(self, pod: str, timeout: float = 30) -> dict:
        """Wait until the device-taint eviction controller has evicted `pod` and it is gone;
        returns the pod as last seen, whose DisruptionTarget condition says who evicted it (for a
        pod gone before the watch, the controller's DeviceTaintManagerEviction event says it)."""
        last: list[dict] = []

        def gone(o):
            if o is not None:
                last[:] = [o]
            return o is None

        self.kube.wait("Pod", gone, namespace=self.ns, name=pod, timeout=timeout,
                       what=f"pod {self.ns}/{pod} evicted by the device taint manager",
                       describe=lambda o: json.dumps([c for c in ((o or {}).get("status") or {}).get("conditions") or []
                                                      if c.get("type") == "DisruptionTarget"]))
        if not last:  # gone before the watch began (a real kubelet is that fast): the controller's event says who
            ev = self.kube.wait("Event", lambda lst: any(e["involvedObject"].get("name") == pod and
                                                         e.get("reason") == "DeviceTaintManagerEviction" for e in lst["items"]),
                                namespace=self.ns, timeout=10,
                                what=f"the device taint manager's eviction event of pod {self.ns}/{pod} (the pod is gone)")
            e = next(e for e in ev["items"] if e["involvedObject"].get("name") == pod and e.get("reason") == "DeviceTaintManagerEviction")
            return {"metadata": {"name": pod, "namespace": self.ns}, "status": {"conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByDeviceTaintManager",
                 "message": f"(from event {e.get('reason')}: {e.get('message', '')})"}]}}
        cond = next((c for c in (last[0].get("status") or {}).get("conditions") or [] if c.get("type") == "DisruptionTarget"), None)
        if not cond or cond.get("reason") != "DeletionByDeviceTaintManager":
            raise AssertionError(f"pod {self.ns}/{pod} is gone but not by a device-taint eviction "
                                 f"(DisruptionTarget: {cond})")
        return last[0]

    def audit_taints(self, settle: float = 5) -> list[Finding]:
        """Published taints against the true health of each device (driver did not taint /
        tainted but healthy); waits up to `settle` s for the drivers to catch up with a change."""
        end = time.monotonic() + settle
        while True:
            found = audit(self.truths(), self.kube.list("ResourceSlice")[0], self.identities(), self.taint_times)
            if not found or time.monotonic() > end:
                return found
            time.sleep(0.2)

    def cleanup(self) -> None:
        """Undo what the test did outside its namespace: its taint rules and broken devices."""
        for r in list(self.rules):
            self.kube.delete(r)
        self.rules.clear()
        for node, device in list(self.faulty):
            self.mutate(node, "heal", device)
        if self.faulty:  # the next test must not find the drivers' taints still up
            self.audit_taints(settle=10)
        self.faulty.clear()

    def all_claims(self) -> list[dict]:
        return json.loads(self.kube.res.list_resource_claim_for_all_namespaces(_preload_content=False).data)["items"]

    def judge(self, claim: str | dict) -> Verdict:
        c = self.get_claim(claim) if isinstance(claim, str) else claim
        if c is None:
            raise AssertionError(f"claim {self.ns}/{claim} does not exist")
        v = judge_live(self.kube, self.truths(), self.identities(), [c])[0]
        self.verdicts.append(v)
        self.record.verdicts.append(Judged(self.test, v.claim, v.ok, v.node))
        return v

    def assert_aligned(self, claim: str, timeout: float = 30) -> Verdict:
        self.allocated(claim, timeout)
        v = self.judge(claim)
        if not v.ok:
            raise AssertionError(f"the oracle rejects the allocation:\n{v}")
        return v

    def explain(self, claim: str, nodes: list[str] | None = None) -> Explanation:
        """Why `claim` is pending; `nodes` limits the search (e.g. to a pod's pinned node)."""
        c = self.get_claim(claim)
        classes, _ = self.kube.list("DeviceClass")
        truths = {n: t for n, t in self.truths().items() if nodes is None or n in nodes}
        slices = [s for s in self.kube.list("ResourceSlice")[0] if nodes is None or s["spec"].get("nodeName") in nodes]
        return explain(c, truths, self.all_claims(), classes, scheduler_events(self.kube, self.ns, claim), slices,
                       self.identities(), device_taints(slices, self.kube.taint_rules()))

    def identities(self) -> dict[str, Identity]:
        """How the cluster's drivers' devices map to the hardware (their profiles')."""
        return {d: Identity.from_profile(d, spec) for d, spec in self.cluster.identities().items()}

    def unschedulable(self, pod: str, timeout: float = 30) -> str:
        """Wait for the scheduler's verdict that `pod` cannot be placed (its FailedScheduling
        event): a definite "pending", without sleeping for an arbitrary time."""
        ev = self.kube.wait("Event", lambda lst: any(e["involvedObject"].get("name") == pod and e.get("reason") == "FailedScheduling"
                                                     for e in lst["items"]),
                            namespace=self.ns, timeout=timeout, what=f"the scheduler to give up on pod {self.ns}/{pod}")
        return next(e["message"] for e in ev["items"] if e["involvedObject"].get("name") == pod and e.get("reason") == "FailedScheduling")

    def allow_admin_access(self) -> None:
        """Label the namespace so adminAccess requests are admitted (1.34+ label name)."""
        self.kube.core.patch_namespace(self.ns, {"metadata": {"labels": {"resource.kubernetes.io/admin-access": "true"}}})

    def record_stranded(self) -> list[Stranded]:
        rows = stranded(self.truths(), self.all_claims())
        for r in rows:
            self.record.stranded.append(StrandedAt(test=self.test, **asdict(r)))
        return rows
