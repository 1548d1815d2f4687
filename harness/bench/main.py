"""`make bench`: the numbers the issues name, measured (not asserted) and written to
artifacts/bench.json. Each section can be skipped; `--quick` skips the slow ones.

  render     fakedev renders trn2.48xlarge vs `cp -a` of the finished tree     target: render <= 2x copy
  discovery  refdriver: trn2.48xlarge tree -> slice objects (under umockdev)   target: <= 50 ms
  up         local cluster of trn1.32xlarge + trn2.48xlarge until slices exist  target: <= 10 s
  prepare    NodePrepareResources over the unix socket (real claim GET + CDI)   report p50/p99
  overhead   claim created -> allocation observed, minus the scheduler's time   report
  scale      50/200/500 trn2.48xlarge nodes in host mode, filled with aligned claims, beside
             upstream scheduler_perf of the same shape (built once, ~7 min)  target: >= 0.7x, up <= 120 s
  taints     fault -> taint, taint -> eviction (1 and 50 pods), a drained node (taints.py)
  features   partitions and shared EFAs beside plain devices, 50 nodes (scale.py feature_runs)
  legacy     the alignment pods asking by count lose, per preset (legacy.py)
  repro      capture of an oracle-bug scenario and its repro in both modes (repro.py)
  conform    the report card of each reference driver profile, cluster included (conform.py)
             target: <= 3 min each
             targets: taint <= 2 s, 50 pods evicted <= 5 s
  e2e        the full e2e suite with cached binaries                           target: <= 180 s
  e2e-kind   the same suites on kind (offline images, cached), beside e2e     target: <= 10 min
  cold-build Kubernetes + etcd from empty Go caches (opt-in: --cold-build)       report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl
import uuid
from pathlib import Path

from ..backends import bins
from . import conform, legacy, repro, soak, taints
from ..backends.local.backend import LocalBackend

ROOT = bins.ROOT


def _state_tmp() -> Path:
    from ..backends.paths import ensure_root

    d = ensure_root() / f"bench-{uuid.uuid4().hex[:6]}"
    d.mkdir(parents=True)
    return d


def bench_render() -> dict:
    import fakedev

    base = _state_tmp()
    try:
        topo = fakedev.load_preset("trn2.48xlarge")
        runs = []
        for i in range(3):
            t0 = time.perf_counter()
            fakedev.generate(topo, base / f"r{i}")
            render = time.perf_counter() - t0
            t0 = time.perf_counter()
            subprocess.run(["cp", "-a", str(base / f"r{i}"), str(base / f"c{i}")], check=True)
            copy = time.perf_counter() - t0
            runs.append((render, copy))
        render, copy = statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs)
        files = sum(len(f) for _, _, f in os.walk(base / "r0"))
        return {"render_s": round(render, 3), "cp_a_s": round(copy, 3), "ratio": round(render / copy, 2),
                "files": files, "filesystem": str(base.parent), "target": "ratio <= 2"}
    finally:
        shutil.rmtree(base, ignore_errors=True)


DISCOVERY = """
import json, statistics, time, pyudev, sys
from pathlib import Path
from refdriver import attributes, discovery
ctx = pyudev.Context(); root = Path(sys.argv[1]); ts = []
for _ in range(30):
    t0 = time.perf_counter()
    node = discovery.discover(ctx, root)
    n, e = attributes.neuron_devices(node, True), attributes.efa_devices(node)
    ts.append((time.perf_counter() - t0) * 1000)
assert len(n) == 16 and len(e) == 16
print(json.dumps({"median_ms": round(statistics.median(ts), 1), "p90_ms": round(sorted(ts)[26], 1), "runs": len(ts)}))
"""


def bench_discovery() -> dict:
    import fakedev
    from fakedev.nsrun import umockdev_preload

    base = _state_tmp()
    try:
        fakedev.generate(fakedev.load_preset("trn2.48xlarge"), base / "t")
        lib = umockdev_preload()
        if not lib:
            return {"skipped": "umockdev is not installed"}
        env = {**os.environ, "UMOCKDEV_DIR": str(base / "t"), "LD_PRELOAD": lib}
        out = subprocess.run([sys.executable, "-c", DISCOVERY, str(base / "t")], env=env, capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout
        return {**json.loads(out), "target": "median <= 50 ms", "what": "both drivers' devices from a trn2.48xlarge tree"}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _up(nodes: str, name: str, artifacts: Path, drivers: list[str] | None = None, timeout: float = 600,
        netns: bool | None = None):
    from ..backends.spec import ClusterSpec, parse_nodes

    return LocalBackend().up(ClusterSpec(name=name, nodes=parse_nodes(nodes, drivers), netns=netns), artifacts,
                             attached=True, timeout=timeout)


def bench_up(artifacts: Path) -> dict:
    """`up` of 2 nodes until every slice is published, with a network namespace and IMDS per node
    (the default as root) and without, interleaved so both see the same machine."""
    from ..backends.local import netns as netnsmod

    modes = {"netns": True, "host-network": False} if netnsmod.available() is None else {"host-network": False}
    times: dict[str, list[float]] = {m: [] for m in modes}
    downs = []
    for _ in range(3):
        for mode, flag in modes.items():
            name = f"bench-up-{uuid.uuid4().hex[:4]}"
            t0 = time.perf_counter()
            _up("trn1.32xlarge,trn2.48xlarge", name, artifacts / name, netns=flag)
            times[mode].append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            LocalBackend().down(name)
            downs.append(time.perf_counter() - t1)
    out = {mode: {"runs_s": [round(t, 2) for t in ts], "median_s": round(statistics.median(ts), 2)}
           for mode, ts in times.items()}
    med = {m: statistics.median(ts) for m, ts in times.items()}
    if "netns" in med:
        out["netns_slowdown_pct"] = round(100 * (med["netns"] / med["host-network"] - 1), 1)
    return {**out, "median_s": round(med.get("netns", med["host-network"]), 2),
            "down_s": round(statistics.median(downs), 2),
            "target": "<= 10 s for 2 nodes, every node's slices published; netns <= 20 % slower"}


def bench_prepare_and_overhead(artifacts: Path) -> dict:
    from ..backends.local.kubelet_standin import call, register
    from ..kube import Kube

    name = f"bench-prep-{uuid.uuid4().hex[:4]}"
    c = _up("trn1.32xlarge,trn2.48xlarge", name, artifacts / name)
    try:
        kube = Kube(str(c.kubeconfig))
        kube.create_namespace("bench")
        node = "trn1-32xlarge-0"
        claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "c", "namespace": "bench"},
                 "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "count": 4}}],
                                      "constraints": [{"requests": ["n"], "matchAttribute": "resource.aws.com/devicegroup4_id"}]}}}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "bench"},
               "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [{"name": "c", "image": "x"}],
                        "resourceClaims": [{"name": "d", "resourceClaimName": "c"}]}}
        kube.apply(claim)
        kube.apply(pod)
        cl = kube.wait("ResourceClaim", lambda o: bool(o and (o.get("status") or {}).get("allocation")), namespace="bench",
                       name="c", timeout=30, what="bench claim allocated")
        kube.wait("Pod", lambda o: bool(o and o["status"].get("phase") == "Running"), namespace="bench", name="p",
                  timeout=30, what="bench pod running")
        plugin = register(c.nodes[node].plugins_dir.parent / "plugins_registry" / "neuron.aws.com-reg.sock")
        ref = [{"namespace": "bench", "name": "c", "uid": cl["metadata"]["uid"]}]
        lat = []
        for _ in range(100):  # unprepare + prepare: each prepare GETs the claim and writes a CDI spec
            call(plugin, "unprepare", ref)
            t0 = time.perf_counter()
            r = call(plugin, "prepare", ref)
            lat.append((time.perf_counter() - t0) * 1000)
            assert not r[ref[0]["uid"]]["error"], r
        lat.sort()
        prepare = {"calls": len(lat), "p50_ms": round(lat[49], 2), "p99_ms": round(lat[98], 2), "max_ms": round(lat[-1], 2)}
        overhead = _overhead(kube, c)
    finally:
        LocalBackend().down(name)
    return {"prepare": prepare, "overhead": overhead}


def _scheduler_metric(c, name: str) -> tuple[float, float]:
    """(sum, count) of a scheduler histogram, read with the admin client certificate."""
    from ..backends.local.backend import load_state

    st = load_state(c.name)
    port = next((p["argv"] for p in st.procs if p["name"] == "kube-scheduler"), [])
    port = next(a.split("=")[1] for a in port if a.startswith("--secure-port="))
    pki = Path(st.state_dir) / "control" / "pki"
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(pki / "probe.crt", pki / "probe.key")
    text = urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=10).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def _overhead(kube, c, n: int = 40) -> dict:
    """Sequential claims: wall time from create to the watch seeing the allocation, minus the
    scheduler's own scheduling-attempt time (its metrics), per claim."""
    s0, c0 = _scheduler_metric(c, "scheduler_scheduling_attempt_duration_seconds")
    observed = []
    for i in range(n):
        name = f"o{i}"
        claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": "bench"},
                 "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com"}}]}}}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bench"},
               "spec": {"containers": [{"name": "c", "image": "x"}], "resourceClaims": [{"name": "d", "resourceClaimName": name}]}}
        t0 = time.perf_counter()
        kube.apply(claim)
        kube.apply(pod)
        kube.wait("ResourceClaim", lambda o: bool(o and (o.get("status") or {}).get("allocation")), namespace="bench",
                  name=name, timeout=30, what=f"claim {name}")
        observed.append(time.perf_counter() - t0)
        kube.core.delete_namespaced_pod(name, "bench", grace_period_seconds=0)
    s1, c1 = _scheduler_metric(c, "scheduler_scheduling_attempt_duration_seconds")
    sched = (s1 - s0) / max(1.0, c1 - c0)
    mean = statistics.mean(observed)
    return {"claims": n, "observed_mean_ms": round(mean * 1000, 1), "scheduler_attempt_mean_ms": round(sched * 1000, 1),
            "harness_overhead_ms": round((mean - sched) * 1000, 1),
            "what": "create claim+pod -> allocation seen by the harness's watch, minus the scheduler's attempt time"}


def bench_scale(artifacts: Path, sizes: list[int], upstream: bool) -> dict:
    """Host-mode scale runs beside scheduler_perf (scale.py); the headline numbers here, the
    rest in artifacts/bench/scale/."""
    from .scale import main_run

    r = main_run(artifacts, sizes, upstream=upstream)
    head = {}
    for n, h in r["harness"].items():
        head[f"harness_{n}"] = {k: h[k] for k in ("up_s", "pods_per_s", "per_second", "misaligned", "harness_rss_mib_full")
                                if k in h} if "error" not in h else h
    for k, v in r["scheduler_perf"].items():
        head[f"sp_{k}"] = {x: v[x] for x in ("avg_pods_per_s", "p50", "p90", "wall_s") if x in v} if "error" not in v else v
    head["ratio"] = r["ratio"]
    head["target"] = "harness >= 0.7x scheduler_perf; 500 nodes up <= 120 s; 0 misaligned; harness <= 4 GiB at 500"
    return head


def bench_e2e(artifacts: Path, backend: str = "local") -> dict:
    """`make e2e` on a backend: wall time and what JUnit counted (a suite that skipped its
    scenarios would otherwise look fast)."""
    import xml.etree.ElementTree as ET

    out = artifacts / ("e2e" if backend == "local" else f"e2e-{backend}")
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "harness.cli", "e2e", "--backend", backend, "--artifacts", str(out)],
                         cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = round(time.perf_counter() - t0, 1)
    try:
        suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    except (OSError, ET.ParseError, AttributeError):
        counts = {}
    target = "<= 180 s with cached binaries" if backend == "local" else "<= 10 min with cached images"
    return {"exit": rc, "wall_s": wall, **counts, "target": target}


def _beside(kind: dict, local: dict | None) -> dict:
    """The kind suite's time as a multiple of the local backend's, measured in the same run."""
    if local and local.get("wall_s") and "wall_s" in kind:
        kind["ratio_to_local"] = round(kind["wall_s"] / local["wall_s"], 2)
    return kind


def bench_replay(artifacts: Path) -> dict:
    """The shipped healthy trace (500 workloads, one hour, 8 nodes) end to end, then its report."""
    out = artifacts / "replay-healthy"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "harness.cli", "replay", str(ROOT / "platform/traces/healthy.yaml"),
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-500:])
    replay_s = next((float(x.split(" in ")[1].split("s")[0]) for x in r.stderr.splitlines() if "of trace in" in x), None)
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "report", str(out)], cwd=ROOT, check=True, capture_output=True)
    report_s = time.perf_counter() - t1
    return {"wall_s": round(wall, 1), "replay_s": replay_s, "report_s": round(report_s, 2),
            "report_kib": (out / "report.html").stat().st_size // 1024, "target": "<= 180 s for 500 workloads on 8 nodes"}


def bench_cold_build() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="cold-build-", dir="/tmp"))
    env = {**os.environ, "GOCACHE": str(tmp / "gocache"), "GOMODCACHE": str(tmp / "mod"), "DRA_HARNESS_CACHE": str(tmp / "cache")}
    t0 = time.perf_counter()
    try:
        subprocess.run([str(bins.BUILD)], env=env, check=True, stdout=subprocess.DEVNULL)
        return {"seconds": round(time.perf_counter() - t0), "what": "module download + compile of apiserver, "
                "controller-manager, scheduler, kubectl and etcd from empty caches on this machine"}
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(tmp)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_features(artifacts: Path) -> dict:
    """Allocation with partitions and with shared EFAs beside the plain devices (scale.py)."""
    from .scale import feature_runs

    return feature_runs(artifacts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dra-harness bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="sections to run")
    ap.add_argument("--quick", action="store_true", help="skip scale, e2e and replay")
    ap.add_argument("--cold-build", action="store_true", help="also time a build from empty Go caches (minutes)")
    ap.add_argument("--scale-sizes", default="50,200,500", help="node counts of the scale runs (4 pods per node)")
    ap.add_argument("--no-upstream", action="store_true", help="scale: skip scheduler_perf")
    ap.add_argument("--soak-seconds", type=float, default=600, help="soak: how long to run (bounded; default 10 min)")
    ap.add_argument("--artifacts", default="artifacts/bench")
    a = ap.parse_args(argv)
    if not 1 <= a.soak_seconds <= 3600:  # nan fails both comparisons: refused too
        ap.error(f"--soak-seconds: a number of seconds in 1..3600 (the soak is bounded), got {a.soak_seconds}")
    artifacts = Path(a.artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    sections = {
        "render": bench_render, "discovery": bench_discovery, "up": lambda: bench_up(artifacts),
        "prepare+overhead": lambda: bench_prepare_and_overhead(artifacts),
        "scale": lambda: bench_scale(artifacts, [int(x) for x in a.scale_sizes.split(",")], not a.no_upstream), "e2e": lambda: bench_e2e(artifacts),
        "e2e-kind": lambda: _beside(bench_e2e(artifacts, "kind"), results.get("e2e")),
        "replay": lambda: bench_replay(artifacts), "cold-build": bench_cold_build,
        "taints": lambda: taints.run(artifacts),
        "features": lambda: bench_features(artifacts),
        "legacy": lambda: legacy.run(artifacts),
        "repro": lambda: repro.run(artifacts),
        "conform": lambda: conform.run(artifacts),
        "soak": lambda: soak.run(artifacts, a.soak_seconds),
    }
    wanted = a.only or [s for s in sections if not (a.quick and s in ("scale", "e2e", "e2e-kind", "replay"))
                        and s not in ("cold-build", "soak") or s == "cold-build" and a.cold_build]
    results: dict[str, dict] = {}
    for s in wanted:
        print(f"bench: {s} ...", flush=True)
        t0 = time.perf_counter()
        try:
            results[s] = sections[s]()
        except Exception as e:  # one broken section must not hide the others' numbers
            results[s] = {"error": f"{type(e).__name__}: {e}"[:500]}
        print(f"bench: {s}: {json.dumps(results[s])} ({time.perf_counter() - t0:.0f}s)", flush=True)
    out = artifacts / "bench.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"bench: results in {out}")
    return 1 if any("error" in r for r in results.values()) else 0
