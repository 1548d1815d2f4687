"""The pytest plugin as users meet it: a test file in a fresh directory, run by pytest with the
plugin loaded from its entry point. Under pytest-xdist the workers share one cluster, each test
in its own namespace; a failure leaves a bundle; the cluster is gone afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from harness.backends import bins
from harness.backends.paths import state_root as default_state_root

from .conftest import ROOT

pytestmark = pytest.mark.slow  # the xdist suite boots a cluster

SUITE = '''
import pytest

pytestmark = pytest.mark.topology("inf2.xlarge")

@pytest.mark.parametrize("i", range(4))
def test_one_device(dra, i):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com")), dra.pod("p", "c"))
    dra.assert_aligned("c")
    dra.pod_running("p")

def test_fails_with_a_bundle(dra):
    dra.create(dra.claim("big", dra.request("n", "neuron.aws.com", 2)), dra.pod("p", "big"))
    dra.allocated("big", timeout=3)

@pytest.mark.k8s(min="1.99")
def test_future_only(dra):
    pass

@pytest.mark.upstream_bug("example#1", fixed_in="1.99", why="open everywhere")
def test_reproduces_an_open_upstream_bug(dra):
    assert False, "the bug shows"

@pytest.mark.upstream_bug("example#2", fixed_in="1.99", why="open everywhere")
def test_passes_although_the_bug_is_open(dra):
    pass

@pytest.mark.upstream_bug("example#3", fixed_in="1.30", why="fixed long ago")
def test_passes_where_the_bug_is_fixed(dra):
    pass

def test_platform_fails_with_a_bundle(dra_platform):
    p = dra_platform(KIT)
    key = p.workload("inference", "small-inference")
    p.allocated(key)
    assert False, "deliberately failing after " + key
'''


def test_plugin_under_xdist(tmp_path):
    try:
        bins.ensure(None, build=False)
    except bins.BinsError as e:
        pytest.skip(str(e))
    (tmp_path / "test_suite.py").write_text(f"KIT = {str(ROOT / 'platform/golden-paths.yaml')!r}\n" + SUITE)
    before = set(default_state_root().glob("pt-*")) if default_state_root().exists() else set()
    art = tmp_path / "art"
    r = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "--artifacts", str(art),
                        "--junitxml", str(tmp_path / "junit.xml"), str(tmp_path / "test_suite.py")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    # 2 deliberate failures, and a strict xfail that passed: an upstream bug open on this version
    # whose scenario passes is a failure, so the suite notices a fix (or a test that cannot fail)
    assert "3 failed, 5 passed, 1 skipped, 1 xfailed" in out, out
    assert "[XPASS(strict)] example#2 is open in" in out, out
    clusters = [d for d in art.iterdir() if d.name.startswith("pt-")]
    assert len(clusters) == 1, f"the two workers shared one cluster: {clusters}"
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert int(junit.find("testsuite").get("tests")) == 10
    bundle = next(b for b in (art / "failures").iterdir() if "test_fails_with_a_bundle" in b.name)
    names = {p.name for p in bundle.iterdir()}
    assert {"resourceclaims.yaml", "resourceslices.yaml", "pods.yaml", "events.yaml", "notes.txt", "capture.json",
            "topologies"} <= names  # a capture: `dra-harness repro` replays it
    assert any(n.startswith("topology-") and n.endswith(".svg") for n in names)
    assert "cannot be satisfied with this topology" in (bundle / "notes.txt").read_text()
    assert not (bundle / "errors.txt").exists(), (bundle / "errors.txt").read_text()
    # a platform test's bundle holds its team namespaces, the kit's cluster objects and its ledger
    pb = next(b for b in (art / "failures").iterdir() if "test_platform_fails" in b.name)
    team = next((pb / "namespaces").glob("*-inference"))
    pods = (team / "pods.yaml").read_text()
    assert "w0-small-inference" in pods and "nodeName" in pods, pods[:500]
    assert "reason: Scheduled" in (team / "events.yaml").read_text(), "the team namespace's events are missing"
    assert "gp-small-inference" in (team / "resourcequotas.yaml").read_text()
    assert "small-inference" in (team / "resourceclaimtemplates.yaml").read_text()
    assert "gp-small-inference-access" in (pb / "validatingadmissionpolicies.yaml").read_text()
    assert "gp-small-inference" in (pb / "priorityclasses.yaml").read_text()
    assert "bound to" in (pb / "scheduler.txt").read_text()
    ledger = json.loads(next(pb.glob("ledger-*.json")).read_text())
    assert any(k.endswith("/w0-small-inference") and r["allocated"] is not None for k, r in ledger["claims"].items())
    summary = json.loads((art / "summary.json").read_text())
    assert len(summary["verdicts"]) == 4 and all(v["ok"] for v in summary["verdicts"])
    after = set(default_state_root().glob("pt-*")) if default_state_root().exists() else set()
    assert after <= before, f"clusters left behind: {after - before}"


FAILING_BOOT = '''
import pytest

@pytest.mark.parametrize("i", range(3))
def test_needs_a_cluster(dra, i):
    pass
'''


def test_a_cluster_that_cannot_start_fails_its_tests_once_not_once_each(tmp_path):
    """A cluster whose start fails (here: a version that is not supported) is tried once: its
    other tests error at once with that reason, not after another full attempt each."""
    (tmp_path / "test_boot.py").write_text(FAILING_BOOT)
    before = set(default_state_root().iterdir()) if default_state_root().exists() else set()
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--k8s-version", "1.20",
                        "--artifacts", str(tmp_path / "art"), str(tmp_path / "test_boot.py")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "3 errors" in out, out
    assert "ERROR test_boot.py::test_needs_a_cluster[0] - harness.backends.bins.BinsError" in out, out
    for i in (1, 2):  # the reason repeated, without a second attempt
        assert f"ERROR test_boot.py::test_needs_a_cluster[{i}] - harness.backends.base.BackendEr" in out, out
    assert "failed to start for an earlier test: BinsError: unsupported Kubernetes version '1.20'" in out, out
    after = set(default_state_root().iterdir()) if default_state_root().exists() else set()
    assert after <= before, f"a failed start left {sorted(str(p) for p in after - before)}"


def test_which_versions_an_upstream_bug_is_open_in():
    """fixed_in as a release, as the first fixed patch per minor it was cherry-picked to, or None."""
    from harness.testing.plugin import bug_open_in

    picks = ["1.35.5", "1.36.1", "1.37.0"]
    assert [bug_open_in(v, picks) for v in ("v1.34.9", "v1.35.4", "v1.35.5", "v1.36.0", "v1.36.3", "v1.37.2", "v1.38.0")] \
        == [True, True, False, True, False, False, False]
    assert bug_open_in("v1.34.4", "1.35") and not bug_open_in("v1.35.0", "1.35") and not bug_open_in("1.36", "1.35")
    assert bug_open_in("v1.37.2", None) and bug_open_in("v1.99.0", None)
    assert not bug_open_in("v1.34.4", picks, since="1.35") and bug_open_in("v1.35.0", picks, since="1.35")
