"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler as processes on 127.0.0.1.

Flags follow hack/local-up-cluster.sh and kwok's binary runtime (research/local-cluster.md §4,
§8), with: TLS everywhere, Node+RBAC authorization with NodeRestriction, service CIDR in
198.19.0.0/16 and no endpoint reconciler (nothing advertises a private address), no leader
election, and the node lifecycle controller off (fake nodes have no kubelet heartbeats; the
harness keeps them Ready).
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .. import gates, procs
from .pki import Pki

SERVICE_CIDR = "198.19.0.0/16"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StartError(Exception):
    pass


@dataclass
class ControlPlane:
    bin_dir: Path
    state_dir: Path  # data, PKI, kubeconfigs (removed on down)
    log_dir: Path  # component logs (kept, in the artifacts)
    verbosity: int = 2
    k8s_version: str | None = None  # for the feature gates of its minor (gates.py)
    beta_apis: bool | None = None  # serve the beta DRA API versions (gates.runtime_config)
    feature_gates: dict[str, bool] = field(default_factory=dict)  # beside the minor's (gates.merged)
    procs: list[procs.Proc] = field(default_factory=list)
    popens: dict[int, object] = field(default_factory=dict)
    apiserver_port: int = 0
    etcd_port: int = 0
    pki: Pki | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    def _spawn(self, name: str, argv: list[str]) -> procs.Proc:
        p, popen = procs.spawn(name, argv, self.log_dir / f"{name}.log")
        self.procs.append(p)
        self.popens[p.pid] = popen
        return p

    def start(self, deadline: float) -> None:
        pki_dir = self.state_dir / "pki"
        self.pki = pki = Pki(pki_dir)
        # etcd trusts only its own CA, whose one client certificate is the API server's: no other
        # credential of the cluster (drivers, admin) can reach etcd directly.
        etcd_pki = Pki(self.state_dir / "etcd-pki", "etcd-ca", service_accounts=False)
        etcd_crt, etcd_key = etcd_pki.issue("etcd-server", "etcd", server=True, client=True)
        etcd_client = etcd_pki.issue("apiserver-etcd-client", "kube-apiserver-etcd-client")
        srv_crt, srv_key = pki.issue("apiserver", "kube-apiserver", server=True)
        proxy_crt, proxy_key = pki.issue("front-proxy-client", "front-proxy-client")
        etcd_port, peer_port = free_port(), free_port()
        self.apiserver_port = free_port()
        self.etcd_port = etcd_port
        b = self.bin_dir
        tls = [f"--cert-file={etcd_crt}", f"--key-file={etcd_key}", f"--trusted-ca-file={etcd_pki.ca_path}",
               "--client-cert-auth", f"--peer-cert-file={etcd_crt}", f"--peer-key-file={etcd_key}",
               f"--peer-trusted-ca-file={etcd_pki.ca_path}", "--peer-client-cert-auth"]
        etcd = self._spawn("etcd", [
            str(b / "etcd"), "--name=n0", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls=https://127.0.0.1:{etcd_port}", f"--advertise-client-urls=https://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=https://127.0.0.1:{peer_port}", f"--initial-advertise-peer-urls=https://127.0.0.1:{peer_port}",
            f"--initial-cluster=n0=https://127.0.0.1:{peer_port}", *tls, "--unsafe-no-fsync", "--log-level=warn",
            "--quota-backend-bytes=4294967296", "--auto-compaction-retention=1"])
        self._wait_http(etcd, f"https://127.0.0.1:{etcd_port}/health", deadline, client=etcd_client)
        api = self._spawn("kube-apiserver", [
            str(b / "kube-apiserver"), f"--etcd-servers=https://127.0.0.1:{etcd_port}",
            f"--etcd-cafile={etcd_pki.ca_path}", f"--etcd-certfile={etcd_client[0]}", f"--etcd-keyfile={etcd_client[1]}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.apiserver_port}",
            f"--tls-cert-file={srv_crt}", f"--tls-private-key-file={srv_key}", f"--client-ca-file={pki.ca_path}",
            "--service-account-issuer=https://kubernetes.default.svc", f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--endpoint-reconciler-type=none", "--allow-privileged=true", "--profiling=false", f"--v={self.verbosity}",
            # aggregation-layer settings, so components find the requestheader CA they look for
            f"--requestheader-client-ca-file={pki.ca_path}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-", f"--proxy-client-cert-file={proxy_crt}",
            f"--proxy-client-key-file={proxy_key}", *gates.gate_flags(self.k8s_version, self.feature_gates),
            *gates.runtime_config_flags(self.k8s_version, self.beta_apis)])
        admin = pki.kubeconfig(self.admin_kubeconfig, self.server, "admin", "admin", ["system:masters"])
        self._wait_http(api, f"{self.server}/readyz", deadline, client=pki.issue("probe", "probe", ["system:masters"]))
        kcm = pki.kubeconfig(self.state_dir / "kcm.kubeconfig", self.server, "kcm", "system:kube-controller-manager")
        kcm_port = free_port()
        kcm_p = self._spawn("kube-controller-manager", [
            str(b / "kube-controller-manager"), f"--kubeconfig={kcm}", f"--authentication-kubeconfig={kcm}",
            f"--authorization-kubeconfig={kcm}", f"--service-account-private-key-file={pki_dir / 'sa.key'}",
            f"--root-ca-file={pki.ca_path}", "--use-service-account-credentials", "--controllers=*,-nodelifecycle",
            "--kube-api-qps=300", "--kube-api-burst=600",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", f"--v={self.verbosity}",
            *gates.gate_flags(self.k8s_version, self.feature_gates)])
        sched = pki.kubeconfig(self.state_dir / "scheduler.kubeconfig", self.server, "scheduler", "system:kube-scheduler")
        sched_port = free_port()
        # Client QPS as scheduler_perf raises it: with DRA each pod costs a claim status write and a
        # binding, so the default 50 QPS would cap throughput, not the scheduler.
        sched_cfg = self.state_dir / "scheduler.yaml"
        sched_cfg.write_text(f"""apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {{kubeconfig: "{sched}", qps: 500, burst: 1000}}
leaderElection: {{leaderElect: false}}
""")
        sched_p = self._spawn("kube-scheduler", [
            str(b / "kube-scheduler"), f"--config={sched_cfg}", f"--authentication-kubeconfig={sched}",
            f"--authorization-kubeconfig={sched}", "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}", f"--v={self.verbosity}", *gates.gate_flags(self.k8s_version, self.feature_gates)])
        self.scheduler_port = sched_port
        for p, port in ((kcm_p, kcm_port), (sched_p, sched_port)):
            self._wait_http(p, f"https://127.0.0.1:{port}/healthz", deadline)
        del admin

    def _wait_http(self, p: procs.Proc, url: str, deadline: float, client: tuple[Path, Path] | None = None) -> None:
        """Poll a health endpoint until it answers 200; fail with the component's last log lines."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if client:
            ctx.load_cert_chain(*client)
        last = "no answer"
        while time.monotonic() < deadline:
            if not procs.alive(p):
                raise StartError(f"{p.name} exited during start-up; last log lines ({p.log}):\n{procs.tail(p.log)}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=ctx if url.startswith("https") else None) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise StartError(f"{p.name} not healthy at {url} in time (last: {last}); log: {p.log}\n{procs.tail(p.log)}")

    def exit_status(self, p: procs.Proc) -> int | None:
        """A dead component's exit status (negative: the signal that ended it), as `wait` gives it."""
        popen = self.popens.get(p.pid)
        return popen.poll() if popen is not None else None

    def restart(self, p: procs.Proc) -> procs.Proc:
        """Start a dead component again with the same command line, as the kubelet restarts a
        static pod: the same ports, certificates and data directory, its log appended to."""
        old = self.popens.pop(p.pid, None)
        if old is not None:
            old.poll()  # reap it
        new, popen = procs.spawn(p.name, p.argv, Path(p.log))
        self.procs[self.procs.index(p)] = new
        self.popens[new.pid] = popen
        return new

    def unrestartable(self, p: procs.Proc) -> str | None:
        """Why starting `p` again cannot help, or None: an etcd whose data directory is gone
        would come back empty, and the cluster would silently lose every object."""
        if p.name == "etcd" and not (self.state_dir / "etcd" / "member" / "snap").is_dir():
            return f"its data directory {self.state_dir / 'etcd'} is gone"
        return None

    def stop(self, grace: float = 3) -> None:
        """Scheduler and controller-manager together, then the apiserver, then etcd; each group
        gets `grace` seconds after SIGTERM (the state is thrown away either way)."""
        pairs = [(p, self.popens.get(p.pid)) for p in self.procs]
        by_name = {p.name: pair for pair in pairs for p in [pair[0]]}
        procs.stop_all([by_name[n] for n in ("kube-scheduler", "kube-controller-manager") if n in by_name], timeout=grace)
        procs.stop_all([by_name[n] for n in ("kube-apiserver",) if n in by_name], timeout=grace)
        procs.stop_all([by_name[n] for n in ("etcd",) if n in by_name], timeout=grace)
