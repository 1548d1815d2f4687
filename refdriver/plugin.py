"""The kubelet plugin: registration service and the DRA service (v1 and v1beta1) on unix
sockets, preparing claims into CDI specs with a checkpoint that survives restarts.

Protocol facts: ../shared/research/dra-api.md §3 (sockets, GetInfo, batching, idempotency).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc

from kubeletapi.gen.dra_v1 import api_pb2 as v1
from kubeletapi.gen.dra_v1 import api_pb2_grpc as v1_grpc
from kubeletapi.gen.dra_v1beta1 import api_pb2 as v1beta1
from kubeletapi.gen.dra_v1beta1 import api_pb2_grpc as v1beta1_grpc
from kubeletapi.gen.pluginregistration import api_pb2 as reg
from kubeletapi.gen.pluginregistration import api_pb2_grpc as reg_grpc

from . import atomicfile

log = logging.getLogger("refdriver.plugin")

# Prepares the allocated devices of one claim: (claim dict, results for this driver) ->
# (devices [{request_names, pool_name, device_name, cdi_device_ids}], cdi spec path).
Preparer = Callable[[dict, list[dict]], tuple[list[dict], str]]
ClaimGetter = Callable[[str, str], dict]


class ClaimError(Exception):
    """A per-claim failure, reported in the claim's response entry."""


@dataclass
class PluginPaths:
    registry_dir: Path
    plugins_dir: Path
    driver: str

    @property
    def registration_socket(self) -> Path:
        return self.registry_dir / f"{self.driver}-reg.sock"

    @property
    def service_socket(self) -> Path:
        return self.plugins_dir / self.driver / "dra.sock"

    @property
    def checkpoint(self) -> Path:
        return self.plugins_dir / self.driver / "checkpoint.json"


class Checkpoint:
    """claim UID -> what was prepared, written atomically after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.claims: dict[str, dict] = {}
        if path.exists():
            self.claims = json.loads(path.read_text()).get("claims", {})

    def save(self) -> None:
        atomicfile.write(self.path, json.dumps({"version": 1, "claims": self.claims}, indent=2))


class DraService:
    """NodePrepareResources / NodeUnprepareResources, shared by the v1 and v1beta1 servicers."""

    def __init__(self, driver: str, node: str, get_claim: ClaimGetter, prepare: Preparer,
                 unprepare: Callable[[dict], None], checkpoint: Checkpoint) -> None:
        self.driver, self.node = driver, node
        self.get_claim, self.prepare_devices, self.unprepare_devices = get_claim, prepare, unprepare
        self.checkpoint = checkpoint
        self.lock = threading.Lock()  # calls are serialized, as the Go helper does by default

    def prepare(self, claims: list) -> dict[str, dict]:
        out = {}
        with self.lock:
            for c in claims:
                try:
                    out[c.uid] = {"devices": self._prepare_one(c.namespace, c.name, c.uid)}
                except ClaimError as e:
                    log.warning("prepare failed", extra={"fields": {"claim": f"{c.namespace}/{c.name}", "error": str(e)}})
                    out[c.uid] = {"error": str(e)}
        return out

    def _prepare_one(self, namespace: str, name: str, uid: str) -> list[dict]:
        done = self.checkpoint.claims.get(uid)
        if done:  # idempotent: the kubelet retries
            return done["devices"]
        claim = self.get_claim(namespace, name)
        got = claim.get("metadata", {}).get("uid")
        if got != uid:
            raise ClaimError(f"claim {namespace}/{name} has UID {got}, the kubelet asked for {uid}: "
                             "the claim was deleted and recreated")
        alloc = (claim.get("status") or {}).get("allocation")
        if not alloc:
            raise ClaimError(f"claim {namespace}/{name} is not allocated")
        results = [r for r in alloc.get("devices", {}).get("results", [])
                   if r.get("driver") == self.driver and r.get("pool") == self.node]
        devices, spec = self.prepare_devices(claim, results) if results else ([], "")
        self.checkpoint.claims[uid] = {"namespace": namespace, "name": name, "devices": devices, "cdi_spec": spec}
        self.checkpoint.save()
        log.info("prepared", extra={"fields": {"claim": f"{namespace}/{name}", "uid": uid,
                                               "devices": [d["device_name"] for d in devices]}})
        return devices

    def unprepare(self, claims: list) -> dict[str, dict]:
        out = {}
        with self.lock:
            for c in claims:
                entry = self.checkpoint.claims.get(c.uid)
                try:
                    if entry:
                        self.unprepare_devices(entry)
                        del self.checkpoint.claims[c.uid]
                        self.checkpoint.save()
                        log.info("unprepared", extra={"fields": {"claim": f"{c.namespace}/{c.name}", "uid": c.uid}})
                    out[c.uid] = {}
                except (ClaimError, OSError) as e:
                    out[c.uid] = {"error": f"unprepare {c.namespace}/{c.name}: {e}"}
        return out


def _servicer(pb, base, svc: DraService):
    class Servicer(base):
        def NodePrepareResources(self, request, context):
            resp = pb.NodePrepareResourcesResponse()
            for uid, r in svc.prepare(list(request.claims)).items():
                entry = resp.claims[uid]
                if "error" in r:
                    entry.error = r["error"]
                for d in r.get("devices", []):
                    dev = entry.devices.add(request_names=d["request_names"], pool_name=d["pool_name"],
                                            device_name=d["device_name"], cdi_device_ids=d["cdi_device_ids"])
                    if d.get("share_id") and "share_id" in dev.DESCRIPTOR.fields_by_name:
                        dev.share_id = d["share_id"]  # v1 from 1.35; v1beta1 has no share_id
            return resp

        def NodeUnprepareResources(self, request, context):
            resp = pb.NodeUnprepareResourcesResponse()
            for uid, r in svc.unprepare(list(request.claims)).items():
                resp.claims[uid].error = r.get("error", "")
            return resp

    return Servicer()


class Registration(reg_grpc.RegistrationServicer):
    def __init__(self, driver: str, endpoint: str, extra_services: list[str] = ()) -> None:
        self.driver, self.endpoint = driver, endpoint
        self.extra_services = list(extra_services)
        self.registered = threading.Event()
        self.error = ""

    def GetInfo(self, request, context):
        # The kubelet picks the first listed service it supports: v1 first (dra-api.md §3.5).
        return reg.PluginInfo(type="DRAPlugin", name=self.driver, endpoint=self.endpoint,
                              supported_versions=["v1.DRAPlugin", "v1beta1.DRAPlugin", *self.extra_services])

    def NotifyRegistrationStatus(self, request, context):
        self.error = request.error
        if request.plugin_registered:
            self.registered.set()
            log.info("registered with the kubelet")
        else:
            log.error("kubelet refused registration", extra={"fields": {"error": request.error}})
        return reg.RegistrationStatusResponse()


class KubeletPlugin:
    """Both gRPC servers, started and stopped together; sockets removed on stop. With `health`
    (device name -> health, message), the DRA socket also serves DRAResourceHealth."""

    def __init__(self, paths: PluginPaths, svc: DraService, health: Callable[[], dict] | None = None,
                 health_poll: float | None = None) -> None:
        from . import devhealth

        self.paths = paths
        self.health = health
        self.health_poll = devhealth.POLL if health_poll is None else health_poll
        self.registration = Registration(paths.driver, str(paths.service_socket),
                                         devhealth.SERVICES if health else [])
        self.servers: list[grpc.Server] = []
        self.svc = svc
        self.stopping = threading.Event()  # ends the health streams

    def start(self) -> None:
        for sock in (self.paths.service_socket, self.paths.registration_socket):
            sock.parent.mkdir(parents=True, exist_ok=True)
            sock.unlink(missing_ok=True)  # a stale socket from a previous run
        dra = grpc.server(futures.ThreadPoolExecutor(max_workers=8))  # a health stream holds a worker
        v1_grpc.add_DRAPluginServicer_to_server(_servicer(v1, v1_grpc.DRAPluginServicer, self.svc), dra)
        if self.health:
            from . import devhealth

            devhealth.add_services(dra, self.svc.node, self.health, self.stopping, self.health_poll)
        v1beta1_grpc.add_DRAPluginServicer_to_server(_servicer(v1beta1, v1beta1_grpc.DRAPluginServicer, self.svc), dra)
        dra.add_insecure_port(f"unix:{self.paths.service_socket}")
        registration = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        reg_grpc.add_RegistrationServicer_to_server(self.registration, registration)
        registration.add_insecure_port(f"unix:{self.paths.registration_socket}")
        dra.start()
        registration.start()  # last: the kubelet may call as soon as this socket appears
        self.servers = [registration, dra]
        log.info("kubelet plugin serving", extra={"fields": {"registration": str(self.paths.registration_socket),
                                                             "service": str(self.paths.service_socket)}})

    def stop(self) -> None:
        self.stopping.set()
        for s in self.servers:
            s.stop(grace=1).wait()
        for sock in (self.paths.registration_socket, self.paths.service_socket):
            sock.unlink(missing_ok=True)
        self.servers = []

    @property
    def serving(self) -> bool:
        return bool(self.servers) and self.paths.registration_socket.exists() and self.paths.service_socket.exists()
