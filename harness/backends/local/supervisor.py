"""The supervisor of one local cluster: the single process that owns every component.

It starts the control plane, renders each node's tree, creates the Node objects, starts each
node's drivers, waits until every driver has published its slices, reports "ready" on a pipe,
then serves: the kubelet stand-in, and a control socket (status, restart-driver, reconfigure, stop).
All children are spawned from the main thread with PR_SET_PDEATHSIG, so if the supervisor dies
for any reason, everything it started dies with it. On stop it tears down in reverse order and
removes its state directory; logs stay in the artifacts directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import fakedev

from ...kube import Kube, WaitTimeout
from .. import imds, procs, profiles, shared
from ..handle import FAILURE_FILE
from ..paths import write_private
from ..spec import ClusterSpec
from . import netns, rbac
from .driverhosts import DriverHosts
from .nri import NriRuntime
from .controlplane import ControlPlane, free_port
from .sandboxnet import SandboxNetworks
from .kubelet_standin import KubeletStandIn
from .layout import ClusterLayout, remove_marked
from .state import LocalState, NodeState

log = logging.getLogger("supervisor")

# A crashed driver starts again after the kubelet's CrashLoopBackOff: 10 s, doubling, at most 5 min.
DRIVER_BACKOFF_FIRST, DRIVER_BACKOFF_MAX = 10.0, 300.0


@dataclass
class RunningDriver:
    """A driver process and exactly what started it, so a restart is the same start again."""

    proc: procs.Proc
    popen: object
    argv: list[str]
    env: dict[str, str]
    driver: str  # the DRA driver name (socket names)


class Supervisor:
    def __init__(self, spec: ClusterSpec, lay: ClusterLayout, bin_dir: Path, timeout: float) -> None:
        self.spec, self.lay, self.bin_dir, self.timeout = spec, lay, bin_dir, timeout
        self.cp = ControlPlane(bin_dir, lay.control_dir, lay.log_dir, k8s_version=spec.k8s_version,
                               beta_apis=spec.beta_apis, feature_gates=spec.feature_gates)
        self.drivers: dict[tuple[str, str], RunningDriver] = {}  # (node, profile name) -> what runs
        self.requests: queue.Queue = queue.Queue()
        self.standin: KubeletStandIn | None = None
        self.crashed: list[str] = []
        # a crashed per-node driver: (when to start it again, crashes so far), as a DaemonSet's pod
        self.driver_backoff: dict[tuple[str, str], tuple[float, int]] = {}
        self.restarts: dict[str, list[float]] = {}  # control-plane component -> when it was restarted
        self.failure: str | None = None  # why the cluster cannot go on (a component that a restart cannot help)
        self.nets: dict[str, netns.NodeNet] = {}
        self.trees: Future | None = None  # the trees being rendered while the control plane starts
        self.topos: dict[str, fakedev.Topology] = {}  # loaded once at bring-up, used by every step
        self.imds: dict[str, tuple[imds.Imds, str]] = {}  # node -> (server, endpoint as its drivers see it)
        self.nri: NriRuntime | None = None
        self.sandboxes: SandboxNetworks | None = None
        self.hosts: DriverHosts | None = None  # host mode: many nodes per driver process (driverhosts.py)

    # -- bring-up ----------------------------------------------------------------------------------
    def up(self) -> None:
        deadline = time.monotonic() + self.timeout
        (self.lay.artifacts / FAILURE_FILE).unlink(missing_ok=True)  # a previous run's, under the same name
        t0 = time.monotonic()
        self.topos = {n.name: n.load_topology() for n in self.spec.nodes}
        if self.spec.wants_driver_hosts():
            if self.spec.netns:
                raise RuntimeError("--driver-hosts on and --netns on exclude each other: one process serves "
                                   "many nodes, so it cannot live in each node's network namespace")
            self.hosts = DriverHosts(self.spec, self.lay, self.topos)
        # files only: overlaps the control plane's start-up
        self.trees = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trees").submit(self._render_trees)
        self.cp.start(deadline)
        log.info("control plane healthy after %.2fs", time.monotonic() - t0)
        kube = Kube(str(self.cp.admin_kubeconfig))
        for obj in rbac.DRIVER_RBAC:
            kube.apply(obj)
        for prof in sorted({d for n in self.spec.nodes for d in n.drivers}):  # the DeviceClasses each driver ships
            for obj in profiles.resolve(prof).device_class_objects():  # nothing but DeviceClasses (row 10)
                kube.apply(obj)
        log.info("RBAC and DeviceClasses applied after %.2fs", time.monotonic() - t0)
        self.trees.result()  # re-raises what the render raised
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="nodes") as pool:  # 3 requests a node: 500 nodes in seconds
            list(pool.map(lambda n: self._create_node(kube, n.name, n.labels, self.topos[n.name]), self.spec.nodes))
        log.info("trees rendered and nodes created after %.2fs", time.monotonic() - t0)
        self._networks()
        log.info("node networks and IMDS up after %.2fs (%s)", time.monotonic() - t0,
                 "a namespace per node" if self.nets else "host network")
        for n in self.spec.nodes:  # the kubelet's directories, as it creates them before any plugin runs
            self.lay.registry_dir(n.name).mkdir(parents=True, exist_ok=True)
            self.lay.plugins_dir(n.name).mkdir(parents=True, exist_ok=True)
        if self.spec.wants_nri():  # the runtime's NRI socket exists before any plugin runs, as on a node
            self.nri = NriRuntime(self.bin_dir / "nri-standin", {n.name: self.lay.nri_socket(n.name) for n in self.spec.nodes},
                                  self.lay.log_dir / "nri-standin.log")
            self.cp.procs.append(self.nri.proc)
            log.info("NRI runtime stand-in up after %.2fs", time.monotonic() - t0)
        # The kubelet side runs before any driver: registration is eager, as the plugin watcher's.
        self.sandboxes = None
        if self.nri is not None and netns.available() is None:  # the runtime's pod sandboxes get their own network
            self.sandboxes = SandboxNetworks(self.lay.log_dir, lambda node: self.nets[node].holder.pid
                                             if node in self.nets else None)
        self.standin = KubeletStandIn(kube, {n.name: self.lay.registry_dir(n.name) for n in self.spec.nodes},
                                      nri=self.nri, sandboxes=self.sandboxes)
        threading.Thread(target=self.standin.run, name="kubelet-standin", daemon=True).start()
        if self.hosts:
            self.hosts.start(self._host_entry, lambda: {"health_port": str(free_port())})
        else:
            for n in self.spec.nodes:
                for prof_name in n.drivers:
                    self._start_driver(n.name, prof_name, n.driver_args)
        self._wait_slices(kube, deadline)
        log.info("all slices published after %.2fs", time.monotonic() - t0)
        log.info("cluster up in %.2fs", time.monotonic() - t0)
        self._write_state()

    def _render_trees(self) -> None:
        if self.hosts:
            self.hosts.render()
            return
        for n in self.spec.nodes:
            fakedev.generate(self.topos[n.name], self.lay.tree(n.name))

    def _networks(self) -> None:
        """A network namespace per node where it can be made (netns.py), and a fake IMDS per node:
        at 169.254.169.254 inside the namespace, else on a loopback port of the host."""
        if self.hosts:  # one process for many nodes: the host network, and no IMDS (the reference drivers need none)
            log.info("host mode: %d nodes in %d tree groups, host network, no IMDS", len(self.spec.nodes),
                     len(self.hosts.groups))
            return
        why = netns.available()
        want = self.spec.netns if self.spec.netns is not None else why is None
        if want and why:
            raise RuntimeError(f"--netns was asked for, but {why}")
        port = int(self.cp.server.rsplit(":", 1)[1])
        for n in self.spec.nodes:
            topo = self.topos[n.name]
            if want:
                net = netns.NodeNet(self.spec.name, n.name, topo.ena[0].ifname if topo.ena else "ens5",
                                    self.lay.log_dir / f"{n.name}.netns.log")
                self.nets[n.name] = net
                data = imds.node_metadata(n.name, topo, self.spec.name, net.node_ip)
                self.cp.procs.append(net.holder)  # recorded, so a crashed supervisor's leftovers are found
                net.forward_in(port)
                self.imds[n.name] = (imds.Imds(net.listen(netns.IMDS_ADDR, 80), data), f"http://{netns.IMDS_ADDR}")
            else:
                data = imds.node_metadata(n.name, topo, self.spec.name)
                listener = socket.socket()
                listener.bind(("127.0.0.1", 0))
                listener.listen(16)
                self.imds[n.name] = (imds.Imds(listener, data), f"http://127.0.0.1:{listener.getsockname()[1]}")

    def _create_node(self, kube: Kube, name: str, labels: dict, topo: fakedev.Topology) -> None:
        cpus, mem = topo.nr_cpus, sum(n.memory_gib for n in topo.numa_nodes)
        kube.core.create_node({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                                    "kubernetes.io/os": "linux", **labels}},
                               "spec": {}})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        cap = {"cpu": str(cpus), "memory": f"{mem}Gi", "pods": "250"}
        kube.core.patch_node_status(name, {"status": {
            "capacity": cap, "allocatable": cap,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletStandInReady",
                            "message": "fake node served by the dra-harness kubelet stand-in",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "nodeInfo": {"kubeletVersion": self.spec.k8s_version or "", "architecture": "amd64", "operatingSystem": "linux",
                         "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "dra-harness fake node",
                         "containerRuntimeVersion": "", "kubeProxyVersion": ""}}})
        # TaintNodesByCondition admission taints new nodes not-ready; the node lifecycle
        # controller (off: no kubelet heartbeats) would lift it once Ready, so the supervisor does.
        kube.core.patch_node(name, {"spec": {"taints": None}})

    def _node_kubeconfig(self, node: str, prof: profiles.DriverProfile) -> Path:
        """The node's own credentials for this driver (node-scoped RBAC), and its directories:
        plugins/<driver>/ exists before the driver starts, as a DaemonSet's hostPath makes it."""
        user, groups = rbac.driver_subject(node, prof.driver)
        kc = self.cp.pki.kubeconfig(self.lay.node_dir(node) / f"{prof.name}.kubeconfig", self.cp.server,
                                    f"{node}-{prof.name}", user, groups)
        (self.lay.plugins_dir(node) / prof.driver).mkdir(parents=True, exist_ok=True)
        self.lay.cdi_dir(node).mkdir(parents=True, exist_ok=True)
        return kc

    def _host_entry(self, node: str, prof_name: str) -> dict:
        """A node's line in a driver host's node list (refdriver/host.py)."""
        prof = profiles.resolve(prof_name)
        return {"node_name": node, "kubeconfig": str(self._node_kubeconfig(node, prof)),
                "registry_dir": str(self.lay.registry_dir(node)), "plugins_dir": str(self.lay.plugins_dir(node)),
                "cdi_root": str(self.lay.cdi_dir(node))}

    def _start_driver(self, node: str, prof_name: str, extra: dict[str, list[str]]) -> None:
        prof = profiles.resolve(prof_name, extra)
        kc = self._node_kubeconfig(node, prof)
        values = dict(node=node, tree=str(self.lay.tree(node)), kubeconfig=str(kc),
                      kubelet_dir=str(self.lay.kubelet_dir(node)), registry_dir=str(self.lay.registry_dir(node)),
                      plugins_dir=str(self.lay.plugins_dir(node)), cdi_root=str(self.lay.cdi_dir(node)),
                      health_port=str(free_port()), bin_dir=str(self.bin_dir),
                      imds_endpoint=self.imds[node][1] if node in self.imds else "",
                      nri_socket=str(self.lay.nri_socket(node)) if self.nri else "")
        binds = [(str(self.lay.nri_socket(node).parent), "/var/run/nri")] if self.nri and prof.nri else []
        argv = prof.argv(binds, **values)
        env = prof.environment(**values)
        net = self.nets.get(node)
        if net is not None:  # the driver lives in its node's network namespace
            argv = net.wrap(argv)
            if any("{health_port}" in a for a in prof.command):
                net.forward_out(int(values["health_port"]))
        p, popen = procs.spawn(f"{node}.{prof.name}", argv, self.lay.log_dir / f"{node}.{prof.name}.log", env=env)
        self.drivers[(node, prof.name)] = RunningDriver(p, popen, argv, env, prof.driver)

    def _wait_slices(self, kube: Kube, deadline: float, want: set[tuple[str, str]] | None = None,
                     since: float | None = None) -> None:
        """Until every (node, driver) in `want` (default: all) has slices and is registered with
        the kubelet stand-in (after `since`, for drivers started again)."""
        if want is None:
            want = {(n.name, profiles.resolve(d).driver) for n in self.spec.nodes for d in n.drivers}

        def registered(node: str, driver: str) -> bool:
            if self.standin is None:
                return True
            if since is None:
                return (node, driver) in self.standin.watcher.registered_at
            return self._registered_since(node, driver, since)

        def done(lst) -> bool:
            # published and registered with the kubelet stand-in: a driver can publish before its
            # registration socket is served, and a pod then would find no plugin to prepare it
            # (test_external_driver caught `up` returning between the two)
            return want <= {(s["spec"].get("nodeName"), s["spec"]["driver"]) for s in lst["items"]} \
                and all(registered(n, d) for n, d in want)

        def dead_driver() -> None:
            for p in [*(d.proc for d in self.drivers.values()), *(self.hosts.procs() if self.hosts else [])]:
                if not procs.alive(p):
                    raise RuntimeError(f"driver {p.name} exited during start-up; last log lines ({p.log}):\n"
                                       f"{procs.tail(p.log)}")

        # Short watches in turn with a look at the drivers: a driver that dies produces no slice
        # event, and must be named within a second, not at the timeout.
        while True:
            dead_driver()
            left = deadline - time.monotonic()
            try:
                kube.wait("ResourceSlice", done, what=f"ResourceSlices of {len(want)} node drivers",
                          timeout=max(0.05, min(0.5, left)),
                          describe=lambda lst: "published: " + ", ".join(sorted(
                              f"{s['spec'].get('nodeName')}/{s['spec']['driver']}" for s in lst["items"]))
                          + f"; wanted: {sorted(want)}; not registered yet: "
                          + str(sorted(x for x in want if not registered(*x))))
                return
            except WaitTimeout:
                if left <= 0.5:
                    raise

    # -- serving -----------------------------------------------------------------------------------
    def state(self) -> LocalState:
        lay = self.lay
        return LocalState(
            name=self.spec.name, pid=os.getpid(), k8s_version=self.spec.k8s_version, server=self.cp.server,
            kubeconfig=str(self.cp.admin_kubeconfig), bin_dir=str(self.bin_dir), artifacts=str(lay.artifacts),
            state_dir=str(lay.root), spec=self.spec.to_dict(),
            nodes={n.name: NodeState(tree=str(lay.tree(n.name)), cdi_dir=str(lay.cdi_dir(n.name)),
                                     plugins_dir=str(lay.plugins_dir(n.name)), registry_dir=str(lay.registry_dir(n.name)),
                                     topology=n.topology, kubelet_dir=str(lay.kubelet_dir(n.name)),
                                     netns=self.nets[n.name].ns_path if n.name in self.nets else "",
                                     imds_endpoint=self.imds[n.name][1] if n.name in self.imds else "",
                                     nri_socket=str(lay.nri_socket(n.name)) if self.nri else "")
                   for n in self.spec.nodes},
            procs=[p.to_dict() for p in self.cp.procs] + [d.proc.to_dict() for d in self.drivers.values()]
            + [p.to_dict() for p in (self.hosts.procs() if self.hosts else [])],
            crashed=list(self.crashed))

    def _write_state(self) -> None:
        self.state().write(self.lay.state_file)

    def open_control(self) -> None:
        """Bind the control socket before reporting ready, so clients never race its creation."""
        path = str(self.lay.control_socket)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        os.chmod(path, 0o600)
        self.srv.listen(8)
        threading.Thread(target=self._control_socket, name="control", daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                req, reply = self.requests.get(timeout=0.25)  # a dead child is noticed within a second
            except queue.Empty:
                self._check_children()
                continue
            if req.get("op") == "stop":
                reply.put({"ok": True})
                return
            try:
                reply.put({"ok": True, **self._handle(req)})
            except Exception as e:
                reply.put({"ok": False, "error": str(e)})

    def _handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "status":
            self._check_children()
            st = self.state()
            return {"state": json.loads(st.to_json()), "alive": {p["name"]: procs.alive(procs.Proc(**p)) for p in st.procs},
                    "registration_ms": self.standin.watcher.latency_ms if self.standin else [],
                    "plugins": {n: self.standin.watcher.drivers(n) for n in self.lay.index} if self.standin else {},
                    "nri_plugins": self.nri.plugins() if self.nri else {}}
        if op == "unshare":
            return self._unshare(req["node"])
        if op == "hold-pods":  # make bench: scheduling measured alone, pod starts after
            self.standin.hold()
            return {"held": True}
        if op == "release-pods":
            return {"released": self.standin.release()}
        if op == "restart-driver":
            key = (req["node"], req["profile"])
            host = self.hosts.host_of(req["node"], req["profile"]) if self.hosts and key not in self.drivers else None
            if host is not None:  # host mode: the same start again, for every node it serves
                since = time.monotonic()
                new = self.hosts.restart(host)
                self._write_state()
                self._await_registration(req["node"], profiles.resolve(req["profile"]).driver, since, new.proc)
                return {"pid": new.proc.pid}
            if key not in self.drivers:
                raise KeyError(f"no driver {req['profile']} on node {req['node']}")
            since = time.monotonic()
            np_ = self._respawn(key)
            self._await_registration(req["node"], self.drivers[key].driver, since, np_)
            return {"pid": np_.pid}
        if op == "reconfigure":
            return self._reconfigure(req["args"])
        raise ValueError(f"unknown op {op!r}")

    def _reconfigure(self, args: dict[str, list[str]]) -> dict:
        """Run every node's drivers with `args` (profile -> extra arguments) in place of what they
        run with: each driver whose command changes is stopped, its slices are deleted (as an
        uninstall leaves none), and it starts with the new arguments; returns once each has
        published and registered anew. Deleting first is what makes "published anew" visible for
        any driver: a slice of that node and driver exists only once the new process wrote it, and
        until then the scheduler sees no device rather than the old configuration's."""
        if self.hosts:
            raise RuntimeError("a cluster in host mode (many nodes per driver process) cannot change its drivers' "
                               "arguments in place; start it with the arguments instead")
        t0 = time.monotonic()
        kube = Kube(str(self.cp.admin_kubeconfig))
        changed: list[tuple[str, str, tuple[str, str]]] = []  # (node, profile as given, key of self.drivers)
        for n in self.spec.nodes:
            for prof_name in n.drivers:
                old, new = profiles.resolve(prof_name, n.driver_args), profiles.resolve(prof_name, args)
                if old.command != new.command:
                    changed.append((n.name, prof_name, (n.name, new.name)))
        stopping = [self.drivers[key] for _, _, key in changed]
        procs.stop_all([(d.proc, d.popen) for d in stopping], timeout=5)
        want = {(node, d.driver) for (node, _, _), d in zip(changed, stopping)}
        for node, driver in want:
            kube.res.delete_collection_resource_slice(field_selector=f"spec.driver={driver},spec.nodeName={node}")
        for n in self.spec.nodes:
            n.driver_args = {k: list(v) for k, v in args.items()}
        since = time.monotonic()
        for (node, prof_name, key), d in zip(changed, stopping):
            if d.proc.name in self.crashed:  # a driver in its back-off starts now, as a new DaemonSet pod would
                self.crashed.remove(d.proc.name)
            self.driver_backoff.pop(key, None)
            self._start_driver(node, prof_name, args)
        self._write_state()
        self._wait_slices(kube, time.monotonic() + 60, want=want, since=since)
        log.info("reconfigured %d drivers in %.2fs: %s", len(changed), time.monotonic() - t0,
                 json.dumps(args, sort_keys=True))
        return {"restarted": [f"{node}.{p}" for node, p, _ in changed], "seconds": round(time.monotonic() - t0, 2)}

    def _respawn(self, key: tuple[str, str]) -> procs.Proc:
        """Stop a per-node driver and start it again: the same command and environment."""
        d = self.drivers[key]
        procs.stop(d.proc, popen=d.popen)
        np_, npopen = procs.spawn(d.proc.name, d.argv, Path(d.proc.log), env=d.env)
        self.drivers[key] = RunningDriver(np_, npopen, d.argv, d.env, d.driver)
        self._write_state()
        return np_

    def _await_registration(self, node: str, driver: str, since: float, p: procs.Proc, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self._registered_since(node, driver, since):  # bounded: until it serves again
            if not procs.alive(p) or time.monotonic() > deadline:
                raise RuntimeError(f"{p.name} did not register again; see {p.log}")
            time.sleep(0.05)

    def _unshare(self, node: str) -> dict:
        """Host mode, before a node's tree changes: its own tree copy and its own driver processes
        (driverhosts.py); the node's slices are re-published by them."""
        if not self.hosts or self.hosts.group_of(node) is None:
            return {"unshared": False}
        since = time.monotonic()
        spec = next(n for n in self.spec.nodes if n.name == node)
        prof_names = self.hosts.unshare(node)
        # the host stops serving the node on SIGHUP and then removes its sockets: the node's own
        # drivers start only after that, or the host would remove the sockets they just made
        sockets = [p for name in prof_names for p in self.lay.plugin_sockets(node, profiles.resolve(name).driver)]
        deadline = time.monotonic() + 30
        while any(p.exists() for p in sockets):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the driver host still serves {node} 30 s after being told to stop")
            time.sleep(0.05)
        for prof_name in prof_names:
            self._start_driver(node, prof_name, spec.driver_args)
        self._write_state()
        for prof_name in spec.drivers:
            key = (node, profiles.resolve(prof_name).name)
            d = self.drivers[key]
            # no second start: the drivers that died here were forked children killed by gRPC's
            # fork handlers before exec, which harness/__init__.py turns off
            self._await_registration(node, d.driver, since, d.proc)
        return {"unshared": True}

    def _registered_since(self, node: str, driver: str, since: float) -> bool:
        t = self.standin.watcher.registered_at.get((node, driver)) if self.standin else None
        return t is not None and t >= since

    def _check_children(self) -> None:
        for h in list(self.hosts.hosts.values()) if self.hosts else []:
            if not procs.alive(h.proc) and h.proc.name not in self.crashed:
                self._driver_exited(h.proc, self.hosts.nodes_of(h), "driver host", "serving this node ")
        for p in list(self.cp.procs):
            if not procs.alive(p) and p.name not in self.crashed:
                self._control_plane_exited(p)
        now = time.monotonic()
        for key, d in list(self.drivers.items()):
            p = d.proc
            if not procs.alive(p) and p.name not in self.crashed:
                tries = self.driver_backoff.get(key, (0.0, 0))[1]
                delay = min(DRIVER_BACKOFF_MAX, DRIVER_BACKOFF_FIRST * 2 ** tries)
                self.driver_backoff[key] = (now + delay, tries + 1)
                self._driver_exited(p, [key[0]], "driver", "", f"; started again in {delay:.0f} s (a DaemonSet's back-off)")
            elif p.name in self.crashed and self.driver_backoff.get(key, (float("inf"),))[0] <= now:
                self.driver_backoff[key] = (float("inf"), self.driver_backoff[key][1])
                self.crashed.remove(p.name)
                new = self._respawn(key)
                log.warning("%s started again as pid %d", p.name, new.pid)

    def _driver_exited(self, p: procs.Proc, nodes: list[str], what: str, serving: str, then: str = "") -> None:
        """A driver process (or a driver host, for all its nodes) died: say so once, in the log,
        the state and an event on each node it served, and have its socket probed (likely left
        behind, unanswered)."""
        self.crashed.append(p.name)
        log.error("%s %s (pid %d) exited; see %s%s", what, p.name, p.pid, p.log, then)
        self._write_state()
        if self.standin:
            self.standin.watcher.probe_soon()
        for node in nodes:
            self._node_event(node, "DriverExited", f"{what} {p.name} (pid {p.pid}) {serving}exited; "
                             f"last log line: {procs.tail(p.log, 1)[:300]}")

    def _control_plane_exited(self, p: procs.Proc) -> None:
        """A control-plane component died: start it again at once, as the kubelet restarts a
        static pod, unless that cannot help (etcd's data gone) or it is crash-looping (5 exits
        within 60 s). Then the cluster is failed: one line naming the component, its exit status
        and its log's tail, in the log, the state and `<artifacts>/failure.txt`, and everything stops, so
        whoever waits on the cluster hears of it at once rather than at a timeout."""
        status = self.cp.exit_status(p)
        now = time.monotonic()
        recent = [t for t in self.restarts.get(p.name, []) if now - t < 60]
        why = self.cp.unrestartable(p) or ("it exited 5 times within 60 s" if len(recent) >= 5 else None)
        if why:
            tail = " | ".join(procs.tail(p.log, 3).splitlines())[-400:]
            self.failure = (f"{p.name} (pid {p.pid}) exited with status {status} and is not restarted: {why}; "
                            f"last log lines: {tail}")
            log.error("cluster failed: %s", self.failure)
            self.crashed.append(p.name)
            write_private(self.lay.artifacts / FAILURE_FILE, self.failure + "\n")
            self._write_state()
            self.requests.put(({"op": "stop"}, queue.Queue()))
            return
        self.restarts[p.name] = recent + [now]
        new = self.cp.restart(p)
        log.warning("%s (pid %d) exited with status %s; started again as pid %d (restart %d within 60 s)",
                    p.name, p.pid, status, new.pid, len(recent) + 1)
        self._write_state()

    def _node_event(self, node: str, reason: str, message: str) -> None:
        try:
            Kube(str(self.cp.admin_kubeconfig)).core.create_namespaced_event("default", {
                "metadata": {"generateName": f"{node}.", "namespace": "default"},
                "involvedObject": {"kind": "Node", "name": node, "uid": node, "apiVersion": "v1"},
                "reason": reason, "message": message, "type": "Warning",
                "source": {"component": "dra-harness-supervisor", "host": node}, "count": 1,
                "firstTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        except Exception as e:  # an event is a courtesy; the log and the state already say it
            log.warning("could not record event %s on %s: %s", reason, node, e)

    def _control_socket(self) -> None:
        while True:
            conn, _ = self.srv.accept()
            with conn:
                try:
                    req = json.loads(conn.makefile().readline())
                    reply: queue.Queue = queue.Queue()
                    self.requests.put((req, reply))
                    conn.sendall((json.dumps(reply.get(timeout=120)) + "\n").encode())
                except Exception as e:  # a bad client must not stop the supervisor
                    try:
                        conn.sendall((json.dumps({"ok": False, "error": str(e)}) + "\n").encode())
                    except OSError:
                        pass

    # -- teardown ----------------------------------------------------------------------------------
    def down(self, grace: float = 3) -> None:
        """Drivers first (all at once), then the control plane; the state is thrown away, so a
        component that does not stop within `grace` seconds is killed."""
        if self.standin:
            self.standin.stop()
        if self.trees is not None:  # a render still writing would re-create what is removed below
            wait([self.trees], timeout=60)
        procs.stop_all([(d.proc, d.popen) for d in self.drivers.values()], timeout=grace)
        if self.hosts:
            self.hosts.stop_all(grace)
        if self.nri:
            self.nri.stop(grace)
        if self.sandboxes:
            self.sandboxes.close()
        for server, _ in self.imds.values():
            server.close()
        for net in self.nets.values():
            net.close()
        self.cp.stop(grace)
        remove_marked(self.lay.root)  # only a directory `up` made (it writes the marker first)
        shared.forget(self.spec.name)  # the sharing files of test runs, also after an interrupted run


def _watch(pid: int, stop) -> None:
    """Stop the cluster when `pid` exits (a pidfd becomes readable then; no polling)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        stop()
        return
    poller = select.poll()  # not select(): fds past 1024 in a 500-node supervisor
    poller.register(fd, select.POLLIN)
    poller.poll()
    log.info("watched process %d exited; stopping", pid)
    stop()


def main() -> int:
    ap = argparse.ArgumentParser(description="supervisor of one local dra-harness cluster (internal)")
    ap.add_argument("--spec", required=True, help="cluster spec JSON")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--ready-fd", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--watch-pid", type=int, default=None, help="stop when this process exits")
    a = ap.parse_args()
    ready = os.fdopen(a.ready_fd, "w")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a plugin connection and health stream per node and driver
    if hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spec = ClusterSpec.from_dict(json.loads(Path(a.spec).read_text()))
    lay = ClusterLayout(Path(a.state_dir), Path(a.artifacts), [n.name for n in spec.nodes])
    logging.basicConfig(filename=lay.log_dir / "supervisor.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sup = Supervisor(spec, lay, Path(a.bin_dir), a.timeout)
    stopping = threading.Event()
    serving = threading.Event()

    def on_signal(*_):
        """Serving: stop in order. Still coming up: abort the bring-up at once (the main thread
        gets the exception wherever it waits) and stop with a short grace: nothing is worth keeping."""
        stopping.set()
        sup.requests.put(({"op": "stop"}, queue.Queue()))
        if not serving.is_set() and threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt("stopped during start-up")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if a.watch_pid:
        threading.Thread(target=_watch, args=(a.watch_pid, on_signal), name="watch-pid", daemon=True).start()
    try:
        sup.up()
        sup.open_control()
        if stopping.is_set():
            raise KeyboardInterrupt("stopped during start-up")
        serving.set()
        ready.write("ready\n")
        ready.close()
        sup.serve()
        return 0
    except BaseException as e:  # report why, then tear down whatever started
        log.error("bring-up failed: %s\n%s", e, traceback.format_exc())
        try:
            ready.write(f"error: {e}\n")
            ready.close()
        except (OSError, ValueError):
            pass
        return 1
    finally:
        sup.down(grace=3 if serving.is_set() else 0.5)


if __name__ == "__main__":
    sys.exit(main())
