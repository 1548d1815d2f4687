"""Device health, as the kubelet's DRA manager keeps it (ResourceHealthStatus, beta and on by
default since Kubernetes 1.36; on 1.34/1.35 the API server drops the field).

For every plugin that advertises a DRAResourceHealth service (v1 preferred over v1alpha1, the
kubelet's order) a NodeWatchResources stream is held open, re-opened 5 s after it breaks and
abandoned when the plugin answers Unimplemented. Reports fill a cache keyed by (node, driver,
pool, device); an entry older than its timeout (the plugin's, else 30 s) reads Unknown. Pods see
it in status.containerStatuses[].allocatedResourcesStatus, built as the kubelet builds it
(pkg/kubelet/cm/dra/manager.go UpdateAllocatedResourcesStatus): one entry per container claim
reference named `claim:<name>` or `claim:<name>/<request>`, resource id the device's first CDI id
(else driver/pool/device), health Healthy, Unhealthy or Unknown, and the plugin's message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import grpc

from kubeletapi.gen.dra_health_v1 import api_pb2 as h1
from kubeletapi.gen.dra_health_v1 import api_pb2_grpc as h1_grpc
from kubeletapi.gen.dra_health_v1alpha1 import api_pb2 as h1a
from kubeletapi.gen.dra_health_v1alpha1 import api_pb2_grpc as h1a_grpc

log = logging.getLogger("device-health")
SERVICES = {"v1.DRAResourceHealth": (h1, h1_grpc), "v1alpha1.DRAResourceHealth": (h1a, h1a_grpc)}  # kubelet's order
DEFAULT_TIMEOUT = 30.0  # DefaultHealthTimeout
RETRY = 5.0  # wait.UntilWithContext period of the kubelet's stream loop
HEALTH = {0: "Unknown", 1: "Healthy", 2: "Unhealthy"}


def pick_service(supported: list[str]) -> str:
    return next((s for s in SERVICES if s in supported), "")


@dataclass
class Entry:
    health: str
    message: str
    updated: float  # monotonic
    timeout: float


class HealthCache:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str, str], Entry] = {}
        self.lock = threading.Lock()

    def update(self, node: str, driver: str, devices) -> bool:
        """A report's devices into the cache; True when a device's health or message changed."""
        now, changed = time.monotonic(), False
        with self.lock:
            for d in devices:
                key = (node, driver, d.device.pool_name, d.device.device_name)
                new = Entry(HEALTH.get(d.health, "Unknown"), d.message, now,
                            float(d.health_check_timeout_seconds or DEFAULT_TIMEOUT))
                old = self.entries.get(key)
                changed |= old is None or (old.health, old.message, old.timeout) != (new.health, new.message, new.timeout)
                self.entries[key] = new
        return changed

    def clear(self, node: str, driver: str) -> None:
        with self.lock:
            for key in [k for k in self.entries if k[:2] == (node, driver)]:
                del self.entries[key]

    def get(self, node: str, driver: str, pool: str, device: str) -> tuple[str, str]:
        with self.lock:
            e = self.entries.get((node, driver, pool, device))
        if e is None or time.monotonic() - e.updated > e.timeout:
            return "Unknown", ""
        return e.health, e.message


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _streams_loop() -> asyncio.AbstractEventLoop:
    """One asyncio loop (one thread) for every health stream of the process. Why not a thread
    per stream: a blocked sync gRPC stream reader wakes ten times a second (grpc's
    _common.wait), so 500 nodes' streams kept a fifth of a core busy doing nothing."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="health-streams", daemon=True).start()
        return _loop


class HealthStream:
    """One plugin's NodeWatchResources stream, held open until stopped."""

    def __init__(self, node: str, driver: str, endpoint: str, service: str, cache: HealthCache,
                 on_change: Callable[[str, str], None]) -> None:
        self.node, self.driver, self.endpoint, self.service = node, driver, endpoint, service
        self.cache, self.on_change = cache, on_change
        self.stopped = False
        self.task = asyncio.run_coroutine_threadsafe(self._run(), _streams_loop())

    async def _run(self) -> None:
        pb, grpc_mod = SERVICES[self.service]
        while not self.stopped:
            try:
                async with grpc.aio.insecure_channel(f"unix:{self.endpoint}") as ch:
                    call = grpc_mod.DRAResourceHealthStub(ch).NodeWatchResources(pb.NodeWatchResourcesRequest())
                    async for resp in call:
                        if self.cache.update(self.node, self.driver, resp.devices):
                            self.on_change(self.node, self.driver)
            except grpc.aio.AioRpcError as e:
                if self.stopped:
                    break
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    log.info("%s on %s does not report health; stopped watching", self.driver, self.node)
                    break
                log.info("health stream of %s on %s ended (%s); retrying in %.0fs", self.driver, self.node,
                         e.code().name, RETRY)
            finally:
                self.cache.clear(self.node, self.driver)  # as the kubelet's clearDriver on stream exit
            await asyncio.sleep(RETRY)

    def stop(self) -> None:
        self.stopped = True
        self.task.cancel()  # cancels the stream wherever it waits


def allocated_resources_status(pod: dict, prepared: list[dict], cache: HealthCache, node: str) -> dict[str, list[dict]]:
    """Container name -> its allocatedResourcesStatus, from the claims prepared for the pod
    (each {pod_claim, name, driver, devices: [{request_names, pool, device, cdi}]})."""
    out: dict[str, list[dict]] = {}
    for ctr in pod["spec"]["containers"]:
        statuses = []
        for ref in (ctr.get("resources") or {}).get("claims") or []:
            request = ref.get("request") or ""
            resources, seen = [], set()
            for c in prepared:
                if c.get("pod_claim") != ref["name"]:
                    continue
                for d in c.get("devices", []):
                    if request and d["request_names"] and request.split("/", 1)[0] not in d["request_names"]:
                        continue
                    rid = d["cdi"][0] if d["cdi"] else f"{c['driver']}/{d['pool']}/{d['device']}"
                    if rid in seen:
                        continue
                    seen.add(rid)
                    health, message = cache.get(node, c["driver"], d["pool"], d["device"])
                    entry = {"resourceID": rid, "health": health}
                    if message:
                        entry["message"] = message
                    resources.append(entry)
            if resources:
                statuses.append({"name": f"claim:{ref['name']}" + (f"/{request}" if request else ""),
                                 "resources": resources})
        if statuses:
            out[ctr["name"]] = statuses
    return out
