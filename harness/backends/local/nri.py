"""The NRI side of the fake nodes' container runtime: a test stand-in (named as such: fake nodes
run no containerd) hosting the NRI project's own runtime adaptation, one socket per node.

The Go program (clusters/nri/cmd/nri-standin, built by `make bins`) embeds
github.com/containerd/nri/pkg/adaptation, the code containerd runs, so NRI plugins such as
DRANET connect, register and synchronise as on a real node. This module starts it and turns the
kubelet stand-in's pod starts and stops into the runtime's event sequence: RunPodSandbox, then
per container CreateContainer (+PostCreate) and StartContainer (+PostStart); StopContainer and
RemoveContainer, then StopPodSandbox and RemovePodSandbox.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from .. import procs

log = logging.getLogger("nri-standin")


class NriError(Exception):
    """A plugin refused an event (the runtime would fail the sandbox or container)."""

    def __init__(self, message: str, op: str = "") -> None:
        super().__init__(message)
        self.op = op


def pod_sandbox(pod: dict, netns: str | None = None) -> dict:
    """The NRI PodSandbox (protobuf JSON) of a Kubernetes pod; the sandbox id is the pod uid.
    `netns`: the sandbox's network namespace, in linux.namespaces as containerd reports it (a
    `hostNetwork` pod has none)."""
    md = pod["metadata"]
    out = {"id": md["uid"], "name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
           "labels": md.get("labels") or {}, "annotations": md.get("annotations") or {}}
    if netns:
        out["linux"] = {"namespaces": [{"type": "network", "path": netns}]}
    return out


def container(pod: dict, spec: dict, cdi_devices: list[str]) -> dict:
    """The NRI Container of one pod container, carrying the CDI devices its claims prepared (the
    kubelet passes them to the runtime in the CRI request, research/dra-api.md §3)."""
    uid = pod["metadata"]["uid"]
    env = [f"{e['name']}={e.get('value', '')}" for e in spec.get("env") or [] if "valueFrom" not in e]
    return {"id": f"{uid}-{spec['name']}", "podSandboxId": uid, "name": spec["name"],
            "args": [*(spec.get("command") or []), *(spec.get("args") or [])], "env": env,
            "CDIDevices": [{"name": d} for d in cdi_devices]}


class NriRuntime:
    """One nri-standin process serving every NRI-enabled node of a cluster."""

    def __init__(self, binary: Path, sockets: dict[str, Path], log_path: Path) -> None:
        self.sockets = sockets
        argv = [str(binary)] + [f"--node={n}={s}" for n, s in sockets.items()]
        for s in sockets.values():
            s.parent.mkdir(parents=True, exist_ok=True)
        self.proc, self.popen = procs.spawn("nri-standin", argv, log_path, pipes=True)
        self.lock = threading.Lock()
        self.next_id = 1
        ready = self.popen.stdout.readline()
        if not ready:
            raise RuntimeError(f"nri-standin exited at start; last log lines ({log_path}):\n{procs.tail(log_path)}")

    def call(self, node: str, op: str, pod: dict | None = None, ctr: dict | None = None) -> dict:
        with self.lock:
            req = {"id": self.next_id, "node": node, "op": op, "pod": pod, "container": ctr}
            self.next_id += 1
            try:
                self.popen.stdin.write((json.dumps({k: v for k, v in req.items() if v is not None}) + "\n").encode())
                self.popen.stdin.flush()
                line = self.popen.stdout.readline()
            except (BrokenPipeError, ValueError):
                line = b""
        if not line:
            raise NriError(f"the NRI runtime stand-in is gone; see {self.proc.log}")
        answer = json.loads(line)
        if answer.get("error"):
            raise NriError(answer["error"])
        return answer

    def start_pod(self, node: str, pod: dict, cdi: dict[str, list[str]], netns: str | None = None) -> dict[str, dict]:
        """Sandbox then containers, as the runtime runs them; returns each container's
        adjustment by the plugins (container name -> NRI ContainerAdjustment JSON)."""
        sandbox = pod_sandbox(pod, netns)
        self._step(node, "RunPodSandbox", sandbox)
        devices = [d for ids in cdi.values() for d in ids]
        adjustments: dict[str, dict] = {}
        try:
            for spec in pod["spec"]["containers"]:
                ctr = container(pod, spec, devices)
                adjust = self._step(node, "CreateContainer", sandbox, ctr).get("adjust")
                if adjust:
                    adjustments[spec["name"]] = adjust
                self._step(node, "StartContainer", sandbox, ctr)
        except NriError:
            try:  # the runtime removes what it made before reporting the failure
                self.stop_pod(node, pod, netns)
            except NriError:
                pass
            raise
        return adjustments

    def _step(self, node: str, op: str, pod: dict, ctr: dict | None = None) -> dict:
        try:
            return self.call(node, op, pod, ctr)
        except NriError as e:
            raise NriError(f"{op}: {e}", op) from None

    def stop_pod(self, node: str, pod: dict, netns: str | None = None) -> None:
        """Containers stopped and removed, then the sandbox; every step is delivered even when
        one fails (the runtime tears down regardless), and the first failure is raised."""
        sandbox = pod_sandbox(pod, netns)
        errors = []
        steps = [(op, container(pod, spec, [])) for spec in pod["spec"]["containers"]
                 for op in ("StopContainer", "RemoveContainer")]
        steps += [("StopPodSandbox", None), ("RemovePodSandbox", None)]
        for op, ctr in steps:
            try:
                self.call(node, op, sandbox, ctr)
            except NriError as e:
                errors.append(f"{op}: {e}")
        if errors:
            raise NriError("; ".join(errors))

    def plugins(self) -> dict[str, list[str]]:
        """Node -> the plugins (index-name) that have answered an event there."""
        return self.call("", "plugins").get("plugins") or {}

    def stop(self, grace: float = 3) -> None:
        try:
            self.popen.stdin.close()  # the stand-in stops its adaptations and removes the sockets
        except OSError:
            pass
        procs.stop(self.proc, popen=self.popen, timeout=grace)
