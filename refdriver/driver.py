"""One reference driver process: discover, publish slices, serve the kubelet plugin, rescan on
change. The two kinds differ only in their device schema and in how they prepare devices."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyudev


from . import atomicfile, attributes, cdi, partitions, sharing
from . import status as statusmod
from .partitions import DEFAULT_LNC
from .discovery import Node, discover
from .plugin import Checkpoint, ClaimError, DraService, KubeletPlugin, PluginPaths
from .vendorfiles import format_cpulist
from .watch import Watcher

log = logging.getLogger("refdriver")
_DISCOVERY_LOCK = threading.Lock()

KINDS = {"neuron": attributes.NEURON_DRIVER, "efa": attributes.EFA_DRIVER}
CDI_KINDS = {"neuron": "k8s.neuron.aws.com/neuron", "efa": "k8s.dra.net/efa"}


@dataclass
class Options:
    kind: str
    node_name: str
    vendor_root: Path = Path("/")
    extended: bool = False
    bugs: list[str] = field(default_factory=list)
    registry_dir: Path = Path("/var/lib/kubelet/plugins_registry")
    plugins_dir: Path = Path("/var/lib/kubelet/plugins")
    cdi_root: Path = Path("/var/run/cdi")
    rescan_interval: float = 10.0
    kubelet_plugin: bool = True
    health_port: int = 0
    health_interval: float = 1.0  # seconds between reads of the error counters (sysfs has no inotify)
    repairable_threshold: int = 8  # repairable ECC errors that make a Neuron device NoSchedule
    share_efa: sharing.SharePolicy | None = None  # EFAs shared by consumable capacity (sharing.py)
    partition_cores: bool = False  # NeuronCores as partitions of their device (partitions.py)
    partition_lnc: int | None = None  # their size in cores (None: the generation's logical core size)

    @property
    def driver(self) -> str:
        return KINDS[self.kind]


def devices_of(node: Node, opts: Options) -> tuple[list[dict], list[dict]]:
    """(devices, counter sets) to publish for the node's hardware."""
    if opts.kind == "neuron":
        devices = attributes.neuron_devices(node, opts.extended, opts.bugs)
        if opts.partition_cores:
            sets, devices = partitions.partition(devices, {n.index: n.core_count for n in node.neuron}, opts.bugs,
                                                 opts.partition_lnc)
            return devices, sets
        return devices, []
    devices = attributes.efa_devices(node, opts.bugs)
    if opts.share_efa:
        rates = {attributes.efa_device_name(e.pci.bdf): sharing.parse_rate(e.rate) for e in node.efa}
        for d in devices:
            sharing.share(d, rates.get(d["name"]), opts.share_efa, opts.bugs)
    return devices, []


class Driver:
    def __init__(self, opts: Options, api_client=None) -> None:
        self.opts = opts
        self.api_client = api_client
        self.ctx = pyudev.Context()
        self.node: Node | None = None
        self.stop_event = threading.Event()
        self.last_publish_error = ""
        self.published_at = 0.0
        self.plugin: KubeletPlugin | None = None
        self.publisher = None  # host mode (host.py) keeps each node's slices.Publisher here
        self.reported: set[str] = set()
        self.ever_tainted: dict[str, list[dict]] = {}  # the taint-sticky bug's memory
        self.counter_sets: list[dict] = []  # what the devices of the last scan consume (partitions.py)
        self.health_poll: float | None = None  # the health streams' poll interval (None: devhealth.POLL)

    # -- discovery and slices ------------------------------------------------------------------------
    def scan(self) -> list[dict]:
        with _DISCOVERY_LOCK:
            self.node = discover(self.ctx, self.opts.vendor_root)
        for p in self.node.problems:  # each fault once, not on every rescan
            if p not in self.reported:
                self.reported.add(p)
                log.warning("discovery problem", extra={"fields": {"problem": p}})
        devices, self.counter_sets = devices_of(self.node, self.opts)
        self._taint(devices)
        if not devices and "none" not in self.reported:
            self.reported.add("none")
            log.warning("no devices found", extra={"fields": {"driver": self.opts.driver, "problem":
                        "no devices under /sys (a node without this hardware, or a wrong --sysfs-root?)"}})
        return devices

    def device_counters(self) -> dict[str, dict[str, int] | None]:
        """Each device's error counters (None: unreadable), read now at /sys (see device_health)."""
        from . import devhealth

        node, root = self.node, Path("/")
        if node is None:
            return {}

        def ok(c):
            return None if isinstance(c, str) else c

        if self.opts.kind == "neuron":
            return {f"neuron-device-{n.index}": ok(devhealth.neuron_counters(root, n.index)) for n in node.neuron}
        return {attributes.efa_device_name(e.pci.bdf): ok(devhealth.efa_counters(root, e.rdma)) for e in node.efa}

    def _taint(self, devices: list[dict]) -> None:
        """Put each device's taints (taints.py) into its slice entry; the publisher stamps times."""
        from . import taints

        counters = self.device_counters()
        bugs = self.opts.bugs
        if self.opts.kind == "neuron":
            by_name = {n: taints.neuron_taints(c, self.opts.repairable_threshold) for n, c in counters.items()}
            if "no-taint-on-ecc" in bugs:
                by_name = {n: [t for t in ts if t["key"] != taints.NEURON_ECC] for n, ts in by_name.items()}
            if "taint-neighbour" in bugs:
                names = [d["name"] for d in devices if partitions.parse(d["name"]) is None]
                by_name = {names[(i + 1) % len(names)]: by_name.get(n, []) for i, n in enumerate(names)}
        else:
            by_name = {n: taints.efa_taints(c) for n, c in counters.items()}
        if "taint-sticky" in bugs:
            for n, ts in by_name.items():
                kept = self.ever_tainted.setdefault(n, [])
                kept += [t for t in ts if t not in kept]
                by_name[n] = list(kept)
        for d in devices:  # a partition bears the taints of the chip it lies on
            name = d["name"] if d["name"] in by_name or self.opts.kind != "neuron" else \
                f"neuron-device-{partitions.device_index(d['name'])}"
            if by_name.get(name):
                d["taints"] = list(by_name[name])

    def publish(self, pub, devices: list[dict], counter_sets: list[dict]) -> bool:
        """One publish through `pub` (a slices.Publisher), recorded for /readyz; False when it
        failed (logged; the caller retries). Shared by Driver.run and a host's nodes."""
        try:
            pub.publish(devices, counter_sets)
            self.last_publish_error, self.published_at = "", time.time()
            return True
        except Exception as e:
            self.last_publish_error = str(e)[:500]
            log.error("publishing slices failed", extra={"fields": {"node": self.opts.node_name,
                                                                    "error": self.last_publish_error}})
            return False

    def _wait_for_change(self, watcher: Watcher) -> None:
        """Until inotify wakes us, an error counter changes (read every health_interval: sysfs
        attributes change without inotify events on real hardware), or rescan_interval passes."""
        end = time.monotonic() + self.opts.rescan_interval
        before = self.device_counters()
        while not self.stop_event.is_set():
            left = end - time.monotonic()
            if left <= 0 or watcher.wait(min(left, self.opts.health_interval)):
                return
            if self.device_counters() != before:
                return

    def run(self) -> None:
        from .slices import Publisher

        pub = Publisher(self.api_client, self.opts.node_name, self.opts.driver,
                        keep_taint_times="taint-time-reset" not in self.opts.bugs)
        if self.opts.kubelet_plugin:
            self.plugin = self._make_plugin()
            self.plugin.start()
        health = None
        if self.opts.health_port:
            from . import health as healthmod

            health = healthmod.serve(self.opts.health_port, self.health)
        watcher = Watcher()

        def on_signal(*_):
            self.stop_event.set()
            watcher.wake()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        published_once = False
        try:
            while not self.stop_event.is_set():
                if not (published_once and "stale-after-hotplug" in self.opts.bugs):
                    devices = self.scan()
                    if not self.publish(pub, devices, self.counter_sets):
                        self.stop_event.wait(1.0)  # API server unreachable: keep serving, retry soon
                        continue
                    published_once = True
                    watcher.rearm(self._watch_paths())
                self._wait_for_change(watcher)
        finally:
            watcher.close()
            if self.plugin:
                self.plugin.stop()
            if health:
                health.shutdown()
            log.info("stopped")

    def _watch_paths(self) -> list[str]:
        paths = ["/sys/bus/pci/devices", "/sys/class/neuron_device", "/sys/class/infiniband",
                 "/sys/devices/virtual/dmi/id", "/sys/module/neuron"]
        if self.node:
            paths += [n.pci.sys_path for n in self.node.neuron if n.pci]
            paths += [e.pci.sys_path for e in self.node.efa]
            paths += [f"/sys/class/neuron_device/neuron{n.index}/" for n in self.node.neuron]
            paths += [f"/sys/class/neuron_device/neuron{n.index}/stats/hardware" for n in self.node.neuron]
            paths += [f"/sys/class/infiniband/{e.rdma}/hw_counters" for e in self.node.efa if e.rdma]
        return paths

    def health(self) -> tuple[bool, dict]:
        serving = self.plugin.serving if self.plugin else True
        ok = serving and not self.last_publish_error and self.published_at > 0
        return ok, {"driver": self.opts.driver, "node": self.opts.node_name, "serving": serving,
                    "registered": bool(self.plugin and self.plugin.registration.registered.is_set()),
                    "devices": len(self.node.neuron if self.opts.kind == "neuron" else self.node.efa) if self.node else 0,
                    "last_publish": self.published_at, "error": self.last_publish_error}

    # -- kubelet plugin ------------------------------------------------------------------------------
    def _make_plugin(self) -> KubeletPlugin:
        paths = PluginPaths(self.opts.registry_dir, self.opts.plugins_dir, self.opts.driver)
        from .rest import Rest

        rest = Rest(self.api_client)

        def get_claim(ns: str, name: str) -> dict:
            from kubernetes.client.rest import ApiException

            try:
                return rest.read_claim(ns, name)
            except ApiException as e:
                raise ClaimError(f"cannot read claim {ns}/{name}: {e.status} {e.reason}") from None

        svc = DraService(self.opts.driver, self.opts.node_name, get_claim, self.prepare, self.unprepare,
                         Checkpoint(paths.checkpoint))
        return KubeletPlugin(paths, svc, self.device_health, self.health_poll)

    def device_health(self) -> dict[str, tuple[str, str]]:
        """Each published device's health, read now (devhealth.py says what counts)."""
        from . import devhealth

        # sysfs at /sys, as every other read of it: umockdev or the mount namespace put the tree
        # there (reading <tree>/sys directly would, for a tree under /dev/shm, look to umockdev
        # like opening a device node, and it leaks a socket on each such open)
        node, root = self.node, Path("/")
        if node is None:
            return {}
        if self.opts.kind == "neuron":
            return {f"neuron-device-{n.index}": devhealth.neuron_health(root, n.index) for n in node.neuron}
        return {attributes.efa_device_name(e.pci.bdf): devhealth.efa_health(root, e.rdma) for e in node.efa}

    def fresh_node(self) -> Node:
        """The hardware as it is now. One discovery at a time per process: pyudev's context is
        not safe to share between threads, and a host (host.py) prepares for many nodes at once."""
        with _DISCOVERY_LOCK:
            return discover(self.ctx, self.opts.vendor_root)

    def prepare(self, claim: dict, results: list[dict]) -> tuple[list[dict], str]:
        """Check the devices still exist, write the claim's CDI spec, return the kubelet's answer."""
        node = self.fresh_node()  # the tree may have changed since the last scan
        ns, name, uid = claim["metadata"]["namespace"], claim["metadata"]["name"], claim["metadata"]["uid"]
        configs = self._configs(claim)
        env: list[str] = []
        common: list[dict] = []
        nodes_by_device: dict[str, list[dict]] = {}
        if self.opts.kind == "neuron":
            present = {n.index: n for n in node.neuron}
            lnc = None
            for cfg in configs:
                lnc = self._neuron_config(cfg, ns, name)
            cores: list[int] = []
            indices: list[int] = []
            entries: list[dict] = []
            for r in results:
                n = present.get(partitions.device_index(r["device"]))
                if n is None or (partitions.parse(r["device"]) and not self.opts.partition_cores):
                    raise ClaimError(f"claim {ns}/{name}: device {r['device']} is not present on node "
                                     f"{self.opts.node_name} (removed since allocation?)")
                nodes_by_device[r["device"]] = [cdi.device_node(f"/dev/neuron{n.index}", n.dev)]
                size = lnc or DEFAULT_LNC.get(n.core_count, 1)
                per = max(1, n.core_count // size)  # logical cores per device: the runtime numbers them node-wide
                mine = sorted({n.index * per + c // size for c in partitions.cores_of(r["device"], n.core_count)})
                cores += mine
                indices.append(n.index)
                serial = present[(n.index + 1) % len(present)].serial if "status-neighbour-serial" in self.opts.bugs \
                    and (n.index + 1) % len(present) in present else n.serial
                entries.append(statusmod.entry(r, "NeuronDeviceReady", {"serial": serial, "logicalCores": mine,
                                                                        "logicalCoreSize": size}))
            env.append(f"NEURON_RT_VISIBLE_CORES={format_cpulist(cores)}")
            env.append("NEURON_DRA_DEVICES=" + ",".join(str(i) for i in dict.fromkeys(indices)))
            if lnc:
                env.append(f"NEURON_LOGICAL_NC_CONFIG={lnc}")
        else:
            present = {attributes.efa_device_name(e.pci.bdf): e for e in node.efa}
            rdma = []
            entries = []
            for r in results:
                e = present.get(r["device"])
                if e is None or e.uverbs is None:
                    raise ClaimError(f"claim {ns}/{name}: EFA {r['device']} is not present (or has no uverbs "
                                     f"device) on node {self.opts.node_name}")
                nodes_by_device[self._cdi_name(r)] = [cdi.device_node(f"/dev/infiniband/uverbs{e.uverbs}", e.uverbs_dev)]
                rdma.append(e.rdma or "")
                entries.append(statusmod.entry(r, "RDMAOnlyDeviceReady", {"rdmaDevice": e.rdma or "",
                                                                         "uverbs": f"uverbs{e.uverbs}"}))
            common = [cdi.device_node("/dev/infiniband/rdma_cm")]
            env += ["FI_PROVIDER=efa", "EFA_DRA_RDMA_DEVICES=" + ",".join(rdma)]
        path, ids = cdi.write_spec(self.opts.cdi_root, CDI_KINDS[self.opts.kind], uid, nodes_by_device, env, common)
        devices = [{"request_names": [r["request"].split("/", 1)[0]], "pool_name": r["pool"],
                    "device_name": r["device"], "cdi_device_ids": [ids[self._cdi_name(r)]],
                    **({"share_id": r["shareID"]} if r.get("shareID") else {})} for r in results]
        self._report(ns, name, entries, quiet=())
        return devices, str(path)

    def _report(self, namespace: str, name: str, entries: list[dict], quiet: tuple[int, ...]) -> None:
        """Apply this driver's status.devices entries of a claim (status.py; none: withdraw them).
        A refused write is logged, not fatal: the workload runs without it, as with DRANET's
        asynchronous write. `quiet`: statuses not worth a line (a claim already gone)."""
        if self.api_client is None:
            return
        from kubernetes.client.rest import ApiException

        from .rest import Rest

        try:
            Rest(self.api_client).apply_claim_status(namespace, name, statusmod.body(namespace, name, entries),
                                                     self.opts.driver)
        except ApiException as e:
            if e.status not in quiet:
                log.error("writing the claim's device status failed", extra={"fields": {
                    "claim": f"{namespace}/{name}", "status": e.status, "error": str(e.body or e.reason)[:400]}})

    def _cdi_name(self, result: dict) -> str:
        """One CDI device per allocated share (sharing.cdi_name); a Neuron device is never shared."""
        return sharing.cdi_name(result["device"], result.get("shareID"), self.opts.bugs)

    def unprepare(self, entry: dict) -> None:
        if entry.get("cdi_spec"):
            atomicfile.remove(Path(entry["cdi_spec"]))
        if entry.get("namespace") and entry.get("name"):  # a claim already gone or deallocated has none left
            self._report(entry["namespace"], entry["name"], [], quiet=(404, 409, 422))

    def _configs(self, claim: dict) -> list[dict]:
        alloc = claim["status"]["allocation"]
        return [c["opaque"]["parameters"] for c in alloc.get("devices", {}).get("config", []) or []
                if (c.get("opaque") or {}).get("driver") == self.opts.driver]

    @staticmethod
    def _neuron_config(params: dict, ns: str, name: str) -> int:
        """The opaque NeuronConfig of AWS's driver: {apiVersion: neuron.aws.com/v1, kind:
        NeuronConfig, logicalNeuronCore: 1|2} (NE §4.1)."""
        if params.get("apiVersion") != "neuron.aws.com/v1" or params.get("kind") != "NeuronConfig":
            raise ClaimError(f"claim {ns}/{name}: opaque config for neuron.aws.com must be apiVersion "
                             f"neuron.aws.com/v1, kind NeuronConfig; got {params.get('apiVersion')}/{params.get('kind')}")
        unknown = set(params) - {"apiVersion", "kind", "logicalNeuronCore"}
        if unknown:
            raise ClaimError(f"claim {ns}/{name}: unknown NeuronConfig field(s) {sorted(unknown)}")
        lnc = params.get("logicalNeuronCore", 1)
        if lnc not in (1, 2):
            raise ClaimError(f"claim {ns}/{name}: logicalNeuronCore must be 1 or 2, got {lnc!r}")
        return lnc

