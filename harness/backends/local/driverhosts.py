"""Host mode of the local backend (issue 14): many fake nodes per driver process.

Nodes with the same topology, drivers and driver arguments form a group. A group's tree is
rendered once (`<state>/shared/<i>/tree`) and each node's tree path is a symlink to it, read-only
by convention; one process per (driver profile, group) serves every node of the group
(`refdriver ... --host-nodes FILE`, refdriver/host.py), each node with its own kubeconfig,
kubelet plugin sockets, CDI directory and slices. Changing a node's tree first gives it its own
copy and its own per-node driver process (`unshare`): the host re-reads its node list on SIGHUP
and stops serving the node, which the plugin watcher sees as the node's driver going away.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fakedev

from .. import procs, profiles
from ..spec import ClusterSpec
from .layout import ClusterLayout

log = logging.getLogger("supervisor")


@dataclass
class Group:
    key: str
    tree: Path  # the shared rendered tree
    nodes: list[str] = field(default_factory=list)  # the nodes still sharing it


@dataclass
class RunningHost:
    proc: procs.Proc
    popen: object
    argv: list[str]
    env: dict[str, str]
    profile: str
    group: str
    nodes_file: Path


class DriverHosts:
    def __init__(self, spec: ClusterSpec, lay: ClusterLayout, topos: dict[str, fakedev.Topology]) -> None:
        self.spec, self.lay, self.topos = spec, lay, topos
        self.groups: dict[str, Group] = {}
        for n in spec.nodes:
            key = json.dumps([n.topology, n.drivers, sorted(n.driver_args.items())])
            g = self.groups.setdefault(key, Group(key, lay.root / "shared" / str(len(self.groups)) / "tree"))
            g.nodes.append(n.name)
        self.hosts: dict[tuple[str, str], RunningHost] = {}  # (profile, group key) -> its process

    def render(self) -> None:
        """Each group's tree once; each node's tree path a symlink to its group's."""
        for g in self.groups.values():
            fakedev.generate(self.topos[g.nodes[0]], g.tree)
            for node in g.nodes:
                link = self.lay.tree(node)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(g.tree, target_is_directory=True)

    def group_of(self, node: str) -> Group | None:
        return next((g for g in self.groups.values() if node in g.nodes), None)

    def start(self, entry: Callable[[str, str], dict], values: Callable[[], dict[str, str]]) -> None:
        """One process per (profile, group). `entry(node, profile)` gives a node's line of the
        host's node list (name, kubeconfig, directories); `values()` the rest of the command's
        placeholders (a fresh health port)."""
        for g in self.groups.values():
            node = self.spec.nodes[[n.name for n in self.spec.nodes].index(g.nodes[0])]
            for prof_name in node.drivers:
                prof = profiles.resolve(prof_name, node.driver_args)
                nodes_file = g.tree.parent / f"{prof.name}.nodes.json"
                nodes_file.write_text(json.dumps([entry(n, prof_name) for n in g.nodes]))
                argv = prof.host_argv(tree=str(g.tree), nodes_file=str(nodes_file), **values())
                env = prof.environment(node="", tree=str(g.tree))
                name = f"host{list(self.groups).index(g.key)}.{prof.name}"
                p, popen = procs.spawn(name, argv, self.lay.log_dir / f"{name}.log", env=env)
                self.hosts[(prof.name, g.key)] = RunningHost(p, popen, argv, env, prof.name, g.key, nodes_file)
                log.info("driver host %s serves %d nodes (pid %d)", name, len(g.nodes), p.pid)

    def procs(self) -> list[procs.Proc]:
        return [h.proc for h in self.hosts.values()]

    def nodes_of(self, h: RunningHost) -> list[str]:
        return list(self.groups[h.group].nodes)

    def host_of(self, node: str, profile: str) -> RunningHost | None:
        g = self.group_of(node)
        return self.hosts.get((profile, g.key)) if g else None

    def restart(self, h: RunningHost) -> RunningHost:
        """The same start again (same command and environment), for every node it serves."""
        procs.stop(h.proc, popen=h.popen)
        p, popen = procs.spawn(h.proc.name, h.argv, Path(h.proc.log), env=h.env)
        new = RunningHost(p, popen, h.argv, h.env, h.profile, h.group, h.nodes_file)
        self.hosts[(h.profile, h.group)] = new
        return new

    def unshare(self, node: str) -> list[str]:
        """Give `node` its own copy of its tree and take it out of its hosts' node lists (they
        stop serving it on SIGHUP). Returns the node's profiles, for per-node drivers."""
        g = self.group_of(node)
        if g is None:
            return []
        link = self.lay.tree(node)
        own = link.with_name("tree.own")
        # cp -a keeps device nodes, symlinks and modes as rendered
        subprocess.run(["cp", "-a", str(g.tree), str(own)], check=True, capture_output=True)
        tmp = link.with_name("tree.link")
        link.rename(tmp)
        own.rename(link)
        tmp.unlink()
        g.nodes.remove(node)
        for (prof, key), h in self.hosts.items():
            if key == g.key:
                entries = [e for e in json.loads(h.nodes_file.read_text()) if e["node_name"] != node]
                h.nodes_file.write_text(json.dumps(entries))
                if procs.alive(h.proc):
                    h.popen.send_signal(signal.SIGHUP)
        log.info("node %s has its own tree now; its group keeps %d nodes", node, len(g.nodes))
        return next(n.drivers for n in self.spec.nodes if n.name == node)

    def stop_all(self, grace: float) -> None:
        procs.stop_all([(h.proc, h.popen) for h in self.hosts.values()], timeout=grace)

    def remove_shared(self) -> None:
        shutil.rmtree(self.lay.root / "shared", ignore_errors=True)
