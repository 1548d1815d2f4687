"""The kubelet's plugin watcher, for fake nodes: every socket that appears in a node's
`plugins_registry/` is registered at once (GetInfo, then NotifyRegistrationStatus), whatever
its file name (rolling-update names like `<driver>-<uid>-reg.sock` included), under the driver
name GetInfo gives; when the socket disappears the plugin is de-registered and its
ResourceSlices for that node are wiped, as the kubelet's DRA plugin manager does
(pkg/kubelet/pluginmanager, cm/dra/plugin; research/dra-api.md §3, external-drivers.md L4).

Directory changes arrive through inotify, so registration follows socket creation within
milliseconds; a periodic rescan catches anything missed."""

from __future__ import annotations

import ctypes
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("plugin-watcher")
_libc = ctypes.CDLL(None, use_errno=True)
IN_CREATE, IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO, IN_NONBLOCK, IN_CLOEXEC = 0x100, 0x200, 0x40, 0x80, 0o4000, 0o2000000
EVENT = struct.Struct("iIII")


def _answers(path: Path) -> bool:
    """Is anybody listening on the socket? A killed plugin leaves its socket file behind; the
    kubelet notices the broken connection (and newer ones re-send GetInfo), so does this."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        try:
            s.connect(str(path))
            return True
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # busy or slow: not a proof of death


class PluginWatcher:
    """Watches the registry directories of every node of a cluster.

    register(node, socket) -> driver name (raises when the handshake fails); on_gone(node, driver)
    runs when a registered plugin's socket disappears."""

    def __init__(self, dirs: dict[str, Path], register: Callable[[str, Path], str],
                 on_gone: Callable[[str, str], None]) -> None:
        self.dirs = dirs
        self.register, self.on_gone = register, on_gone
        self.sockets: dict[tuple[str, str], str] = {}  # (node, socket file name) -> driver
        self.failed: dict[tuple[str, str], str] = {}  # (node, socket file name) -> last handshake error
        self.registered_at: dict[tuple[str, str], float] = {}  # (node, driver) -> monotonic time
        self.seen_at: dict[tuple[str, str], float] = {}  # (node, socket) -> when it appeared (until registered)
        self.latency_ms: list[float] = []  # socket appeared -> registered, per registration
        self.stop_event = threading.Event()
        self.probe_now = threading.Event()
        self.lock = threading.Lock()
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.wd: dict[int, str] = {}
        for node, d in dirs.items():
            d.mkdir(parents=True, exist_ok=True)
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(d), IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
            self.wd[wd] = node

    def drivers(self, node: str) -> list[str]:
        with self.lock:
            return sorted({d for (n, _), d in self.sockets.items() if n == node})

    PROBE_INTERVAL = 5.0  # liveness of registered sockets, as newer kubelets re-send GetInfo

    def run(self) -> None:
        self.rescan()
        last_probe = time.monotonic()
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self.stop_event.is_set():
            ready = poller.poll(500)  # poll(): a 500-node supervisor holds fds above select()'s 1024
            replaced, touched = self._drain() if ready else (set(), set())
            probe = self.probe_now.is_set() or time.monotonic() - last_probe > self.PROBE_INTERVAL
            if probe:
                self.probe_now.clear()
                last_probe = time.monotonic()
            # the nodes with events and those with a handshake to retry; every node when probing
            # (a directory listing each: at 500 nodes, a full scan twice a second would cost a core)
            only = None if probe else touched | {n for n, _ in self.failed}
            self.rescan(replaced, probe, only)

    def probe_soon(self) -> None:
        """Check the registered sockets at the next scan (a driver process was seen to die)."""
        self.probe_now.set()

    def stop(self) -> None:
        self.stop_event.set()

    def _drain(self) -> tuple[set[tuple[str, str]], set[str]]:
        """Note when sockets appear; return those removed since the last scan (a restarted
        driver removes and re-creates its socket: that is a de-registration and a new one) and
        the nodes whose directories changed."""
        removed: set[tuple[str, str]] = set()
        touched: set[str] = set()
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return removed, touched
        i = 0
        while i < len(data):
            wd, mask, _, length = EVENT.unpack_from(data, i)
            name = data[i + EVENT.size:i + EVENT.size + length].rstrip(b"\0").decode(errors="replace")
            i += EVENT.size + length
            node = self.wd.get(wd)
            if not node or name.startswith("."):  # the plugin watcher ignores dot files
                continue
            touched.add(node)
            if mask & (IN_CREATE | IN_MOVED_TO):
                self.seen_at.setdefault((node, name), time.monotonic())
            if mask & (IN_DELETE | IN_MOVED_FROM):
                removed.add((node, name))
        return removed, touched

    def rescan(self, removed: set[tuple[str, str]] = frozenset(), probe: bool = False,
               only: set[str] | None = None) -> None:
        """Register new sockets and forget vanished ones, in every node's directory or `only`
        those nodes'."""
        registered: dict[str, list[tuple[str, str]]] = {}
        for key in self.sockets:
            registered.setdefault(key[0], []).append(key)
        for node, d in self.dirs.items():
            if only is not None and node not in only:
                continue
            try:
                present = {e.name for e in os.scandir(d)
                           if not e.name.startswith(".") and stat.S_ISSOCK(e.stat(follow_symlinks=False).st_mode)}
            except OSError:
                present = set()
            self._forget([k for k in registered.get(node, []) if
                          k[1] not in present or k in removed or (probe and not _answers(d / k[1]))])
            for name in sorted(present):
                key = (node, name)
                if key in self.sockets:
                    continue
                self.seen_at.setdefault(key, time.monotonic())
                try:
                    driver = self.register(node, d / name)
                except Exception as e:  # not serving yet, or not a DRA plugin: retried next scan
                    if self.failed.get(key) != str(e):
                        log.info("registration of %s on %s not done yet: %s", name, node, e)
                    self.failed[key] = str(e)
                    continue
                with self.lock:
                    self.sockets[key] = driver
                    self.registered_at[(node, driver)] = time.monotonic()
                self.failed.pop(key, None)
                self.latency_ms.append(1000 * (time.monotonic() - self.seen_at.pop(key)))
                log.info("registered plugin %s from %s on node %s %.1f ms after its socket appeared", driver, name,
                         node, self.latency_ms[-1])
            for key in [k for k in list(self.failed) if k[0] == node and k[1] not in present]:
                self.failed.pop(key, None)

    def _forget(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            node = key[0]
            with self.lock:
                driver = self.sockets.pop(key)
            if not any(d == driver for (n, _), d in self.sockets.items() if n == node):
                log.info("plugin %s on node %s de-registered (socket %s gone)", driver, node, key[1])
                self.registered_at.pop((node, driver), None)
                try:
                    self.on_gone(node, driver)
                except Exception as e:
                    log.warning("de-registering %s on %s: %s", driver, node, e)
