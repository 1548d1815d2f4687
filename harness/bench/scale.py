"""The scale run (issue 14): N fake trn2.48xlarge nodes in host mode, pods with aligned claims
from a template until the cluster is full, through the real API server, scheduler, controller
manager, reference-driver hosts and kubelet stand-in; beside it upstream's scheduler_perf of the
same shape (schedperf.py). Measured, per size: `up` until every slice is published, pods/s (whole
run and per-second samples, as scheduler_perf samples), memory of each component, CPU seconds
each component spent while pods were being scheduled, the API server's requests by resource,
and the oracle's verdict on every allocation. Written to artifacts/bench/scale-*.json.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from . import schedperf
from ..backends import bins
from ..backends.local.backend import LocalBackend, control, load_state
from ..backends.procs import cpu_seconds

PRESET = "trn2.48xlarge"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")


def _rss_mib(pid: int) -> float:
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return 0.0


def components(name: str) -> dict[str, int]:
    """Component -> pid: the control plane, the supervisor (plugin watcher, kubelet and NRI
    stand-ins, IMDS) and every driver process."""
    st = load_state(name)
    out = {p["name"]: p["pid"] for p in st.procs if p["name"] in CONTROL_PLANE or ".refdriver-" in p["name"]}
    out["supervisor"] = st.pid
    return out


def _harness_mib(rss: dict[str, float]) -> float:
    return sum(v for k, v in rss.items() if k not in CONTROL_PLANE)


def per_second(times: list[datetime]) -> dict:
    """scheduler_perf's view: pods scheduled in each second, first and last (partial) seconds dropped."""
    counts = Counter(int(t.timestamp()) for t in times)
    if not counts:
        return {}
    lo, hi = min(counts), max(counts)
    samples = sorted(counts.get(s, 0) for s in range(lo + 1, hi))
    if not samples:
        return {}

    def pct(p: float) -> float:
        return float(samples[min(len(samples) - 1, int(p * len(samples)))])

    return {"avg": round(statistics.mean(samples), 1), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
            "seconds": len(samples)}


def _api_requests(kube) -> Counter:
    text = kube.raw("/metrics").decode()
    out: Counter = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.rindex("}")].split(","))
            res = labels.get("resource", '""').strip('"') or "-"
            out[f"{labels.get('verb', '').strip(chr(34))} {res}"] += float(line.rsplit(" ", 1)[1])
    return out


def _wait(kube, name: str, predicate, what: str, timeout: float, **kw) -> None:
    """kube.wait in short slices, failing at once when a component of the cluster died (the
    supervisor records it) instead of at the timeout."""
    from ..kube import WaitTimeout

    end = time.monotonic() + timeout
    while True:
        crashed = load_state(name).crashed
        if crashed:
            raise RuntimeError(f"{', '.join(crashed)} exited while waiting for {what}; see the cluster's logs")
        try:
            kube.wait("Pod", predicate, namespace="scale", timeout=min(5.0, max(0.1, end - time.monotonic())),
                      what=what, **kw)
            return
        except WaitTimeout:
            if time.monotonic() >= end:
                raise


def harness_run(artifacts: Path, nodes: int, pods: int, workers: int = 8, hold: bool = True,
                profiles: tuple[str, ...] = ("refdriver-neuron",), claim: dict | None = None) -> dict:
    """`hold`: the kubelet stand-in starts no pod until all are scheduled, so pods/s is the
    scheduler's, as scheduler_perf's is; the starts (prepare + Running) are timed after.
    `profiles` and `claim` (default: 4 aligned Neuron devices) set what is allocated."""
    from ..backends.spec import ClusterSpec, parse_nodes
    from ..judge.oracle import judge
    from ..kube import Kube

    name = f"scale-{nodes}-{uuid.uuid4().hex[:4]}"
    spec = ClusterSpec(name=name, nodes=parse_nodes(",".join([PRESET] * nodes), list(profiles)), netns=False,
                       driver_hosts=True)
    t0 = time.perf_counter()
    c = LocalBackend().up(spec, artifacts / name, attached=True, timeout=900)
    up_s = time.perf_counter() - t0
    try:
        pids = components(name)
        rss_up = {k: round(_rss_mib(p), 1) for k, p in pids.items()}
        kube = Kube(str(c.kubeconfig))
        kube.create_namespace("scale")
        kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                    "metadata": {"name": "four", "namespace": "scale"},
                    "spec": {"spec": {"devices": claim or schedperf.CLAIM}}})
        if hold:  # scheduling alone, as scheduler_perf measures it (no kubelet); the starts after
            control(c, "hold-pods")
        requests0, cpu0 = _api_requests(kube), {k: cpu_seconds(p) for k, p in pids.items()}
        bench_cpu0 = cpu_seconds(os.getpid())

        def create(i: int) -> None:
            kube.core.create_namespaced_pod("scale", {"metadata": {"name": f"p{i}"}, "spec": {
                "containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                "resourceClaims": [{"name": "d", "resourceClaimTemplateName": "four"}]}})

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(create, range(pods)))
        created_s = time.perf_counter() - t0

        def scheduled(lst) -> int:
            return sum(1 for p in lst["items"] if p["spec"].get("nodeName"))

        _wait(kube, name, lambda lst: scheduled(lst) >= pods, f"{pods} pods scheduled", 900,
              describe=lambda lst: f"{scheduled(lst)} scheduled")
        sched_s = time.perf_counter() - t0
        cpu = {k: round(cpu_seconds(p) - cpu0[k], 1) for k, p in pids.items()}
        cpu["bench client (pod creation)"] = round(cpu_seconds(os.getpid()) - bench_cpu0, 1)
        requests = _api_requests(kube) - requests0
        rss_full = {k: round(_rss_mib(p), 1) for k, p in pids.items()}
        pod_list, _ = kube.list("Pod", namespace="scale")
        times = [datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00"))
                 for p in pod_list for cond in (p["status"].get("conditions") or [])
                 if cond["type"] == "PodScheduled" and cond["status"] == "True"]
        t1 = time.perf_counter()
        if hold:
            control(c, "release-pods")
        _wait(kube, name, lambda lst: sum(1 for p in lst["items"] if p["status"].get("phase") == "Running") >= pods,
              f"{pods} pods running (prepared by the drivers)", 900)
        running_s = time.perf_counter() - t0
        starts_s = time.perf_counter() - t1
        claims, _ = kube.list("ResourceClaim", namespace="scale")
        truths = c.truths()  # once per distinct tree
        t1 = time.perf_counter()
        wrong = [v for v in (judge(cl, truths, claims) for cl in claims) if not v.ok]
        oracle_s = time.perf_counter() - t1
    finally:
        t1 = time.perf_counter()
        LocalBackend().down(name)
        down_s = time.perf_counter() - t1
    return {"nodes": nodes, "pods": pods, "devices": nodes * 16, "up_s": round(up_s, 1), "create_s": round(created_s, 1),
            "all_scheduled_s": round(sched_s, 1), "all_running_s": round(running_s, 1),
            "pod_starts": {"held_until_all_scheduled": hold, "seconds": round(starts_s, 1),
                           "per_s": round(pods / starts_s, 1)}, "down_s": round(down_s, 1),
            "pods_per_s": round(pods / sched_s, 1), "per_second": per_second(times),
            "misaligned": len(wrong), "claims_judged": len(claims), "oracle_s": round(oracle_s, 1),
            "driver_processes": sum(1 for k in pids if ".refdriver-" in k),
            "rss_mib_after_up": rss_up, "rss_mib_full": rss_full,
            "harness_rss_mib_full": round(_harness_mib(rss_full), 1),
            "cpu_s_while_scheduling": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
            "api_requests_while_scheduling": dict(requests.most_common(10))}


# What partitions and shared EFAs cost the allocator, against the plain devices they divide
# (issue 23's measure: >= 0.8x plain, same run, 50 nodes): each variant on its own cluster.
def _one(device_class: str, **extra) -> dict:
    return {"requests": [{"name": "d", "exactly": {"deviceClassName": device_class, "count": 1, **extra}}]}


FEATURE_VARIANTS = {
    "neuron_plain": (("refdriver-neuron",), _one("neuron.aws.com")),
    "neuron_partition": (("refdriver-neuron-partitioned",), _one("neuroncores.aws.com")),
    "efa_plain": (("refdriver-efa",), _one("efa.networking.k8s.aws")),
    "efa_shared": (("refdriver-efa-shared",), _one("efa.networking.k8s.aws", capacity={"requests": {"bandwidth": "50G"}})),
}


def feature_runs(artifacts: Path, nodes: int = 50, pods_per_node: int = 8, say=print) -> dict:
    """pods/s of one-device claims through each variant; ratios of each feature to its plain twin."""
    out: dict = {}
    for name, (profs, claim) in FEATURE_VARIANTS.items():
        say(f"features: {name}, {nodes} nodes, {nodes * pods_per_node} pods")
        r = harness_run(artifacts, nodes, nodes * pods_per_node, profiles=profs, claim=claim)
        out[name] = {k: r[k] for k in ("pods_per_s", "all_scheduled_s", "misaligned", "claims_judged", "up_s")}
    out["ratio_partition_to_plain"] = round(out["neuron_partition"]["pods_per_s"] / out["neuron_plain"]["pods_per_s"], 2)
    out["ratio_shared_efa_to_plain"] = round(out["efa_shared"]["pods_per_s"] / out["efa_plain"]["pods_per_s"], 2)
    out["target"] = "each feature >= 0.8x its plain twin; 0 misaligned"
    return out


def reference_devices() -> list[dict]:
    """The reference driver's devices for one trn2.48xlarge node, as it publishes them."""
    import subprocess
    import sys
    import tempfile

    import fakedev

    with tempfile.TemporaryDirectory() as d:
        fakedev.generate(fakedev.load_preset(PRESET), Path(d) / "tree")
        r = subprocess.run([sys.executable, "-m", "refdriver.cli", "neuron", "--sysfs-root", str(Path(d) / "tree"),
                            "--dry-run", "--node-name", "n"], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(bins.ROOT)})
    return [dev for s in json.loads(r.stdout) for dev in s["spec"]["devices"]]


def main_run(artifacts: Path, sizes: list[int], version: str | None = None, upstream: bool = True,
             say=print) -> dict:
    """Every size through the harness, then (when built) scheduler_perf's HarnessShape at the same
    sizes and upstream's own 5000pods_500nodes; ratios at each size."""
    out_dir = artifacts / "scale"
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"harness": {}, "scheduler_perf": {}, "ratio": {}}
    for n in sizes:
        say(f"scale: harness, {n} nodes, {n * 4} pods")
        try:
            result["harness"][n] = harness_run(artifacts, n, n * 4)
        except Exception as e:  # keep the other sizes' numbers
            result["harness"][n] = {"error": f"{type(e).__name__}: {e}"[:800]}
        (out_dir / f"harness-{n}.json").write_text(json.dumps(result["harness"][n], indent=2))
    if upstream:
        sp_dir = schedperf.build(version, say)
        work = schedperf.workdir(out_dir / "sp-work", sp_dir / "config", reference_devices(), [(n, n * 4) for n in sizes])
        test_bin, etcd_dir = sp_dir / "scheduler_perf_dra.test", bins.bin_dir(version)
        for n in sizes:
            say(f"scale: scheduler_perf HarnessShape, {n} nodes, {n * 4} pods")
            try:
                result["scheduler_perf"][f"HarnessShape/{n}"] = schedperf.run(test_bin, etcd_dir, work, "HarnessShape",
                                                                             f"{n}nodes_{n * 4}pods", out_dir)
            except Exception as e:
                result["scheduler_perf"][f"HarnessShape/{n}"] = {"error": f"{type(e).__name__}: {e}"[:800]}
        say("scale: scheduler_perf SchedulingWithResourceClaimTemplate/5000pods_500nodes (upstream's, unchanged)")
        try:
            result["scheduler_perf"]["upstream/5000pods_500nodes"] = schedperf.run(
                test_bin, etcd_dir, work, "SchedulingWithResourceClaimTemplate", "5000pods_500nodes", out_dir)
        except Exception as e:
            result["scheduler_perf"]["upstream/5000pods_500nodes"] = {"error": f"{type(e).__name__}: {e}"[:800]}
        for n in sizes:
            h, sp = result["harness"][n], result["scheduler_perf"].get(f"HarnessShape/{n}", {})
            if "error" not in h and "error" not in sp and sp.get("avg_pods_per_s"):
                hs = h["per_second"].get("avg") or h["pods_per_s"]
                result["ratio"][n] = {"per_second_avg": round(hs / sp["avg_pods_per_s"], 2),
                                      "whole_run": round(h["pods_per_s"] / sp["avg_pods_per_s"], 2)}
    (out_dir / "scale.json").write_text(json.dumps(result, indent=2))
    return result
