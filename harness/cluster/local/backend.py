"""Bring a local cluster up and down from outside: spawn its supervisor, wait for "ready" on a
pipe, and later ask it to stop; if the supervisor is gone, stop what it left by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ... import bins, procs, profiles
from ..handle import Cluster
from ..spec import ClusterSpec
from .layout import ClusterLayout, default_state_root


class UpError(Exception):
    pass


def state_dir(name: str) -> Path:
    return default_state_root() / name


def load_state(name: str) -> dict | None:
    f = state_dir(name) / "state.json"
    return json.loads(f.read_text()) if f.exists() else None


def up(spec: ClusterSpec, artifacts: Path, attached: bool = False, timeout: float = 180,
       build: bool = True, watch_pid: int | None = None) -> Cluster:
    """Start the cluster; returns when every node's drivers have published their slices.

    attached: the supervisor dies with the calling thread's process; otherwise it runs in its own
    session until `down` (the CLI), or, with `watch_pid`, until that process exits (a test run)."""
    root = state_dir(spec.name)
    if root.exists():
        st = load_state(spec.name)
        sup = _supervisor(st) if st else None
        if sup and procs.alive(sup):
            raise UpError(f"cluster {spec.name!r} is already running (dra-harness down --name {spec.name})")
        cleanup(spec.name)
    bin_dir = bins.ensure(spec.k8s_version, build=build)
    spec.k8s_version = bins.resolve(spec.k8s_version)
    lay = ClusterLayout(root, artifacts)
    lay.check_socket_paths([n.name for n in spec.nodes], sorted({profiles.resolve(d).driver for n in spec.nodes for d in n.drivers}))
    root.mkdir(parents=True)
    lay.log_dir.mkdir(parents=True, exist_ok=True)
    (root / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
    r, w = os.pipe()
    argv = [sys.executable, "-m", "harness.cluster.local.supervisor", "--spec", str(root / "spec.json"),
            "--state-dir", str(root), "--artifacts", str(artifacts), "--bin-dir", str(bin_dir),
            "--ready-fd", str(w), "--timeout", str(timeout)] + (["--watch-pid", str(watch_pid)] if watch_pid else [])
    # Record the supervisor before it writes anything, so `down` finds it even if bring-up hangs.
    p, popen = procs.spawn("supervisor", argv, lay.log_dir / "supervisor.out", tie_to_parent=attached,
                           env={**os.environ, "PYTHONPATH": str(bins.ROOT)}, pass_fds=(w,))
    (root / "supervisor.json").write_text(json.dumps(p.to_dict()))
    os.close(w)
    try:
        with os.fdopen(r) as f:
            line = f.readline().strip()
    except BaseException:  # Ctrl-C while waiting: stop the supervisor; it tears down what it started
        _terminate(p, popen)
        raise
    if line != "ready":
        _terminate(p, popen)
        cleanup(spec.name)
        why = line.removeprefix("error: ") or "the supervisor exited without a word: " + procs.tail(lay.log_dir / "supervisor.out", 5)
        raise UpError(f"local cluster {spec.name} failed to start: {why}\n(logs: {lay.log_dir})")
    return Cluster.from_state(json.loads(lay.state_file.read_text()), lay.state_file)


def _terminate(p: procs.Proc, popen: subprocess.Popen | None) -> None:
    procs.stop(p, timeout=60, popen=popen)


def _supervisor(st: dict) -> procs.Proc | None:
    f = state_dir(st["name"]) / "supervisor.json"
    return procs.Proc(**json.loads(f.read_text())) if f.exists() else None


def down(name: str, timeout: float = 60) -> list[str]:
    """Stop the cluster; returns what had to be killed by hand (empty when the supervisor did it)."""
    root = state_dir(name)
    sf = root / "supervisor.json"
    if not root.exists():
        return []
    sup = procs.Proc(**json.loads(sf.read_text())) if sf.exists() else None
    if sup and procs.alive(sup):
        os.kill(sup.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while procs.alive(sup) and time.monotonic() < deadline:
            time.sleep(0.05)
        if procs.alive(sup):
            os.kill(sup.pid, signal.SIGKILL)
    return cleanup(name)


def cleanup(name: str) -> list[str]:
    """Kill whatever a dead supervisor left (matched by PID and start time) and remove its state."""
    root = state_dir(name)
    killed = []
    st = load_state(name)
    for pd in (st or {}).get("procs", []):
        p = procs.Proc(**pd)
        if procs.alive(p):
            procs.stop(p, timeout=5)
            killed.append(p.name)
    shutil.rmtree(root, ignore_errors=True)
    return killed


def status(name: str) -> dict:
    from ..handle import Cluster as C

    st = load_state(name)
    if st is None:
        if state_dir(name).exists():
            return {"name": name, "state": "starting or failed (no state yet)"}
        return {"name": name, "state": "absent"}
    try:
        reply = C.from_state(st).control("status")
        return {"name": name, "state": "running", "alive": reply["alive"], "crashed": reply["state"]["crashed"],
                "kubeconfig": st["kubeconfig"], "nodes": list(st["nodes"])}
    except (OSError, RuntimeError) as e:
        return {"name": name, "state": f"supervisor unreachable ({e}); run `dra-harness down --name {name}`"}
