"""Upstream's DRA scheduling benchmark (scheduler_perf), run beside the harness's scale run.

scheduler_perf (k8s.io/kubernetes/test/integration/scheduler_perf/dra) runs an API server and the
scheduler in one process, creates nodes and ResourceSlices directly (no drivers, no kubelet)
and measures pods scheduled per second, sampled each second. It is built from the same wrapper
module and version as `make bins` (clusters/local/build-schedperf.sh; research/perf-sideby.md).

Two workloads are run: upstream's own SchedulingWithResourceClaimTemplate/5000pods_500nodes,
unchanged, and `HarnessShape`, added to a copy of its config: what the harness's scale run
does, node for node: trn2.48xlarge slices exactly as the reference driver publishes them (16
devices, its attributes), claims from a template asking for 4 devices with
`matchAttribute: resource.aws.com/devicegroup4_id`, the cluster filled from empty to full.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from ..backends import bins

BUILD = bins.ROOT / "clusters/local/build-schedperf.sh"
CLAIM = {"requests": [{"name": "n", "exactly": {"deviceClassName": "neuron.aws.com", "count": 4}}],
         "constraints": [{"requests": ["n"], "matchAttribute": "resource.aws.com/devicegroup4_id"}]}

HARNESS_CASE = """
# Added by dra-harness (harness/bench/schedperf.py): the harness's scale run, in scheduler_perf.
- name: HarnessShape
  featureGates:
    DynamicResourceAllocation: true
  workloadTemplate:
  - opcode: createNodes
    nodeTemplatePath: templates/node-with-dra-test-driver.yaml
    countParam: $nodes
  - opcode: createAny
    templatePath: templates/dra-harness-resourceslice.yaml
    countParam: $nodes
  - opcode: createAny
    templatePath: templates/dra-harness-deviceclass.yaml
  - opcode: createAny
    templatePath: templates/dra-harness-resourceclaimtemplate.yaml
    namespace: test
  - opcode: createPods
    namespace: test
    countParam: $pods
    podTemplatePath: templates/pod-with-claim-template.yaml
    collectMetrics: true
  workloads:
"""


def build(version: str | None, say=print) -> Path:
    """The directory with scheduler_perf_dra.test and its config (built once per version)."""
    say(f"schedperf: building upstream's scheduler_perf DRA benchmark for {bins.resolve(version)} if needed "
        "(about 7 minutes and 3 GB of memory the first time)")
    r = subprocess.run([str(BUILD), bins.resolve(version)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building scheduler_perf failed: {r.stderr[-1500:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def _slice_template(devices: list[dict]) -> str:
    """The reference driver's slice of one trn2.48xlarge node, as a scheduler_perf template
    (JSON is YAML; the only template actions are the per-node names)."""
    body = {"kind": "ResourceSlice", "apiVersion": "resource.k8s.io/v1",
            "metadata": {"name": "dra-harness-slice-NODEINDEX"},
            "spec": {"driver": "neuron.aws.com", "nodeName": "scheduler-perf-dra-NODEINDEX",
                     "pool": {"name": "scheduler-perf-dra-NODEINDEX", "generation": 1, "resourceSliceCount": 1},
                     "devices": devices}}
    text = json.dumps(body, indent=1)
    if "{{" in text:
        raise ValueError("device attributes contain '{{', which scheduler_perf would read as a template action")
    return text.replace("NODEINDEX", "{{.Index}}")


def workdir(dest: Path, config_dir: Path, devices: list[dict], sizes: list[tuple[int, int]]) -> Path:
    """A copy of the benchmark's config with HarnessShape added (one workload per (nodes, pods))."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(config_dir, dest)
    tpl = dest / "templates"
    (tpl / "dra-harness-resourceslice.yaml").write_text(_slice_template(devices))
    (tpl / "dra-harness-deviceclass.yaml").write_text(json.dumps({
        "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "neuron.aws.com"},
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "neuron.aws.com"'}}]}}))
    (tpl / "dra-harness-resourceclaimtemplate.yaml").write_text(json.dumps({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": "test-claim-template"},
        "spec": {"spec": {"devices": CLAIM}}}))
    case = HARNESS_CASE + "".join(f"  - name: {n}nodes_{p}pods\n    labels: [dra-harness]\n    params: {{nodes: {n}, pods: {p}}}\n"
                                  for n, p in sizes)
    with open(dest / "performance-config.yaml", "a") as f:
        f.write(case)
    return dest


def run(test_bin: Path, etcd_dir: Path, work: Path, case: str, workload: str, artifacts: Path,
        timeout: float = 1800) -> dict:
    """One BenchmarkPerfScheduling case/workload; its SchedulingThroughput data item and wall time."""
    items = artifacts / f"sp-{case}-{workload}"
    if items.exists():
        shutil.rmtree(items)
    items.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{etcd_dir}:{os.environ.get('PATH', '')}"}  # it runs etcd from PATH
    log = artifacts / f"sp-{case}-{workload}.log"
    t0 = time.perf_counter()
    with open(log, "w") as out:
        r = subprocess.run([str(test_bin), "-test.run=^$", f"-test.bench=^BenchmarkPerfScheduling$/^{case}$/^{workload}$",
                            "-test.benchtime=1ns", f"-test.timeout={int(timeout)}s", "-perf-scheduling-label-filter=",
                            f"-data-items-dir={items}"], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                           timeout=timeout + 60)
    wall = time.perf_counter() - t0
    found = [d for f in items.glob("*.json") for d in json.loads(f.read_text()).get("dataItems") or []]
    thr = next((d for d in found if d.get("labels", {}).get("Metric") == "SchedulingThroughput"), None)
    # a workload below upstream's own threshold fails the benchmark but still measured it
    below = r.returncode != 0 and thr is not None and "expected \"SchedulingThroughput\"" in log.read_text()
    if thr is None or (r.returncode != 0 and not below):
        text = log.read_text()
        at = text.find("FATAL ERROR")
        why = text[at:at + 600] if at >= 0 else text[-1500:]
        raise RuntimeError(f"scheduler_perf {case}/{workload} failed ({r.returncode}); see {log}: {why}")
    data = thr["data"]
    return {"case": case, "workload": workload, "wall_s": round(wall, 1),
            "avg_pods_per_s": round(data.get("Average", 0), 1), "p50": round(data.get("Perc50", 0), 1),
            "p90": round(data.get("Perc90", 0), 1), "p99": round(data.get("Perc99", 0), 1),
            "data_items": str(items), "log": str(log),
            **({"below_upstream_threshold": True} if below else {})}
