"""Host mode: one driver process serving many fake nodes that see the same tree (issue 14).

Why: a driver process per node costs about 60 MB and a second of a core to start; at 500 nodes
that is 30 GB. Nodes of one topology share one rendered tree (read-only), so one scan serves
them all, while each node keeps everything a node's driver has of its own: its name and
credentials (a kubeconfig per node, node-scoped RBAC), its kubelet plugin sockets, CDI
directory, checkpoint and ResourceSlices. A node whose tree is changed gets its own copy and
its own process (the harness moves it out: SIGHUP re-reads the node list).

The node list is JSON: [{"node_name", "kubeconfig", "registry_dir", "plugins_dir", "cdi_root"}].
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .devhealth import KEEPALIVE
from .driver import Driver, Options
from .watch import Watcher

log = logging.getLogger("refdriver")
FIELDS = ("node_name", "kubeconfig", "registry_dir", "plugins_dir", "cdi_root")


@dataclass(frozen=True)
class HostedNode:
    node_name: str
    kubeconfig: str
    registry_dir: str
    plugins_dir: str
    cdi_root: str


def raise_fd_limit() -> int:
    """The soft open-files limit up to the hard one: each node holds two gRPC servers, its
    connections and the files it writes, and the usual soft limit of 1024 ran out at 50 nodes
    (prepares then failed with EMFILE). Returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def load_nodes(path: Path) -> dict[str, HostedNode]:
    """The node list; every problem is one line naming the file."""
    try:
        data = json.loads(Path(path).read_text())
        nodes = [HostedNode(**{k: str(d[k]) for k in FIELDS}) for d in data]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a host node list ({e.__class__.__name__}: {e}); "
                         f"want a JSON list of objects with {', '.join(FIELDS)}") from None
    return {n.node_name: n for n in nodes}


class Host:
    """The drivers of every listed node, published from one scan of the shared tree."""

    def __init__(self, base: Options, nodes_file: Path, workers: int = 8) -> None:
        raise_fd_limit()
        self.base, self.nodes_file = base, nodes_file
        self.scanner = Driver(replace(base, kubelet_plugin=False))
        self.drivers: dict[str, Driver] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="node")
        self.stop_event = threading.Event()
        self.reload = threading.Event()
        self.watcher = Watcher()
        self.health_lock = threading.Lock()
        self.health_cache: dict[str, tuple[str, str]] = {}
        self.health_at = -1e9

    def _start(self, hn: HostedNode) -> Driver:
        from kubernetes import config

        from .slices import Publisher

        opts = replace(self.base, node_name=hn.node_name, registry_dir=Path(hn.registry_dir),
                       plugins_dir=Path(hn.plugins_dir), cdi_root=Path(hn.cdi_root), health_port=0)
        d = Driver(opts, config.new_client_from_config(config_file=hn.kubeconfig))
        d.node = self.scanner.node
        # the shared tree never changes (a node whose tree changes leaves the host): prepare
        # reads the host's last scan instead of discovering again, once per node and claim
        d.fresh_node = lambda: self.scanner.node
        # one health reading of the shared tree for every node's DRAResourceHealth stream: 500
        # streams each reading 32 counter files twice a second would take both cores
        d.device_health = self.shared_health
        # a shared tree never changes (a node whose tree changes leaves the host), so its health
        # cannot either: each node's stream only needs its keepalive, not a look twice a second
        # (500 streams polling kept a core busy)
        d.health_poll = KEEPALIVE
        d.publisher = Publisher(d.api_client, hn.node_name, opts.driver,
                                keep_taint_times="taint-time-reset" not in opts.bugs)
        if opts.kubelet_plugin:
            d.plugin = d._make_plugin()
            d.plugin.start()
        return d

    def shared_health(self) -> dict[str, tuple[str, str]]:
        """The devices' health in the shared tree, read at most once per keepalive (the streams'
        poll interval here)."""
        with self.health_lock:
            now = time.monotonic()
            if now - self.health_at >= KEEPALIVE:
                self.health_cache, self.health_at = self.scanner.device_health(), now
            return self.health_cache

    def _stop(self, d: Driver) -> None:
        if d.plugin:
            d.plugin.stop()

    def sync_nodes(self) -> None:
        """Start the listed nodes not yet served, stop the ones no longer listed."""
        want = load_nodes(self.nodes_file)
        gone = [n for n in self.drivers if n not in want]
        for name in gone:
            self._stop(self.drivers.pop(name))
        new = [hn for name, hn in want.items() if name not in self.drivers]
        for hn, d in zip(new, self.pool.map(self._start, new)):
            self.drivers[hn.node_name] = d
        log.info("serving nodes", extra={"fields": {"nodes": len(self.drivers), "started": len(new), "stopped": len(gone)}})

    def run(self) -> None:
        def on_stop(*_):
            self.stop_event.set()
            self.watcher.wake()

        def on_hup(*_):
            self.reload.set()
            self.watcher.wake()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        devices = self.scanner.scan()
        self.sync_nodes()
        try:
            while not self.stop_event.is_set():
                if self.reload.is_set():
                    self.reload.clear()
                    self.sync_nodes()
                stale = "stale-after-hotplug" in self.base.bugs and all(d.published_at for d in self.drivers.values())
                if not stale:
                    devices = self.scanner.scan()
                for d in self.drivers.values():
                    d.node = self.scanner.node
                todo = [d for d in self.drivers.values() if d.publisher.given != devices or d.last_publish_error]
                sets = self.scanner.counter_sets
                list(self.pool.map(lambda d: d.publish(d.publisher, devices, sets), todo))
                self.watcher.rearm(self.scanner._watch_paths())
                if any(d.last_publish_error for d in self.drivers.values()):
                    self.watcher.wait(1.0)
                else:
                    self.scanner._wait_for_change(self.watcher)
        finally:
            self.watcher.close()
            for d in self.drivers.values():
                self._stop(d)
            self.pool.shutdown(wait=False)
            log.info("stopped")

    def health(self) -> tuple[bool, dict]:
        published = sum(1 for d in self.drivers.values() if d.published_at and not d.last_publish_error)
        return published == len(self.drivers) > 0, {"driver": self.base.driver, "nodes": len(self.drivers),
                                                     "published": published}
