"""A topology bug that reproduces in one command: a cluster (started as `dra-harness up` starts
one) runs an oracle-bug scenario (the Neuron driver with efa-shift pairs a device with the wrong
EFA); `dra-harness capture` writes its bundle; `dra-harness repro` replays it on a new cluster in
both modes and says "reproduced" with the same WRONG verdict, also from an anonymised bundle. A
bundle whose driver arguments lost the bug replays to "not reproduced", naming the difference:
the comparison can fail."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.kube import Kube
from harness.repro import demo

from .conftest import ROOT, local_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    gen = local_cluster(tmp_path_factory, "rp", "trn1.32xlarge", driver_args=demo.BUG)
    cluster = next(gen)
    try:
        demo.run_on(Kube(str(cluster.kubeconfig)))
        out = tmp_path_factory.mktemp("bundles")
        made = {}
        for name, extra in (("plain", []), ("anonymised", ["--anonymise"])):
            r = _cli("capture", str(out / name), "--name", cluster.name, *extra)
            assert r.returncode == 0, r.stderr
            made[name] = out / name
        yield made
    finally:
        next(gen, None)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def test_the_bundle_holds_what_a_reproduction_needs(bundles):
    m = json.loads((bundles["plain"] / "capture.json").read_text())
    assert m["server"]["gitVersion"].startswith("v1.") and m["feature_gates"].get("DynamicResourceAllocation") is True
    assert m["cluster"]["driver_args"] == {"refdriver-neuron": ["--inject-bug=efa-shift"]}
    assert [o["kind"] for o in m["order"]] == ["ResourceClaim", "Pod"]
    (node,) = m["nodes"]
    assert (bundles["plain"] / m["nodes"][node]["topology"]).is_file()
    for f in ("resourceslices.yaml", "deviceclasses.yaml", "resourceclaims.yaml", "pods.yaml", f"truth-{node}.json"):
        assert (bundles["plain"] / f).stat().st_size > 0, f
    text = "\n".join(p.read_text() for p in bundles["anonymised"].rglob("*") if p.is_file())
    assert "team-a" not in text and "paired" not in text and node not in text
    assert json.loads((bundles["anonymised"] / "capture.json").read_text())["anonymised"] is True


@pytest.mark.parametrize("which, mode", [("plain", "hardware"), ("plain", "slices"), ("anonymised", "hardware"),
                                         ("anonymised", "slices")])
def test_the_bundle_reproduces(bundles, which, mode):
    r = _cli("repro", str(bundles[which]), "--mode", mode)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reproduced: 1 claim(s), the same allocations and verdicts (1 WRONG)" in r.stdout, r.stdout


def test_a_bundle_that_lost_its_bug_does_not_reproduce_and_says_how(bundles, tmp_path):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(bundles["plain"], tampered)
    m = json.loads((tampered / "capture.json").read_text())
    m["cluster"]["driver_args"] = {}
    (tampered / "capture.json").write_text(json.dumps(m))
    r = _cli("repro", str(tampered), "--mode", "hardware")
    assert r.returncode == 1 and "not reproduced: 1 difference(s): team-a/paired: WRONG when captured, ALIGNED now" \
        in r.stdout, r.stdout + r.stderr


def test_repro_refuses_what_is_no_bundle(tmp_path):
    r = _cli("repro", str(tmp_path))
    assert r.returncode == 2 and "not a bundle `dra-harness capture` wrote" in r.stderr
    r = _cli("capture", str(ROOT), "--name", "no-such-cluster", "--kubeconfig", "/nonexistent")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("bug", [b for b in demo.SCENARIOS if b != "efa-shift"])
def test_every_oracle_bug_scenarios_bundle_reproduces_in_both_modes(bug, tmp_path_factory, tmp_path):
    """The other oracle-bug scenarios of e2e/test_oracle_catches_bugs.py (efa-shift is above):
    the captured bundle replays to the same WRONG verdict from the recorded hardware and driver
    arguments, and from the captured slices alone (stale-after-hotplug: a hot-removed device)."""
    scenario = demo.SCENARIOS[bug]
    gen = local_cluster(tmp_path_factory, "rb", "trn1.32xlarge", driver_args=scenario.driver_args)
    cluster = next(gen)
    try:
        demo.run_on(Kube(str(cluster.kubeconfig)), scenario=scenario, cluster=cluster)
        r = _cli("capture", str(tmp_path / "b"), "--name", cluster.name)
        assert r.returncode == 0, r.stderr
    finally:
        next(gen, None)
    for mode in ("hardware", "slices"):
        r = _cli("repro", str(tmp_path / "b"), "--mode", mode)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "reproduced: 1 claim(s), the same allocations and verdicts (1 WRONG)" in r.stdout, (mode, r.stdout)
