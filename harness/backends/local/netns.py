"""A fake node's network: its own network namespace, as a real node has its own network stack.

- The namespace is held by a small child process (`unshare --net sleep`), so it disappears with
  the supervisor; drivers enter it with `nsenter --net=...`.
- A veth pair links it to the host with a /30 in 198.18.0.0/16 (never a private range). The node's
  end is named as the tree's primary ENA interface (ens5) and carries the default route, so a
  driver that skips the primary NIC (DRANET) sees what it sees on EC2; the tree's
  /sys/class/net/ens5/device leads to that ENA's PCI function.
- 169.254.169.254 is on the node's loopback; the fake IMDS (imds.py) listens there.
- The API server listens on the host's 127.0.0.1 only; the same port on the node's 127.0.0.1 is
  forwarded to it (TCP, so TLS stays end to end), and the kubeconfigs work unchanged. Ports a
  driver serves on its own loopback (health) are forwarded back to the host's.

Sockets are created inside the namespace by a thread that enters it with setns(2) (which
changes only the calling thread); a socket stays in the namespace it was created in.
"""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import logging
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import procs

log = logging.getLogger("netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
NODE_NET = ipaddress.ip_network("198.18.0.0/16")
IMDS_ADDR = "169.254.169.254"


class NetnsError(Exception):
    pass


def available() -> str | None:
    """Why node namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "node network namespaces need root"
    for tool in ("unshare", "nsenter", "ip"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            return f"`{tool}` is missing"
    return None


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


class _InNamespace:
    """A thread parked inside a namespace that makes sockets there on request."""

    def __init__(self, ns_path: str) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(ns_path,), name="in-netns", daemon=True).start()
        self.ready.wait(5)
        if self.error:
            raise NetnsError(f"cannot enter {ns_path}: {self.error}")

    def _run(self, ns_path: str) -> None:
        try:
            _setns(ns_path)
        except OSError as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        while True:
            fn, reply = self.requests.get()
            if fn is None:
                return
            try:
                reply.put((fn(), None))
            except BaseException as e:  # handed back to the caller
                reply.put((None, e))

    def make(self, fn: Callable[[], socket.socket]) -> socket.socket:
        reply: queue.Queue = queue.Queue()
        self.requests.put((fn, reply))
        sock, err = reply.get(timeout=10)
        if err:
            raise err
        return sock

    def close(self) -> None:
        self.requests.put((None, None))


def _listener(addr: str, port: int) -> Callable[[], socket.socket]:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(64)
        return s
    return make


def _connector(addr: str, port: int) -> Callable[[], socket.socket]:
    def make() -> socket.socket:
        return socket.create_connection((addr, port), timeout=10)
    return make


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Forward:
    """Accept on `listener`, connect with `connect()`, copy bytes both ways (TLS passes through)."""

    def __init__(self, listener: socket.socket, connect: Callable[[], socket.socket], name: str) -> None:
        self.listener, self.connect, self.name = listener, connect, name
        self.closed = False
        threading.Thread(target=self._accept, name=f"fwd-{name}", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = self.connect()
                upstream.settimeout(None)
            except OSError as e:
                log.warning("%s: upstream refused: %s", self.name, e)
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass


def wait_for_namespace(ns_path: str, holder: procs.Proc, what: str, timeout: float = 5) -> None:
    """Until `ns_path` (a holder's /proc/PID/ns/net) is a namespace other than ours: unshare
    execs its sleep only once the namespace exists."""
    mine = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.stat(ns_path).st_ino != mine:
                return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline or not procs.alive(holder):
            raise NetnsError(f"{what} did not come up ({ns_path})")
        time.sleep(0.005)


def ip_in_ns(ns_path: str, batch: str, what: str) -> None:
    """`ip -batch` inside the namespace; a failure names `what` was being set up."""
    r = subprocess.run(["nsenter", f"--net={ns_path}", "--", "ip", "-batch", "-"], input=batch,
                       capture_output=True, text=True)
    if r.returncode:
        raise NetnsError(f"{what}: {r.stderr.strip()}")


def _pick_block(seed: str, taken: set[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    blocks = NODE_NET.num_addresses // 4
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % blocks
    for i in range(blocks):
        net = ipaddress.ip_network((int(NODE_NET.network_address) + 4 * ((start + i) % blocks), 30))
        if net not in taken:
            return net
    raise NetnsError("no free /30 left in 198.18.0.0/16")


def _taken() -> set[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    nets = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            iface = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            if iface.ip in NODE_NET:
                nets.add(ipaddress.ip_network((int(iface.ip) & ~3, 30)))
    return nets


class NodeNet:
    """One node's namespace with its veth, IMDS address and forwarded ports (see module doc)."""

    _lock = threading.Lock()  # address blocks are picked one node at a time

    def __init__(self, cluster: str, node: str, ifname: str, log_path: Path) -> None:
        self.node, self.ifname = node, ifname
        self.forwards: list[Forward] = []
        self.holder, self.popen = procs.spawn(f"{node}.netns", ["unshare", "--net", "--", "sleep", "infinity"], log_path)
        self.ns_path = f"/proc/{self.holder.pid}/ns/net"
        wait_for_namespace(self.ns_path, self.holder, f"the network namespace of {node} (see {log_path})")
        with NodeNet._lock:
            self.block = _pick_block(f"{cluster}/{node}", _taken())
            host_ip, node_ip = list(self.block.hosts())
            self.host_if = "dh" + hashlib.sha256(f"{cluster}/{node}".encode()).hexdigest()[:10]
            self._ip(["link", "add", self.host_if, "type", "veth", "peer", "name", "dhpeer0", "netns", str(self.holder.pid)])
            self._ip(["addr", "add", f"{host_ip}/30", "dev", self.host_if])
            self._ip(["link", "set", self.host_if, "up"])
        ip_in_ns(self.ns_path, "\n".join([
            "link set lo up", f"addr add {IMDS_ADDR}/32 dev lo", f"link set dhpeer0 name {ifname}",
            f"addr add {node_ip}/30 dev {ifname}", f"link set {ifname} up", f"route add default via {host_ip}"]),
                 f"setting up the network of {node}")
        self.host_ip, self.node_ip = str(host_ip), str(node_ip)
        self.inside = _InNamespace(self.ns_path)

    def _ip(self, args: list[str]) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if r.returncode:
            raise NetnsError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def wrap(self, argv: list[str]) -> list[str]:
        """argv run inside the node's network namespace."""
        return ["nsenter", f"--net={self.ns_path}", "--", *argv]

    def forward_in(self, port: int) -> None:
        """The node's 127.0.0.1:port reaches the host's 127.0.0.1:port (the API server)."""
        listener = self.inside.make(_listener("127.0.0.1", port))
        self.forwards.append(Forward(listener, _connector("127.0.0.1", port), f"{self.node}-in-{port}"))

    def forward_out(self, port: int) -> None:
        """The host's 127.0.0.1:port reaches the node's 127.0.0.1:port (a driver's health port)."""
        listener = _listener("127.0.0.1", port)()
        self.forwards.append(Forward(listener, lambda: self.inside.make(_connector("127.0.0.1", port)),
                                     f"{self.node}-out-{port}"))

    def listen(self, addr: str, port: int) -> socket.socket:
        """A listening socket inside the node's namespace (the IMDS server's)."""
        return self.inside.make(_listener(addr, port))

    def close(self) -> None:
        for f in self.forwards:
            f.close()
        self.inside.close()
        # Deleting the host end removes the pair at once (the namespace's own teardown is asynchronous).
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        procs.stop(self.holder, timeout=2, popen=self.popen)
