"""The local backend: real control-plane processes and fake nodes, owned by one supervisor
process per cluster (supervisor.py). From outside, bring a cluster up by spawning its
supervisor and waiting for "ready" on a pipe; talk to it over its control socket; bring it down
by asking it to stop, and if it is gone, stop what it left by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import fakedev

from .. import bins, procs, profiles
from ..base import BackendError
from ..handle import Cluster
from ..paths import check_name, ensure_root, inside, state_root
from ..spec import ClusterSpec
from .kubelet_standin import wiping_delay_from_env
from .layout import MARKER, ClusterLayout, remove_marked
from .state import LocalState


def state_dir(name: str) -> Path:
    """The cluster's state directory; the name is checked before it becomes a path."""
    return inside(state_root(), check_name(name, "cluster name"))


def load_state(name: str) -> LocalState | None:
    return LocalState.read(state_dir(name) / "state.json")


def control(cluster: Cluster, op: str, timeout: float = 180, **kw) -> dict:
    """Ask a cluster's supervisor to do something (status, restart-driver) over its socket."""
    if cluster.state_dir is None:
        raise BackendError(f"cluster {cluster.name} has no supervisor")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(cluster.state_dir / "supervisor.sock"))
        s.sendall((json.dumps({"op": op, **kw}) + "\n").encode())
        reply = json.loads(s.makefile().readline() or "{}")
    if not reply.get("ok"):
        raise BackendError(f"supervisor refused {op}: {reply.get('error', 'no answer')}")
    return reply


class LocalBackend:
    name = "local"

    def up(self, spec: ClusterSpec, artifacts: Path, *, timeout: float = 300, owner_pid: int | None = None,
           build: bool = True, attached: bool = False) -> Cluster:
        """Start the cluster; returns when every node's drivers have published their slices.

        The supervisor runs in its own session until `down`, or, with `owner_pid`, until that
        process exits; `attached`: it also dies with the calling thread's process."""
        root = state_dir(spec.name)  # validates the name before anything is touched
        if root.exists():
            st = self._state_or_none(spec.name)
            sup = _supervisor(root)
            if sup and procs.alive(sup):
                raise BackendError(f"cluster {spec.name!r} is already running (dra-harness down --name {spec.name})")
            if st is not None or (root / MARKER).exists():
                self._cleanup(spec.name)
            else:
                raise BackendError(f"{root} exists but was not made by dra-harness; remove it yourself or pick "
                                   "another --name")
        wiping_delay_from_env()  # environment checked before a build or a process starts
        ensure_root()
        bin_dir = bins.ensure(spec.k8s_version, build=build)
        spec.k8s_version = bins.resolve(spec.k8s_version)
        lay = ClusterLayout(root, artifacts, [n.name for n in spec.nodes])
        lay.check_socket_paths([n.name for n in spec.nodes],
                               sorted({profiles.resolve(d).driver for n in spec.nodes for d in n.drivers}))
        root.mkdir(mode=0o700)
        lay.marker.write_text(spec.name + "\n")
        lay.log_dir.mkdir(parents=True, exist_ok=True)
        (root / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
        r, w = os.pipe()
        argv = [sys.executable, "-m", "harness.backends.local.supervisor", "--spec", str(root / "spec.json"),
                "--state-dir", str(root), "--artifacts", str(artifacts), "--bin-dir", str(bin_dir),
                "--ready-fd", str(w), "--timeout", str(timeout)] + (["--watch-pid", str(owner_pid)] if owner_pid else [])
        # Record the supervisor before it writes anything, so `down` finds it even if bring-up hangs.
        p, popen = procs.spawn("supervisor", argv, lay.log_dir / "supervisor.out", tie_to_parent=attached,
                               env={**os.environ, "PYTHONPATH": str(bins.ROOT)}, pass_fds=(w,))
        (root / "supervisor.json").write_text(json.dumps(p.to_dict()))
        os.close(w)
        try:
            with os.fdopen(r) as f:
                line = f.readline().strip()
        except BaseException:  # Ctrl-C while waiting: stop the supervisor; it tears down what it started
            procs.stop(p, timeout=60, popen=popen)
            raise
        if line != "ready":
            procs.stop(p, timeout=60, popen=popen)
            self._cleanup(spec.name)
            why = line.removeprefix("error: ") or "the supervisor exited without a word: " + procs.tail(
                lay.log_dir / "supervisor.out", 5)
            raise BackendError(f"local cluster {spec.name} failed to start: {why}\n(logs: {lay.log_dir})")
        st = LocalState.read(lay.state_file)
        assert st is not None, "the supervisor reported ready before writing its state"
        return st.cluster()

    def down(self, name: str, *, export_logs_to: Path | None = None, timeout: float = 60) -> list[str]:
        """Stop the cluster; returns what had to be killed by hand (empty when the supervisor did it)."""
        root = state_dir(name)
        if not root.exists():
            return []
        sup = _supervisor(root)
        if sup and procs.alive(sup):
            os.kill(sup.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while procs.alive(sup) and time.monotonic() < deadline:
                time.sleep(0.05)
            if procs.alive(sup):
                os.kill(sup.pid, signal.SIGKILL)
        return self._cleanup(name)

    def status(self, name: str) -> dict:
        root = state_dir(name)
        st = LocalState.read(root / "state.json")
        if st is None:
            return {"name": name, "state": "starting or failed (no state yet)" if root.exists() else "absent"}
        try:
            reply = control(st.cluster(), "status", timeout=10)
            return {"name": name, "state": "running", "alive": reply["alive"], "crashed": reply["state"]["crashed"],
                    "kubeconfig": st.kubeconfig, "nodes": list(st.nodes)}
        except (OSError, BackendError, ValueError) as e:
            return {"name": name, "state": f"supervisor unreachable ({e}); run `dra-harness down --name {name}`"}

    def find(self, name: str) -> Cluster | None:
        st = self._state_or_none(name)
        sup = _supervisor(state_dir(name))
        return st.cluster() if st is not None and sup is not None and procs.alive(sup) else None

    def restart_driver(self, cluster: Cluster, node: str, profile: str) -> None:
        control(cluster, "restart-driver", node=node, profile=profile)

    def registered(self, cluster: Cluster, node: str) -> list[str]:
        """The kubelet stand-in's plugin watcher registered these drivers (by GetInfo)."""
        return list(control(cluster, "status")["plugins"].get(node) or [])

    def reconfigure(self, cluster: Cluster, driver_args: dict[str, list[str]]) -> list[str]:
        return control(cluster, "reconfigure", args=driver_args)["restarted"]

    def mutate(self, cluster: Cluster, node: str, op: str, *args: str) -> str:
        """The node's drivers read its tree directly (and notice by inotify). In host mode the
        node's tree is shared with its group: the node first gets its own copy and drivers."""
        tree = cluster.nodes[node].tree
        if tree.is_symlink():
            control(cluster, "unshare", node=node)
        return getattr(fakedev.Tree(tree), op)(*args)

    def collect_logs(self, cluster: Cluster, dest: Path) -> Path:
        shutil.copytree(cluster.artifacts / "logs", dest, dirs_exist_ok=True)
        return dest

    # -- internals ---------------------------------------------------------------------------------
    @staticmethod
    def _state_or_none(name: str) -> LocalState | None:
        try:
            return load_state(name)
        except Exception:  # corrupt state: treated as "no usable state" here; `status` names the file
            return None

    def _cleanup(self, name: str) -> list[str]:
        """Kill whatever a dead supervisor left (matched by PID and start time) and remove the state
        directory, which must carry the marker `up` wrote first: never anything it did not create."""
        root = state_dir(name)
        killed = []
        st = self._state_or_none(name)
        for pd in st.procs if st else []:
            p = procs.Proc(**pd)
            if procs.alive(p):
                procs.stop(p, timeout=5)
                killed.append(p.name)
        if not remove_marked(root) and root.exists():
            raise BackendError(f"{root} was not made by dra-harness (no {MARKER}); left untouched")
        return killed


def _supervisor(root: Path) -> procs.Proc | None:
    f = root / "supervisor.json"
    try:
        return procs.Proc(**json.loads(f.read_text()))
    except (OSError, ValueError, TypeError):
        return None
