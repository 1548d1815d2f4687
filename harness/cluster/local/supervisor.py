"""The supervisor of one local cluster: the single process that owns every component.

It starts the control plane, renders each node's tree, creates the Node objects, starts each
node's drivers, waits until every driver has published its slices, reports "ready" on a pipe,
then serves: the kubelet stand-in, and a control socket (status, restart-driver, stop).
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
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

import fakedev

from ... import procs, profiles
from ...kube import Kube
from ..spec import ClusterSpec
from .controlplane import ControlPlane, free_port
from .kubelet_standin import KubeletStandIn
from .layout import ClusterLayout

log = logging.getLogger("supervisor")

DRIVER_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "dra-harness:driver"},
     "rules": [
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"],
          "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get", "list", "watch"]},
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims/status"], "verbs": ["get", "patch", "update"]},
         {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
     ]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "dra-harness:driver"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "dra-harness:driver"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "dra-harness:drivers"}]},
]


class Supervisor:
    def __init__(self, spec: ClusterSpec, lay: ClusterLayout, bin_dir: Path, timeout: float) -> None:
        self.spec, self.lay, self.bin_dir, self.timeout = spec, lay, bin_dir, timeout
        self.cp = ControlPlane(bin_dir, lay.control_dir, lay.log_dir)
        self.drivers: dict[tuple[str, str], tuple[procs.Proc, object, list[str]]] = {}
        self.requests: queue.Queue = queue.Queue()
        self.standin: KubeletStandIn | None = None
        self.crashed: list[str] = []

    # -- bring-up ----------------------------------------------------------------------------------
    def up(self) -> None:
        deadline = time.monotonic() + self.timeout
        t0 = time.monotonic()
        self.cp.start(deadline)
        log.info("control plane healthy after %.2fs", time.monotonic() - t0)
        kube = Kube(str(self.cp.admin_kubeconfig))
        for obj in DRIVER_RBAC:
            kube.apply(obj)
        import yaml
        from importlib import resources

        for obj in yaml.safe_load_all(resources.files("refdriver").joinpath("manifests").joinpath("deviceclasses.yaml").read_text()):
            kube.apply(obj)
        log.info("RBAC and DeviceClasses applied after %.2fs", time.monotonic() - t0)
        for n in self.spec.nodes:
            topo = n.load_topology()
            fakedev.generate(topo, self.lay.tree(n.name))
            self._create_node(kube, n.name, n.labels, topo)
        log.info("trees rendered and nodes created after %.2fs", time.monotonic() - t0)
        for n in self.spec.nodes:
            for prof_name in n.drivers:
                self._start_driver(n.name, prof_name, n.driver_args)
        self._wait_slices(kube, deadline)
        log.info("all slices published after %.2fs", time.monotonic() - t0)
        self.standin = KubeletStandIn(kube, {n.name: self.lay.registry_dir(n.name) for n in self.spec.nodes})
        threading.Thread(target=self.standin.run, name="kubelet-standin", daemon=True).start()
        log.info("cluster up in %.2fs", time.monotonic() - t0)
        self._write_state()

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

    def _start_driver(self, node: str, prof_name: str, extra: dict[str, list[str]]) -> None:
        prof = profiles.resolve(prof_name, extra)
        kc = self.cp.pki.kubeconfig(self.lay.node_dir(node) / f"{prof.name}.kubeconfig", self.cp.server,
                                    f"{node}-{prof.name}", f"dra-driver:{node}:{prof.driver}", ["dra-harness:drivers"])
        argv = prof.argv(node=node, tree=str(self.lay.tree(node)), kubeconfig=str(kc),
                         registry_dir=str(self.lay.registry_dir(node)), plugins_dir=str(self.lay.plugins_dir(node)),
                         cdi_root=str(self.lay.cdi_dir(node)), health_port=str(free_port()))
        env = {**os.environ, **prof.env, "NODE_NAME": node}
        p, popen = procs.spawn(f"{node}.{prof.name}", argv, self.lay.log_dir / f"{node}.{prof.name}.log", env=env)
        self.drivers[(node, prof.name)] = (p, popen, argv)

    def _wait_slices(self, kube: Kube, deadline: float) -> None:
        want = {(n.name, profiles.resolve(d).driver) for n in self.spec.nodes for d in n.drivers}

        def done(lst) -> bool:
            have = {(s["spec"].get("nodeName"), s["spec"]["driver"]) for s in lst["items"]}
            for key, (p, _, _) in self.drivers.items():
                if not procs.alive(p):
                    raise RuntimeError(f"driver {p.name} exited during start-up; last log lines ({p.log}):\n"
                                       f"{procs.tail(p.log)}")
            return want <= have

        kube.wait("ResourceSlice", done, what=f"ResourceSlices of {len(want)} node drivers",
                  timeout=max(1, deadline - time.monotonic()),
                  describe=lambda lst: "published: " + ", ".join(sorted(f"{s['spec'].get('nodeName')}/{s['spec']['driver']}"
                                                                         for s in lst["items"])) + f"; wanted: {sorted(want)}")

    # -- serving -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "name": self.spec.name, "backend": "local", "pid": os.getpid(), "k8s_version": self.spec.k8s_version,
            "server": self.cp.server, "kubeconfig": str(self.cp.admin_kubeconfig), "bin_dir": str(self.bin_dir),
            "artifacts": str(self.lay.artifacts), "state_dir": str(self.lay.root), "spec": self.spec.to_dict(),
            "nodes": {n.name: {"tree": str(self.lay.tree(n.name)), "cdi_dir": str(self.lay.cdi_dir(n.name)),
                               "plugins_dir": str(self.lay.plugins_dir(n.name)), "topology": n.topology}
                      for n in self.spec.nodes},
            "procs": [p.to_dict() for p in self.cp.procs] + [p.to_dict() for p, _, _ in self.drivers.values()],
            "crashed": self.crashed,
        }

    def _write_state(self) -> None:
        tmp = self.lay.state_file.with_name(".state.json.tmp")
        tmp.write_text(json.dumps(self.state(), indent=2))
        os.replace(tmp, self.lay.state_file)

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
                req, reply = self.requests.get(timeout=1.0)
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
            return {"state": self.state(), "alive": {p["name"]: procs.alive(procs.Proc(**p)) for p in self.state()["procs"]}}
        if op == "restart-driver":
            key = (req["node"], req["profile"])
            if key not in self.drivers:
                raise KeyError(f"no driver {req['profile']} on node {req['node']}")
            p, popen, argv = self.drivers[key]
            procs.stop(p, popen=popen)
            env = {**os.environ, "NODE_NAME": req["node"]}
            np_, npopen = procs.spawn(p.name, argv, Path(p.log), env=env)
            self.drivers[key] = (np_, npopen, argv)
            if self.standin:
                self.standin.forget(req["node"])
            self._write_state()
            sock = self.lay.registry_dir(req["node"]) / f"{profiles.resolve(req['profile']).driver}-reg.sock"
            deadline = time.monotonic() + 30
            while not sock.exists():  # bounded: report when the restarted driver serves again
                if not procs.alive(np_) or time.monotonic() > deadline:
                    raise RuntimeError(f"{np_.name} did not come back; see {np_.log}")
                time.sleep(0.05)
            return {"pid": np_.pid}
        raise ValueError(f"unknown op {op!r}")

    def _check_children(self) -> None:
        for p in [*self.cp.procs, *(d[0] for d in self.drivers.values())]:
            if not procs.alive(p) and p.name not in self.crashed:
                self.crashed.append(p.name)
                log.error("%s (pid %d) exited; see %s", p.name, p.pid, p.log)
                self._write_state()

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
    def down(self) -> None:
        """Drivers first (all at once), then the control plane; the state is thrown away, so a
        component that does not stop within a short grace period is killed."""
        if self.standin:
            self.standin.stop_event.set()
        procs.stop_all([(p, popen) for p, popen, _ in self.drivers.values()], timeout=5)
        self.cp.stop()
        shutil.rmtree(self.lay.root, ignore_errors=True)
        for suffix in (".lock", ".refs"):  # the pytest plugin's sharing files, also after an interrupted run
            (self.lay.root.parent / f"{self.spec.name}{suffix}").unlink(missing_ok=True)


def _watch(pid: int, stop) -> None:
    """Stop the cluster when `pid` exits (a pidfd becomes readable then; no polling)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        stop()
        return
    select.select([fd], [], [])
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
    spec = ClusterSpec.from_dict(json.loads(Path(a.spec).read_text()))
    lay = ClusterLayout(Path(a.state_dir), Path(a.artifacts))
    logging.basicConfig(filename=lay.log_dir / "supervisor.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sup = Supervisor(spec, lay, Path(a.bin_dir), a.timeout)
    stopping = threading.Event()

    def on_signal(*_):
        stopping.set()
        sup.requests.put(({"op": "stop"}, queue.Queue()))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if a.watch_pid:
        threading.Thread(target=_watch, args=(a.watch_pid, on_signal), name="watch-pid", daemon=True).start()
    try:
        sup.up()
        sup.open_control()
        if stopping.is_set():
            raise KeyboardInterrupt("stopped during start-up")
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
        sup.down()


if __name__ == "__main__":
    sys.exit(main())
