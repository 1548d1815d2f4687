"""Device health for the kubelet (the DRAResourceHealth service, v1 and v1alpha1).

What makes a device unhealthy, read from the node's sysfs like the vendors' monitors do:
  Neuron  an uncorrected ECC error counter above zero in
          /sys/class/neuron_device/neuronN/stats/hardware/{sram,mem}_ecc_uncorrected
          (research/neuron-efa.md, the class device's stats/hardware files)
          (a repairable count alone leaves it Healthy: it is tainted, see taints.py)
  EFA     admin commands that timed out, /sys/class/infiniband/<dev>/hw_counters/no_completion_cmds
          above zero. Not the port state: efa_query_port hard-codes IB_PORT_ACTIVE (linux
          drivers/infiniband/hw/efa/efa_verbs.c), so ports/1/state never goes down on real hardware
A device whose files cannot be read is Unknown. The stream sends a full report at once, then on
every change, and at least every KEEPALIVE seconds so the kubelet's 30 s timeout never turns a
quiet healthy device Unknown.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from kubeletapi.gen.dra_health_v1 import api_pb2 as h1
from kubeletapi.gen.dra_health_v1 import api_pb2_grpc as h1_grpc
from kubeletapi.gen.dra_health_v1alpha1 import api_pb2 as h1a
from kubeletapi.gen.dra_health_v1alpha1 import api_pb2_grpc as h1a_grpc

log = logging.getLogger("refdriver.health")
SERVICES = ["v1.DRAResourceHealth", "v1alpha1.DRAResourceHealth"]  # as the kubeletplugin helper advertises them
NEURON_ECC = ("sram_ecc_uncorrected", "mem_ecc_uncorrected")
NEURON_COUNTERS = NEURON_ECC + ("mem_ecc_repairable_uncorrected",)
EFA_COUNTERS = ("no_completion_cmds",)
KEEPALIVE = 10.0
POLL = 0.5

# device name -> (HEALTHY|UNHEALTHY|UNKNOWN, message)
Report = dict[str, tuple[str, str]]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _counters(base: Path, names: tuple[str, ...]) -> dict[str, int] | str:
    """The counters under `base`, or the path of the first one that cannot be read."""
    out = {}
    for name in names:
        text = _read(base / name)
        if text is None or not text.isdigit():
            return str(base / name)
        out[name] = int(text)
    return out


def neuron_counters(root: Path, index: int) -> dict[str, int] | str:
    return _counters(root / f"sys/class/neuron_device/neuron{index}/stats/hardware", NEURON_COUNTERS)


def efa_counters(root: Path, rdma: str | None) -> dict[str, int] | str:
    if not rdma:
        return "no RDMA device"
    return _counters(root / f"sys/class/infiniband/{rdma}/hw_counters", EFA_COUNTERS)


def neuron_health(root: Path, index: int) -> tuple[str, str]:
    c = neuron_counters(root, index)
    if isinstance(c, str):
        return "UNKNOWN", f"cannot read {c}"
    errors = [f"{k}={c[k]}" for k in NEURON_ECC if c[k] > 0]
    return ("UNHEALTHY", "uncorrected ECC errors: " + ", ".join(errors)) if errors else ("HEALTHY", "")


def efa_health(root: Path, rdma: str | None) -> tuple[str, str]:
    c = efa_counters(root, rdma)
    if isinstance(c, str):
        return "UNKNOWN", c if not rdma else f"cannot read {c}"
    n = c["no_completion_cmds"]
    return ("UNHEALTHY", f"{rdma}: {n} admin command(s) timed out (no_completion_cmds)") if n else ("HEALTHY", "")


def _servicer(pb, grpc_mod, pool: str, current: Callable[[], Report], stopping: threading.Event, poll: float):
    class Servicer(grpc_mod.DRAResourceHealthServicer):
        def NodeWatchResources(self, request, context):
            last: Report | None = None
            sent = 0.0
            while context.is_active() and not stopping.is_set():
                now = current()
                if now != last or time.monotonic() - sent >= KEEPALIVE:
                    stamp = int(time.time())
                    yield pb.NodeWatchResourcesResponse(devices=[
                        pb.DeviceHealth(device=pb.DeviceIdentifier(pool_name=pool, device_name=name),
                                        health=getattr(pb, health), last_updated_time=stamp, message=msg)
                        for name, (health, msg) in sorted(now.items())])
                    if last is not None and now != last:
                        changed = {k: v for k, v in now.items() if last.get(k) != v}
                        log.info("device health changed", extra={"fields": {"devices": changed}})
                    last, sent = now, time.monotonic()
                stopping.wait(poll)

    return Servicer()


def add_services(server, pool: str, current: Callable[[], Report], stopping: threading.Event,
                 poll: float = POLL) -> None:
    """`poll`: seconds between looks at `current` (a host's shared tree, which never changes,
    needs only the KEEPALIVE)."""
    h1_grpc.add_DRAResourceHealthServicer_to_server(_servicer(h1, h1_grpc, pool, current, stopping, poll), server)
    h1a_grpc.add_DRAResourceHealthServicer_to_server(_servicer(h1a, h1a_grpc, pool, current, stopping, poll), server)
