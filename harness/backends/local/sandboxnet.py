"""Pod sandboxes' networks on the fake nodes, as a container runtime and its CNI plugin make them:
each pod that is not `hostNetwork` gets its own network namespace, linked to its node's
namespace by a veth pair (`eth0` inside, a /30 in 198.19.0.0/18), and the runtime's NRI events
carry that namespace's path (PodSandbox.linux.namespaces), as containerd's do.

Why: NRI plugins that move or configure interfaces for a pod (DRANET) read the sandbox's network
namespace from RunPodSandbox and refuse a pod without one as `hostNetwork` ("using host network
can not claim host devices", issue 21). Named as what it is: a runtime's sandbox network, made
here because the fake nodes run no containerd.

Each namespace is held by a small child (`unshare --net sleep`), as the nodes' are (netns.py):
its path is /proc/PID/ns/net, and it goes away with the supervisor, never leaked.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import procs
from .netns import NetnsError, ip_in_ns, wait_for_namespace

log = logging.getLogger("sandboxnet")
SANDBOX_NET = ipaddress.ip_network("198.19.0.0/18")  # clear of the node links (198.18.0.0/16) and kind's ranges


@dataclass
class Sandbox:
    uid: str
    holder: procs.Proc
    popen: subprocess.Popen
    ns_path: str
    node_if: str
    block: ipaddress.IPv4Network


class SandboxNetworks:
    """The sandbox namespaces of every node of one cluster. `node_pid(node)`: a process in the
    node's network namespace (its holder), or None when the node shares the host's."""

    def __init__(self, log_dir: Path, node_pid) -> None:
        self.log_dir, self.node_pid = log_dir, node_pid
        self.lock = threading.Lock()
        self.sandboxes: dict[str, Sandbox] = {}  # pod uid -> its sandbox
        self.blocks: set[ipaddress.IPv4Network] = set()

    def _block(self, uid: str) -> ipaddress.IPv4Network:
        blocks = list(SANDBOX_NET.subnets(new_prefix=30))
        start = int(hashlib.sha256(uid.encode()).hexdigest(), 16) % len(blocks)
        for i in range(len(blocks)):
            b = blocks[(start + i) % len(blocks)]
            if b not in self.blocks:
                self.blocks.add(b)
                return b
        raise NetnsError(f"no free /30 in {SANDBOX_NET} for another pod sandbox")

    def create(self, node: str, uid: str) -> str:
        """The sandbox namespace of pod `uid` on `node` (made once); returns its path."""
        with self.lock:
            if uid in self.sandboxes:
                return self.sandboxes[uid].ns_path
            block = self._block(uid)
        holder, popen = procs.spawn(f"sandbox-{uid[:8]}.netns", ["unshare", "--net", "--", "sleep", "infinity"],
                                self.log_dir / "sandbox-netns.log")
        ns_path = f"/proc/{holder.pid}/ns/net"
        try:
            wait_for_namespace(ns_path, holder, "a pod sandbox's network namespace")
            node_if = "sb" + hashlib.sha256(uid.encode()).hexdigest()[:11]
            node_ip, pod_ip = list(block.hosts())
            node_pid = self.node_pid(node) or os.getpid()
            inside = "\n".join(["link set lo up", f"link add eth0 type veth peer name {node_if}",
                                f"link set {node_if} netns {node_pid}", f"addr add {pod_ip}/30 dev eth0",
                                "link set eth0 up", f"route add default via {node_ip}"])
            ip_in_ns(ns_path, inside, "a pod sandbox's network")
            node_ns = f"/proc/{node_pid}/ns/net"
            ip_in_ns(node_ns, f"addr add {node_ip}/30 dev {node_if}\nlink set {node_if} up", "a pod sandbox's network")
        except BaseException:
            procs.stop(holder, timeout=1, popen=popen)
            with self.lock:
                self.blocks.discard(block)
            raise
        with self.lock:
            self.sandboxes[uid] = Sandbox(uid, holder, popen, ns_path, node_if, block)
        return ns_path

    def path(self, uid: str) -> str | None:
        s = self.sandboxes.get(uid)
        return s.ns_path if s else None

    def remove(self, uid: str) -> None:
        """The namespace goes with its holder; the veth pair goes with the namespace."""
        with self.lock:
            s = self.sandboxes.pop(uid, None)
        if s is None:
            return
        procs.stop(s.holder, timeout=1, popen=s.popen)
        with self.lock:
            self.blocks.discard(s.block)

    def close(self) -> None:
        for uid in list(self.sandboxes):
            self.remove(uid)
