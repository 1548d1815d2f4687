"""A test stand-in for the kubelet (named as such: fake nodes have no kubelet).

It does the kubelet's DRA part for pods bound to fake nodes, over the real gRPC protocol on
unix sockets: the plugin registration handshake (GetInfo, NotifyRegistrationStatus), then
NodePrepareResources for a pod's allocated claims before marking it Running, and
NodeUnprepareResources when the pod is deleted, after which it removes the pod as a kubelet
would. Failures become Events on the pod (FailedPrepareDynamicResources), like the kubelet's.
Facts: research/dra-api.md §3.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from kubernetes.client.rest import ApiException

from kubeletapi.gen.dra_v1 import api_pb2 as v1
from kubeletapi.gen.dra_v1 import api_pb2_grpc as v1_grpc
from kubeletapi.gen.dra_v1beta1 import api_pb2 as v1beta1
from kubeletapi.gen.dra_v1beta1 import api_pb2_grpc as v1beta1_grpc
from kubeletapi.gen.pluginregistration import api_pb2 as reg
from kubeletapi.gen.pluginregistration import api_pb2_grpc as reg_grpc

from ...kube import Kube
from ...kube.informer import Informer
from .devicehealth import HealthCache, HealthStream, allocated_resources_status, pick_service
from .netns import NetnsError
from .nri import NriError, NriRuntime
from .pluginwatcher import PluginWatcher
from .sandboxnet import SandboxNetworks

log = logging.getLogger("kubelet-standin")
SUPPORTED = ["v1.DRAPlugin", "v1beta1.DRAPlugin"]  # the kubelet's servicesSupportedByKubelet (1.34+)
CDI_ANNOTATION = "dra-harness.io/cdi-devices"
NRI_ANNOTATION = "dra-harness.io/nri-adjustments"  # what NRI plugins changed, per container


class RegistrationError(Exception):
    pass


@dataclass
class Plugin:
    driver: str  # the name GetInfo gave
    endpoint: str
    service: str  # the negotiated service, e.g. v1.DRAPlugin
    health_service: str = ""  # the negotiated DRAResourceHealth service, "" when it offers none


def register(socket_path: Path, timeout: float = 10) -> Plugin:
    """The kubelet's plugin-watcher handshake with one registration socket."""
    with grpc.insecure_channel(f"unix:{socket_path}") as ch:
        stub = reg_grpc.RegistrationStub(ch)
        info = stub.GetInfo(reg.InfoRequest(), timeout=timeout)
        if info.type != "DRAPlugin":
            raise RegistrationError(f"{socket_path}: plugin type {info.type!r} is not DRAPlugin")
        service = next((s for s in info.supported_versions if s in SUPPORTED), None)  # the plugin's order wins
        if service is None:
            stub.NotifyRegistrationStatus(reg.RegistrationStatus(
                plugin_registered=False, error=f"none of {list(info.supported_versions)} are supported"), timeout=timeout)
            raise RegistrationError(f"{socket_path}: none of the services {list(info.supported_versions)} "
                                    f"are supported by the kubelet ({SUPPORTED})")
        stub.NotifyRegistrationStatus(reg.RegistrationStatus(plugin_registered=True), timeout=timeout)
        return Plugin(info.name, info.endpoint or str(socket_path), service, pick_service(list(info.supported_versions)))


def call(plugin: Plugin, method: str, claims: list[dict], timeout: float = 45) -> dict[str, dict]:
    """NodePrepareResources / NodeUnprepareResources with {namespace, uid, name} claims; returns
    uid -> {"devices": [...], "error": str} decoded from the response."""
    pb, grpc_mod = (v1, v1_grpc) if plugin.service.startswith("v1.") else (v1beta1, v1beta1_grpc)
    req_cls = pb.NodePrepareResourcesRequest if method == "prepare" else pb.NodeUnprepareResourcesRequest
    req = req_cls(claims=[pb.Claim(namespace=c["namespace"], uid=c["uid"], name=c["name"]) for c in claims])
    with grpc.insecure_channel(f"unix:{plugin.endpoint}") as ch:
        stub = grpc_mod.DRAPluginStub(ch)
        if method == "prepare":
            resp = stub.NodePrepareResources(req, timeout=timeout)
            return {uid: {"error": r.error, "devices": [{"request_names": list(d.request_names), "pool": d.pool_name,
                                                         "device": d.device_name, "cdi": list(d.cdi_device_ids),
                                                         "share_id": _share_id(d)}
                                                        for d in r.devices]} for uid, r in resp.claims.items()}
        resp = stub.NodeUnprepareResources(req, timeout=timeout)
        return {uid: {"error": r.error} for uid, r in resp.claims.items()}


def _share_id(device) -> str | None:
    """The prepared device's share (v1 from 1.35; v1beta1 has none)."""
    return device.share_id if "share_id" in device.DESCRIPTOR.fields_by_name and device.HasField("share_id") else None


def wiping_delay_from_env() -> float:
    """DRA_HARNESS_WIPING_DELAY (seconds, default 30: the kubelet's defaultWipingDelay), checked
    by `up` before anything starts so a bad value is one line, not a supervisor's traceback."""
    raw = os.environ.get("DRA_HARNESS_WIPING_DELAY", "30")
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not 0 <= v <= 3600:
        raise ValueError(f"DRA_HARNESS_WIPING_DELAY={raw[:40]!r}: want seconds between 0 and 3600")
    return v


class KubeletStandIn:
    """Serves every fake node of a cluster: plugin registration (a plugin watcher on each node's
    plugins_registry/), and the DRA part of running pods, from one pod watch."""

    def __init__(self, kube: Kube, registry_dirs: dict[str, Path], wiping_delay: float | None = None,
                 nri: NriRuntime | None = None, sandboxes: SandboxNetworks | None = None) -> None:
        self.kube = kube
        self.nri = nri  # the nodes' container runtime NRI side, when the cluster runs one
        self.sandboxes = sandboxes  # pod sandbox network namespaces (with NRI: plugins read them)
        self.registry_dirs = registry_dirs  # node -> its plugins_registry directory
        self.plugins: dict[tuple[str, str], Plugin] = {}
        self.wiping_delay = wiping_delay_from_env() if wiping_delay is None else wiping_delay
        self.wipes: dict[tuple[str, str], threading.Timer] = {}
        self.watcher = PluginWatcher(registry_dirs, self._register, self._deregister)
        self.prepared: dict[str, list[dict]] = {}  # pod uid -> claims prepared
        self.stop_event = threading.Event()
        self.pods = Informer(kube, "PodAll", self._pod_event)
        self.start_retry: dict[str, tuple[float, int]] = {}  # pod uid -> (when to sync again, tries)
        self.lock = threading.Lock()
        self.retry: dict[str, tuple[dict, bool]] = {}  # pod uid -> (pod, gone) whose unprepare failed: retried
        self.health = HealthCache()
        self.streams: dict[tuple[str, str], HealthStream] = {}
        self.running: dict[str, tuple[dict, list[dict]]] = {}  # pod uid -> (pod, containerStatuses as set)
        self.health_due = threading.Event()  # a report changed something: refresh the pods' health now
        self.held: dict[str, tuple[dict, str]] | None = None  # pod uid -> (pod, node) while starts are held

    def hold(self) -> None:
        """Stop starting pods until `release()` (they stay Pending, bound): lets `make bench`
        measure scheduling alone, as scheduler_perf does with no kubelet, and the starts apart."""
        with self.lock:
            if self.held is None:
                self.held = {}

    def release(self) -> int:
        """Start every pod held back; returns how many."""
        with self.lock:
            held, self.held = self.held or {}, None
            for pod, node in held.values():
                self._start(pod, node)
        return len(held)

    def plugin(self, node: str, driver: str) -> Plugin:
        p = self.plugins.get((node, driver))
        if p is None:
            raise RegistrationError(f"no DRA plugin {driver} is registered on node {node} "
                                    f"(no socket of it in {self.registry_dirs[node]})")
        return p

    def _register(self, node: str, socket_path: Path) -> str:
        p = register(socket_path)
        self.plugins[(node, p.driver)] = p
        timer = self.wipes.pop((node, p.driver), None)
        if timer:
            timer.cancel()  # back before its slices were wiped, as after a restart
        old = self.streams.pop((node, p.driver), None)
        if old:
            old.stop()
        if p.health_service:
            self.streams[(node, p.driver)] = HealthStream(node, p.driver, p.endpoint, p.health_service, self.health,
                                                          lambda *_: self.health_due.set())
        return p.driver

    def _deregister(self, node: str, driver: str) -> None:
        """As the kubelet: once no plugin of the driver is connected for the wiping delay, its
        ResourceSlices on the node are deleted (defaultWipingDelay, research/dra-api.md §3.6)."""
        self.plugins.pop((node, driver), None)
        stream = self.streams.pop((node, driver), None)
        if stream:
            stream.stop()
            self.health_due.set()
        timer = threading.Timer(self.wiping_delay, self._wipe, args=(node, driver))
        timer.daemon = True
        self.wipes[(node, driver)] = timer
        timer.start()

    def _wipe(self, node: str, driver: str) -> None:
        self.wipes.pop((node, driver), None)
        if (node, driver) in self.plugins or self.stop_event.is_set():
            return
        try:
            self.kube.res.delete_collection_resource_slice(field_selector=f"spec.nodeName={node},spec.driver={driver}")
            log.info("wiped the ResourceSlices of %s on node %s (plugin gone for %.0fs)", driver, node, self.wiping_delay)
        except ApiException as e:
            log.warning("wiping slices of %s on %s: %s", driver, node, e.reason)

    def stop(self) -> None:
        self.stop_event.set()
        self.watcher.stop()
        for t in list(self.wipes.values()):
            t.cancel()
        for stream in list(self.streams.values()):
            stream.stop()

    def run(self) -> None:
        threading.Thread(target=self.watcher.run, name="plugin-watcher", daemon=True).start()
        threading.Thread(target=self._retry_loop, name="standin-retry", daemon=True).start()
        # list, watch from the list's resourceVersion, re-list on 410 Gone: a pod deleted while the
        # API server was away is seen as DELETED on the re-list, so its claims are unprepared
        self.pods.run(self.stop_event)

    def _pod_event(self, typ: str, pod: dict) -> None:
        self.handle(pod, gone=typ == "DELETED")

    def handle(self, pod: dict, gone: bool = False) -> None:
        """`gone`: the pod was removed without a graceful phase (e.g. a zero grace period on
        some versions); its devices are unprepared all the same, as the kubelet's sync does."""
        node = pod["spec"].get("nodeName")
        if node not in self.registry_dirs:
            return
        with self.lock:
            if (gone or pod["metadata"].get("deletionTimestamp")) and self.held:
                self.held.pop(pod["metadata"]["uid"], None)
            if gone:
                if pod["metadata"]["uid"] in self.prepared:
                    self._terminate(pod, node, gone=True)
            elif pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod, node)
            elif (pod.get("status") or {}).get("phase") == "Pending" and pod["metadata"]["uid"] not in self.prepared:
                if self.held is not None:
                    self.held[pod["metadata"]["uid"]] = (pod, node)
                else:
                    self._start(pod, node)

    def _claims(self, pod: dict) -> list[dict]:
        statuses = {s["name"]: s.get("resourceClaimName") for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []}
        out = []
        for rc in pod["spec"].get("resourceClaims") or []:
            name = rc.get("resourceClaimName") or statuses.get(rc["name"])
            if name:
                out.append({"namespace": pod["metadata"]["namespace"], "name": name, "pod_claim": rc["name"]})
        # a pod asking for an extended resource backed by DRA (KEP-5004): the claim the scheduler
        # made for it, named in the pod's status as the kubelet reads it
        ext = ((pod.get("status") or {}).get("extendedResourceClaimStatus") or {}).get("resourceClaimName")
        if ext:
            out.append({"namespace": pod["metadata"]["namespace"], "name": ext, "pod_claim": "extended-resources"})
        return out

    def _start(self, pod: dict, node: str) -> None:
        ns, pname = pod["metadata"]["namespace"], pod["metadata"]["name"]
        prepared: list[dict] = []
        cdi: dict[str, list[str]] = {}
        try:
            for c in self._claims(pod):
                claim = json.loads(self.kube.res.read_namespaced_resource_claim(c["name"], ns, _preload_content=False).data)
                reserved = {r.get("uid") for r in (claim.get("status") or {}).get("reservedFor") or []}
                if pod["metadata"]["uid"] not in reserved:
                    return  # the kubelet only prepares claims reserved for the pod; wait for the update
                c["uid"] = claim["metadata"]["uid"]
                drivers = sorted({r["driver"] for r in claim["status"]["allocation"]["devices"]["results"]
                                  if r.get("pool") == node})
                for driver in drivers:
                    res = call(self.plugin(node, driver), "prepare", [c])
                    r = res.get(c["uid"])
                    if r is None:
                        raise RegistrationError(f"{driver} skipped claim {ns}/{c['name']} (no entry in its response)")
                    if r["error"]:
                        raise RegistrationError(f"{driver}: {r['error']}")
                    cdi.setdefault(c["name"], []).extend(x for d in r["devices"] for x in d["cdi"])
                    prepared.append({**c, "driver": driver, "devices": r["devices"]})
        except Exception as e:  # any failure to prepare is retried, as the kubelet's pod worker does: an
            # unexpected one (a channel to a driver's dead socket) once left a pod Pending for good
            msg = e.details() if isinstance(e, grpc.RpcError) else str(e) or type(e).__name__
            self._event(pod, "FailedPrepareDynamicResources", f"Failed to prepare dynamic resources: {msg}")
            log.warning("prepare failed for %s/%s: %s", ns, pname, msg)
            self._unprepare(prepared, node)
            # as the kubelet's pod worker: the sync is tried again after a back-off (1 s doubling to 10 s)
            uid = pod["metadata"]["uid"]
            tries = self.start_retry.get(uid, (0.0, 0))[1] + 1
            self.start_retry[uid] = (time.monotonic() + min(10.0, 2.0 ** (tries - 1)), tries)
            return
        adjustments: dict[str, dict] = {}
        if self.nri is not None:
            uid = pod["metadata"]["uid"]
            try:
                netns = None
                if self.sandboxes is not None and not pod["spec"].get("hostNetwork"):
                    netns = self.sandboxes.create(node, uid)
                adjustments = self.nri.start_pod(node, pod, cdi, netns)
            except (NriError, NetnsError) as e:  # the runtime's failure, as the kubelet reports it
                if self.sandboxes is not None:
                    self.sandboxes.remove(uid)
                op = getattr(e, "op", "RunPodSandbox")  # a sandbox network that could not be made fails the sandbox
                reason = "FailedCreatePodSandBox" if op == "RunPodSandbox" else "Failed"
                self._event(pod, reason, f"NRI: {e}" if isinstance(e, NriError) else f"pod sandbox network: {e}")
                log.warning("NRI refused %s/%s: %s", ns, pname, e)
                self._unprepare(prepared, node)
                return
        self.start_retry.pop(pod["metadata"]["uid"], None)
        self.prepared[pod["metadata"]["uid"]] = prepared
        self._set_running(pod, node, cdi, adjustments)

    def _set_running(self, pod: dict, node: str, cdi: dict[str, list[str]], adjustments: dict[str, dict]) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conds = [{"type": t, "status": "True", "lastTransitionTime": now}
                 for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")]
        containers = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "restartCount": 0,
                       "started": True, "state": {"running": {"startedAt": now}}} for c in pod["spec"]["containers"]]
        health = allocated_resources_status(pod, self.prepared.get(pod["metadata"]["uid"], []), self.health, node)
        for c in containers:
            if c["name"] in health:
                c["allocatedResourcesStatus"] = health[c["name"]]
        self.running[pod["metadata"]["uid"]] = (pod, containers)
        try:
            notes = {CDI_ANNOTATION: json.dumps(cdi)}
            if adjustments:
                notes[NRI_ANNOTATION] = json.dumps(adjustments)
            self.kube.core.patch_namespaced_pod(name, ns, {"metadata": {"annotations": notes}})
            self.kube.core.patch_namespaced_pod_status(name, ns, {"status": {
                "phase": "Running", "conditions": conds, "containerStatuses": containers, "startTime": now}})
        except ApiException as e:
            log.warning("could not mark %s/%s running: %s", ns, name, e.reason)

    def _refresh_health(self) -> None:
        """Re-build each running pod's allocatedResourcesStatus; patch the pods where it changed
        (a report arrived, a stream ended, or a report grew older than its timeout)."""
        for uid, (pod, containers) in list(self.running.items()):
            node = pod["spec"]["nodeName"]
            health = allocated_resources_status(pod, self.prepared.get(uid, []), self.health, node)
            if all(c.get("allocatedResourcesStatus") == health.get(c["name"]) for c in containers):
                continue
            new = [{**{k: v for k, v in c.items() if k != "allocatedResourcesStatus"},
                    **({"allocatedResourcesStatus": health[c["name"]]} if c["name"] in health else {})} for c in containers]
            try:
                self.kube.core.patch_namespaced_pod_status(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                                           {"status": {"containerStatuses": new}})
                self.running[uid] = (pod, new)
            except ApiException as e:
                if e.status == 404:
                    self.running.pop(uid, None)

    def _retry_loop(self) -> None:
        """Health refreshes, unprepare retries and start retries, twice a second, for the life of
        the stand-in: one round that fails (an API server restarting refuses the connection,
        which is no ApiException) is logged, and the next round runs. A thread that died here
        once left every later failed prepare Pending for good (make test, a killed driver after
        a killed API server)."""
        last_health = 0.0
        while not self.stop_event.wait(0.5):
            try:
                if self.health_due.is_set() or time.monotonic() - last_health > 2:
                    self.health_due.clear()
                    last_health = time.monotonic()
                    with self.lock:
                        self._refresh_health()
                for uid, (pod, gone) in list(self.retry.items()):
                    with self.lock:
                        if uid in self.retry:
                            self._terminate(pod, pod["spec"]["nodeName"], gone)
                self._retry_starts()
            except Exception:
                log.exception("kubelet stand-in: a retry round failed; the next one runs in 0.5 s")

    def _retry_starts(self) -> None:
        """Pods whose prepare failed, synced again once their back-off is over (the latest
        state the informer holds: a pod deleted meanwhile is dropped)."""
        if not self.start_retry:  # the usual case: no copy of every pod twice a second
            return
        now = time.monotonic()
        latest = {p["metadata"]["uid"]: p for p in self.pods.snapshot()}
        for uid, (due, _) in list(self.start_retry.items()):
            if due > now:
                continue
            pod = latest.get(uid)
            if pod is None:
                self.start_retry.pop(uid, None)
                continue
            # the next look in 10 s unless this one succeeds (which drops the entry) or fails (which
            # sets its own back-off): a sync that returns early (claim not yet reserved) is looked
            # at again, never forgotten
            self.start_retry[uid] = (now + 10.0, self.start_retry[uid][1])
            self.handle(pod)

    def _terminate(self, pod: dict, node: str, gone: bool = False) -> None:
        uid = pod["metadata"]["uid"]
        prepared = self.prepared.get(uid, [])
        if self.nri is not None and uid in self.prepared and uid not in self.retry:
            try:  # containers and sandbox go before the devices are unprepared, as on a node
                self.nri.stop_pod(node, pod, self.sandboxes.path(uid) if self.sandboxes else None)
            except NriError as e:
                log.warning("NRI on stopping %s: %s", pod["metadata"]["name"], e)
            if self.sandboxes is not None:
                self.sandboxes.remove(uid)
        errors = self._unprepare(prepared, node)
        if errors:
            if uid not in self.retry:
                self._event(pod, "FailedUnprepareDynamicResources", "; ".join(errors))
            self.retry[uid] = (pod, gone)  # keep the pod (Terminating) until its devices are unprepared
            return
        self.prepared.pop(uid, None)
        self.retry.pop(uid, None)
        self.running.pop(uid, None)
        if gone:
            return
        try:
            self.kube.core.delete_namespaced_pod(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                                 grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                log.warning("could not remove pod: %s", e.reason)

    def _unprepare(self, prepared: list[dict], node: str) -> list[str]:
        errors = []
        for c in prepared:
            try:
                r = call(self.plugin(node, c["driver"]), "unprepare", [c]).get(c["uid"], {})
                if r.get("error"):
                    errors.append(r["error"])
            except (grpc.RpcError, RegistrationError) as e:
                errors.append(str(e))
        return errors

    def _event(self, pod: dict, reason: str, message: str) -> None:
        ns = pod["metadata"]["namespace"]
        body = {"metadata": {"generateName": pod["metadata"]["name"] + ".", "namespace": ns},
                "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"],
                                   "uid": pod["metadata"]["uid"], "apiVersion": "v1"},
                "reason": reason, "message": message[:1000], "type": "Warning",
                "source": {"component": "kubelet-standin", "host": pod["spec"].get("nodeName")},
                "firstTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "count": 1}
        try:
            self.kube.core.create_namespaced_event(ns, body)
        except Exception:  # an event is best effort: an API server away (not only ApiException) loses it
            pass
