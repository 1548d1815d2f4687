"""A container engine that allows kind (`dra-harness engine up|down|status`).

Where a Docker engine answers (GitHub runners, a developer's machine) it is used as it is: no
configuration is touched. Elsewhere (this project's machine: no engine, and a capability bounding
set without CAP_SYS_RESOURCE, so `--privileged` fails) `up`:
  1. writes /etc/docker/daemon.json *before* any dockerd can start: every network in
     198.18.0.0/15 and clear of the local backend's node veths (198.18.0.0/16), because Docker's
     defaults (172.17/16, 172.18+/16) are forbidden here;
  2. where the bounding set lacks capabilities that `--privileged` asks for (computed from
     /proc/self/status and /proc/sys/kernel/cap_last_cap, never assumed), registers the runc
     wrapper (clusters/kind/runc-wrapper) as the default runtime, dropping exactly those;
  3. installs Debian's docker.io if dockerd is missing (the package does not start it here:
     policy-rc.d), starts dockerd in its own session, recording its PID;
  4. pre-creates kind's `kind` network on 198.19.100.0/24.
The harness talks to the engine through the Docker Python SDK (apt and dockerd themselves are
processes). `down` stops only a dockerd that `up` started (by PID and start time), removes the `kind`
network, the wrapper and the daemon.json it wrote (if unchanged since). research/kind-offline.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import procs
from ..bins import ROOT
from ..paths import ensure_root, state_root

DAEMON_JSON = Path("/etc/docker/daemon.json")
WRAPPER_SRC = ROOT / "clusters/kind/runc-wrapper"
WRAPPER = Path("/usr/local/libexec/dra-harness/runc-wrapper")
RUNTIME = "dra-harness-runc"
ALLOWED = ipaddress.ip_network("198.18.0.0/15")
NODE_VETHS = ipaddress.ip_network("198.18.0.0/16")  # the local backend's node namespaces
BIP = "198.19.64.1/24"  # docker0
POOL = "198.19.0.0/18"  # networks docker allocates itself, /24 each
KIND_SUBNET = "198.19.100.0/24"  # the `kind` network, made before kind would make its own
# capability names by number (linux/capability.h)
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE"]


# Host sysctls that dockerd (ip_forward) and a kubelet in a privileged kind node (the others)
# rewrite on the host: recorded before our dockerd starts, restored when it stops.
KUBELET_SYSCTLS = ("kernel/panic_on_oops", "kernel/panic", "vm/overcommit_memory")
HOST_SYSCTLS = ("net/ipv4/ip_forward", *KUBELET_SYSCTLS)


class EngineError(RuntimeError):
    pass


def read_sysctls(keys: tuple[str, ...] = HOST_SYSCTLS) -> dict[str, str]:
    out = {}
    for k in keys:
        try:
            out[k] = Path("/proc/sys", k).read_text().strip()
        except OSError:
            pass
    return out


def restore_sysctls(saved: dict[str, str], say) -> None:
    now = read_sysctls(tuple(saved))
    for k, v in saved.items():
        if now.get(k) != v:
            try:
                Path("/proc/sys", k).write_text(v + "\n")
                say(f"engine: restored {k.replace('/', '.')} {now.get(k)} -> {v}")
            except OSError as e:
                say(f"engine: could not restore {k.replace('/', '.')} to {v}: {e}")


def missing_caps(capbnd_hex: str | None = None, last_cap: int | None = None) -> list[str]:
    """Capabilities the kernel knows that this process's bounding set lacks (CAP_ names)."""
    if capbnd_hex is None:
        capbnd_hex = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                          if line.startswith("CapBnd:"))
    if last_cap is None:
        last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    bnd = int(capbnd_hex, 16)
    return [f"CAP_{CAPS[i] if i < len(CAPS) else i}" for i in range(last_cap + 1) if not bnd >> i & 1]


def daemon_config(missing: list[str]) -> dict:
    cfg: dict = {"bip": BIP, "default-address-pools": [{"base": POOL, "size": 24}]}
    if missing:
        args = ["--runc", shutil.which("runc") or "/usr/sbin/runc"]
        for cap in missing:
            args += ["--drop", cap]
        cfg["runtimes"] = {RUNTIME: {"path": str(WRAPPER), "runtimeArgs": args}}
        cfg["default-runtime"] = RUNTIME
    return cfg


def networks_of(cfg: dict) -> list[ipaddress.IPv4Network]:
    """Every network a daemon config makes Docker use (for the check that all are allowed)."""
    nets = [ipaddress.ip_interface(cfg["bip"]).network] if "bip" in cfg else [ipaddress.ip_network("172.17.0.0/16")]
    pools = cfg.get("default-address-pools") or [{"base": "172.17.0.0/16"}, {"base": "172.18.0.0/16"}]
    return nets + [ipaddress.ip_network(p["base"]) for p in pools]


def _client(timeout: float = 10):
    """The Docker Python SDK's client for the engine DOCKER_HOST (or the default socket) names."""
    import docker

    return docker.from_env(timeout=int(timeout))


def answers(timeout: float = 10) -> str | None:
    """The server version of a Docker engine that answers, or None."""
    import docker

    try:
        return _client(timeout).version().get("Version") or None
    except (docker.errors.DockerException, OSError):
        return None


@dataclass
class EngineState:
    """What `up` did, so `down` undoes exactly that."""

    dockerd: dict | None = None  # procs.Proc of the dockerd we started
    daemon_json_sha: str = ""  # of the daemon.json we wrote
    wrapper: bool = False
    kind_network: bool = False
    sysctls: dict[str, str] = field(default_factory=dict)  # the host's, before our dockerd

    @staticmethod
    def path() -> Path:
        return state_root() / "engine.json"

    def save(self) -> None:
        ensure_root()
        self.path().write_text(json.dumps(self.__dict__))

    @classmethod
    def load(cls) -> "EngineState":
        try:
            data = json.loads(cls.path().read_text())
        except (OSError, ValueError):
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})  # a newer or older file: keep what we know


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def _ours_running(st: EngineState) -> procs.Proc | None:
    if not st.dockerd:
        return None
    p = procs.Proc(**st.dockerd)
    return p if procs.alive(p) else None


def up(say=print, install: bool = True, timeout: float = 90) -> EngineState:
    st = EngineState.load()
    version = answers()
    if version:
        say(f"engine: a Docker engine answers (server {version})" +
            (" - started by `dra-harness engine up`" if _ours_running(st) else "; used as it is, nothing changed"))
        _kind_network(st, say)
        st.save()
        return st
    if os.geteuid() != 0:
        raise EngineError("no Docker engine answers, and setting one up needs root (or start one yourself)")
    missing = missing_caps()
    cfg = daemon_config(missing)
    bad = [str(n) for n in networks_of(cfg) if not n.subnet_of(ALLOWED) or n.overlaps(NODE_VETHS)]
    if bad:
        raise EngineError(f"internal: daemon networks {bad} outside 198.18.0.0/15 or on the node veths")
    if DAEMON_JSON.exists() and _sha(DAEMON_JSON) != st.daemon_json_sha:
        current = json.loads(DAEMON_JSON.read_text() or "{}")
        if json.dumps(current, sort_keys=True) != json.dumps(cfg, sort_keys=True):
            raise EngineError(f"{DAEMON_JSON} exists, was not written by dra-harness, and no engine answers: "
                              "start your engine, or move that file away and run `dra-harness engine up` again")
    if missing:  # the wrapper exists before any dockerd could pick up the config naming it
        WRAPPER.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(WRAPPER_SRC, WRAPPER)
        WRAPPER.chmod(0o755)
        st.wrapper = True
        say(f"engine: the capability bounding set lacks {', '.join(missing)}: runc wrapper {WRAPPER} registered "
            f"as the default runtime ({RUNTIME}), dropping exactly those")
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(cfg, indent=2) + "\n")  # before dockerd can exist
    st.daemon_json_sha = _sha(DAEMON_JSON)
    say(f"engine: wrote {DAEMON_JSON}: docker0 {BIP}, address pool {POOL} (all inside 198.18.0.0/15)")
    st.save()
    if not shutil.which("dockerd"):
        if not install:
            raise EngineError("dockerd is not installed (apt-get install docker.io)")
        say("engine: installing Debian's docker.io (about a minute)")
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "docker.io"], capture_output=True, text=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if r.returncode != 0:
            raise EngineError(f"apt-get install docker.io failed: {r.stderr.strip()[-300:]}")
        if answers():  # a package that starts its service: it read our config
            say("engine: the package started dockerd with that configuration")
    if not answers():
        st.sysctls = read_sysctls()
        st.save()
        log = state_root() / "dockerd.log"
        p, _ = procs.spawn("dockerd", ["dockerd", "--config-file", str(DAEMON_JSON)], log, tie_to_parent=False)
        st.dockerd = p.to_dict()
        st.save()
        deadline = time.monotonic() + timeout
        while not answers(timeout=5):
            if not procs.alive(p) or time.monotonic() > deadline:
                raise EngineError(f"dockerd did not answer; last log lines ({log}):\n{procs.tail(log)}")
            time.sleep(0.5)
        say(f"engine: started dockerd (pid {p.pid}, log {log}); server {answers()}")
    _kind_network(st, say)
    st.save()
    return st


def _kind_network(st: EngineState, say) -> None:
    from docker.types import IPAMConfig, IPAMPool

    client = _client()
    existing = client.networks.list(names=["kind"])
    if existing:
        subnets = [c.get("Subnet") for c in (existing[0].attrs.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
        bad = [s for s in subnets if not ipaddress.ip_network(s).subnet_of(ALLOWED)]
        if bad:
            raise EngineError(f"the existing `kind` docker network uses {bad}, outside 198.18.0.0/15: remove it "
                              "(docker network rm kind) and run `dra-harness engine up` again")
        return
    client.networks.create("kind", driver="bridge", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=KIND_SUBNET)]),
                           options={"com.docker.network.bridge.enable_ip_masquerade": "true"})
    st.kind_network = True
    say(f"engine: created the `kind` network on {KIND_SUBNET} (IPv4 only)")


def down(say=print) -> None:
    st = EngineState.load()
    ours = _ours_running(st)
    if st.kind_network and answers():
        for net in _client().networks.list(names=["kind"]):
            remove_kind_network(net, say)
    if ours:
        procs.stop(ours, timeout=20)
        say(f"engine: stopped dockerd (pid {ours.pid})")
        remove_host_leftovers(say)
        restore_sysctls(st.sysctls, say)
    elif answers():
        say("engine: the running engine was not started by dra-harness; left running")
    if st.daemon_json_sha and _sha(DAEMON_JSON) == st.daemon_json_sha:
        DAEMON_JSON.unlink()
        say(f"engine: removed {DAEMON_JSON}")
    if st.wrapper and WRAPPER.exists():
        WRAPPER.unlink()
        say(f"engine: removed {WRAPPER}")
    EngineState.path().unlink(missing_ok=True)


def remove_kind_network(net, say=print) -> bool:
    """Remove the `kind` network this engine made. Containers still on it are kind's node
    containers of clusters someone left (a test that failed, an interrupted `up`): those are
    removed first, as `kind delete` would; anything else on it is named and left, and so is the
    network. Never a traceback: `engine down` must finish its other steps."""
    import docker.errors

    try:
        net.remove()
        say("engine: removed the `kind` network")
        return True
    except docker.errors.APIError:
        pass
    net.reload()
    held = []
    for c in net.containers:
        cluster = (c.labels or {}).get("io.x-k8s.kind.cluster")
        if cluster:
            c.remove(force=True)
            say(f"engine: removed node container {c.name} of kind cluster {cluster}, left on the `kind` network")
        else:
            held.append(c.name)
    try:
        net.remove()
        say("engine: removed the `kind` network")
        return True
    except docker.errors.APIError as e:
        say(f"engine: left the `kind` network: still used by {', '.join(held) or 'endpoints'} "
            f"({getattr(e, 'explanation', None) or e}); remove those containers and run `dra-harness engine down` again")
        return False


_DOCKER_RULE = re.compile(r"DOCKER|\bdocker0\b|\bbr-[0-9a-f]{12}\b")


def remove_host_leftovers(say=print) -> None:
    """What a stopped dockerd leaves on the host: its iptables chains and the rules jumping to
    them or naming its bridges (filter and nat), and the docker0 bridge. Only rules Docker writes
    match (its chain names, docker0, br-<12 hex>), so other rules on the host stay."""
    removed = 0
    for table in ("filter", "nat"):
        r = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True)
        if r.returncode != 0:
            continue
        lines = r.stdout.splitlines()
        for line in lines:
            parts = line.split()
            if parts[:1] == ["-A"] and not parts[1].startswith("DOCKER") and _DOCKER_RULE.search(line):
                if subprocess.run(["iptables", "-w", "-t", table, "-D", *parts[1:]], capture_output=True).returncode == 0:
                    removed += 1
        chains = [line.split()[1] for line in lines if line.startswith("-N DOCKER")]
        for chain in chains:
            subprocess.run(["iptables", "-w", "-t", table, "-F", chain], capture_output=True)
        for chain in chains:
            if subprocess.run(["iptables", "-w", "-t", table, "-X", chain], capture_output=True).returncode == 0:
                removed += 1
    if removed:
        say(f"engine: removed Docker's iptables chains and rules ({removed})")
    if Path("/sys/class/net/docker0").exists() and subprocess.run(["ip", "link", "del", "docker0"],
                                                                 capture_output=True).returncode == 0:
        say("engine: removed the docker0 bridge")


def status() -> dict:
    st = EngineState.load()
    return {"server": answers(), "started_by_dra_harness": bool(_ours_running(st)),
            "missing_capabilities": missing_caps(), "runc_wrapper": WRAPPER.exists(),
            "daemon_json": DAEMON_JSON.read_text() if DAEMON_JSON.exists() else None}
