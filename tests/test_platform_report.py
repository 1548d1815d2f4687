"""The platform report and metrics: a replay against a real local cluster fills the ledger from
what the cluster shows; the metrics read it; the HTML page is self-contained and renders in a
real headless browser (Debian's chromium) without console errors. The browser check is shown
failing on a page with a script error and on one fetching from the network."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

import fakedev
from harness.platform import kit as kitmod
from harness.platform.htmlreport import render
from harness.platform.ledger import ClaimRecord, Denial, Intervention, Ledger, Sample
from harness.platform.metrics import compute, shape_problem, stranded_by_class
from harness.platform.topology import fraction

from .conftest import ROOT, local_cluster

KIT = ROOT / "platform/golden-paths.yaml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browser_problems(page: Path, shot: Path) -> list[str]:
    """Render `page` in headless chromium; the console messages it logged and the external
    references it holds (a report must fetch nothing)."""
    text = page.read_text()
    refs = [m for m in re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', text) if not m.startswith(("#", "data:"))]
    refs += re.findall(r"url\((?!['\"]?(?:#|data:))[^)]*\)", text) + re.findall(r"@import", text)
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1400,2000", f"--screenshot={shot}", "--enable-logging=stderr", "--log-level=0",
                        page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    if r.returncode != 0 or not shot.exists() or shot.stat().st_size < 10_000:
        console.append(f"no screenshot (exit {r.returncode}): {r.stderr[-500:]}")
    return console + [f"external reference: {x}" for x in refs]


needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make debs installs it)")


def _truth(tmp_path: Path, preset: str = "trn1.32xlarge") -> fakedev.Truth:
    fakedev.generate(fakedev.load_preset(preset), tmp_path / "tree")
    return fakedev.truth_of(tmp_path / "tree")


def test_topology_model_ranks_placements():
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        truth = _truth(Path(d))
    row = [f"neuron{i}" for i in range(4)]
    assert fraction(truth, row, []) == 1.0
    assert fraction(truth, ["neuron0", "neuron5", "neuron10", "neuron15"], []) == 0.5  # a diagonal: 2-hop ring steps
    efas = {i: next(e.id for e in truth.of_kind("efa") if i in e.serves) for i in range(16)}
    assert fraction(truth, ["neuron0"], [efas[0]]) == 1.0
    assert fraction(truth, ["neuron0"], [efas[15]]) == 0.25  # the EFA of the other socket
    assert fraction(truth, ["neuron0"], [efas[0]], {efas[0]: 1}) == 0.5  # an EFA shared with another claim


def test_metrics_from_a_ledger(tmp_path):
    kit = kitmod.load(KIT)
    truth = _truth(tmp_path)
    led = Ledger(kit=kit.name, end=1000)
    led.claims["team-inference/a"] = ClaimRecord("team-inference/a", "inference", "small-inference", 0, 1, 1, allocated=10,
                                                 node="n", neuron=["neuron0"], topology_fraction=1.0)
    led.claims["team-inference/b"] = ClaimRecord("team-inference/b", "inference", "batch-inference", 0, 4, 4, allocated=100,
                                                 node="n", neuron=["neuron0", "neuron5", "neuron10", "neuron15"],
                                                 topology_fraction=0.5, unblocked_by="delete-pod x")
    led.claims["team-training/c"] = ClaimRecord("team-training/c", "training", "distributed-training", 500, 16, 1)  # pending
    led.denials.append(Denial(5, "inference", "distributed-training", "access", "denied"))
    led.interventions.append(Intervention(90, "admin", "delete-pod", "x"))
    m = compute(led, kit)
    a = m["all"]["all"]
    assert (a.workloads, a.still_pending, a.interventions, a.denied_access, a.topology_slow) == (3, 1, 1, 1, 1)
    assert shape_problem(led.claims["team-training/c"]) == "oversized" and a.wrong_class == 2
    assert a.pending_max == 500 and m["class"]["distributed-training"].pending_cost == pytest.approx(500 / 3600 * 16 * 1.6, abs=1e-3)
    held = {"n": {"neuron0": "a", "neuron5": "b", "neuron10": "b", "neuron15": "b"}}
    stranded, efa = stranded_by_class({"n": truth}, held, kit)
    assert stranded["batch-inference"] == 12 and stranded["small-inference"] == 0 and efa["distributed-training"] == 8


@needs_browser
def test_report_renders_in_a_headless_browser_without_errors(tmp_path):
    kit = kitmod.load(KIT)
    truth = _truth(tmp_path)
    led = Ledger(kit=kit.name, end=600)
    led.claims["team-inference/a"] = ClaimRecord("team-inference/a", "inference", "batch-inference", 0, 4, 4, allocated=30,
                                                 node="n", neuron=["neuron0", "neuron1", "neuron2", "neuron3"], topology_fraction=1.0)
    led.claims["team-training/t"] = ClaimRecord("team-training/t", "training", "distributed-training", 60, 16, 16)
    led.explanations["team-training/t"] = "claim team-training/t-devices: cluster full\n  <held by team-inference/a>"
    led.samples = [Sample(t, t // 100, 1, 4, 16, {"batch-inference": 0, "distributed-training": 12},
                          {"distributed-training": 8}, t / 1000) for t in range(0, 600, 30)]
    claim = {"metadata": {"namespace": "team-inference", "name": "a"}, "status": {"allocation": {"devices": {"results": [
        {"driver": "neuron.aws.com", "pool": "n", "device": f"neuron-device-{i}", "request": "neurons"} for i in range(4)]}}}}
    page = tmp_path / "report.html"
    page.write_text(render(led, kit, {"n": truth}, [claim], "test report"))
    assert "&lt;held by team-inference/a&gt;" in page.read_text()  # explanations are escaped
    assert browser_problems(page, tmp_path / "shot.png") == []


@needs_browser
def test_the_browser_check_reports_script_errors_and_fetches(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>undefinedFunction()</script><img src="https://example.invalid/x.png"></body></html>')
    problems = browser_problems(page, tmp_path / "shot.png")
    assert any("undefinedFunction" in p for p in problems) and any("example.invalid" in p for p in problems), problems


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "r", "trn1.32xlarge,trn1.32xlarge", netns=False)


@pytest.mark.slow
def test_a_replay_records_what_the_cluster_did(cluster, tmp_path):
    """A short trace through the real scheduler: workloads wait, run, finish; a wrong team is
    denied at admission; quota holds back research's small-inference work; the report is written."""
    from harness.kube import Kube
    from harness.platform import trace as tracemod
    from harness.platform.replay import Replay, write_run

    kit = kitmod.load(KIT)
    t = tracemod.generate("healthy", kit, str(KIT), seed=5, count=30, duration=240,
                          nodes="trn1.32xlarge,trn1.32xlarge", wrong_team=0.1)
    t.workloads.append(tracemod.Workload(1.0, 60, "inference", "distributed-training", 16))  # not inference's class
    t.workloads.sort(key=lambda w: w.at)
    kube = Kube(str(cluster.kubeconfig))
    truths = cluster.truths()
    ledger = Replay(kube, t, kit, truths, speed=30).run()
    assert ledger.failures == [], "the API server refused workloads for other reasons"
    assert len(ledger.claims) + len([d for d in ledger.denials if d.reason == "access"]) == len(t.workloads)
    done = [r for r in ledger.claims.values() if r.allocated is not None]
    assert done and all(r.node in truths and len(r.neuron) >= 1 for r in done)
    assert all(r.topology_fraction == 1.0 for r in done if r.klass == "batch-inference"), "the scheduler placed a row"
    assert any(d.team == "inference" and d.klass == "distributed-training" for d in ledger.denials)
    assert ledger.samples and ledger.samples[-1].neuron_total == 32
    claims, _ = kube.list("ResourceClaimAll")
    write_run(tmp_path, ledger, t, kit, truths, claims)
    from harness.platform.htmlreport import write

    out = write(tmp_path)
    assert out.stat().st_size > 10_000
    if CHROMIUM:
        assert browser_problems(out, tmp_path / "shot.png") == []


@pytest.mark.slow
def test_replays_on_one_cluster_leave_nothing_and_count_only_their_own(cluster):
    """reliability-probe-2.md rows 48-49: a workload longer than its trace stayed Running after
    the replay, and the next replay on the same cluster collided with its pod and counted it."""
    from harness.kube import Kube
    from harness.platform import trace as tracemod
    from harness.platform.recorder import RUN_LABEL
    from harness.platform.replay import Replay

    kit = kitmod.load(KIT)
    kube = Kube(str(cluster.kubeconfig))
    t = tracemod.Trace("litter", str(KIT), "trn1.32xlarge", 30,
                       [tracemod.Workload(1.0, 10_000, "inference", "batch-inference", 4)])
    nss = sorted({ns for v in kit.teams.values() for ns in v})
    for run in range(2):
        r = Replay(kube, t, kit, cluster.truths(), speed=30)
        ledger = r.run()
        assert list(ledger.claims) and len(ledger.claims) == 1, f"run {run} counted {sorted(ledger.claims)}"
        assert ledger.failures == [], ledger.failures
        assert next(iter(ledger.claims.values())).allocated is not None, "the workload never got its devices"
        left = [p.metadata.name for ns in nss for p in kube.core.list_namespaced_pod(ns).items]
        claims = [c.metadata.name for ns in nss for c in kube.res.list_namespaced_resource_claim(ns).items]
        assert left == [] and claims == [], f"run {run} left pods {left} and claims {claims}"
        assert RUN_LABEL and r.run_id in next(iter(ledger.claims))


def test_traces_are_seeded_round_trip_and_refuse_bad_input(tmp_path):
    import yaml

    from harness.platform import trace as tracemod

    kit = kitmod.load(KIT)
    a = tracemod.generate("healthy", kit, str(KIT), seed=3, count=200)
    assert a.to_dict() == tracemod.generate("healthy", kit, str(KIT), seed=3, count=200).to_dict()
    assert a.to_dict() != tracemod.generate("healthy", kit, str(KIT), seed=4, count=200).to_dict()
    outsiders = sum(w.team not in kit.classes[w.klass].teams for w in a.workloads)
    assert 0 < outsiders < 20 and all(0 <= w.at <= 3600 for w in a.workloads)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(a.to_dict()))
    b = tracemod.load(path)
    assert [(w.at, w.team, w.klass, w.needs) for w in b.workloads] == [(w.at, w.team, w.klass, w.needs) for w in a.workloads]
    for shipped in ("healthy", "stranding"):
        t = tracemod.load(ROOT / f"platform/traces/{shipped}.yaml")
        assert len(t.workloads) == 500 and kitmod.load(t.kit).classes
    path.write_text("name: x\nkit: k\nnodes: n\nduration: 1\nworkloads: [{at: 0}]\n")
    with pytest.raises(kitmod.KitError, match=r"workloads\[0\]: needs at, duration, team, class, needs"):
        tracemod.load(path)


def test_efa_sharing_is_counted_per_node():
    """EFA ids are PCI addresses, the same on every node of a type: another node's claim on the
    same address is not sharing (a bug once made every training job look 4x slower)."""
    from harness.platform.recorder import Recorder

    kit = kitmod.load(KIT)
    rec = Recorder(None, kit, {}, lambda: 0.0)
    efa = {"driver": "dra.net", "device": "pci-0000-10-19-0", "request": "efas"}
    rec.claims = {"a/x": {"metadata": {"name": "x"}, "status": {"allocation": {"devices": {"results": [{**efa, "pool": "n1"}]}}}},
                  "a/y": {"metadata": {"name": "y"}, "status": {"allocation": {"devices": {"results": [{**efa, "pool": "n2"}]}}}}}
    assert rec._efa_sharers("a/own", "n1") == {"0000:10:19.0": 1}
    assert rec._efa_sharers("a/own", "n3") == {}
