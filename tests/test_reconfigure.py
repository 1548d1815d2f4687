"""One cluster serves tests that want its drivers with other arguments: the plugin restarts the
drivers in place (`Cluster.reconfigure`) instead of booting a cluster per injected bug, and the
oracle's verdict flips with the configuration, both ways (bug -> WRONG, back -> aligned)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.backends import bins
from harness.backends.paths import state_root as default_state_root

from .conftest import local_cluster

pytestmark = pytest.mark.slow

SUITE = '''
import pytest

SEL = "device.attributes['neuron.aws.com'].deviceId == 1"
BUG = pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--inject-bug=efa-shift"]})
PLAIN = pytest.mark.topology("trn1.32xlarge")

def _paired(dra, name):
    dra.create(dra.claim(name, dra.request("n", "neuron.aws.com", selectors=[SEL]),
                         dra.request("e", "efa.networking.k8s.aws"),
                         match=("resource.aws.com/devicegroup1_id", ["n", "e"])), dra.pod(name, name))
    dra.allocated(name)
    return dra.judge(name)

@PLAIN
def test_a_plain(dra):
    assert _paired(dra, "a").ok

@BUG
def test_b_bug(dra):
    v = _paired(dra, "b")
    assert not v.ok and "the same EFA" in str(v), str(v)

@PLAIN
def test_c_plain_again(dra):
    assert _paired(dra, "c").ok

@BUG
def test_d_bug_again(dra):
    assert not _paired(dra, "d").ok
'''


def test_one_cluster_serves_every_driver_configuration(tmp_path):
    try:
        bins.ensure(None, build=False)
    except bins.BinsError as e:
        pytest.skip(str(e))
    (tmp_path / "test_suite.py").write_text(SUITE)
    before = set(default_state_root().glob("pt-*")) if default_state_root().exists() else set()
    art = tmp_path / "art"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--artifacts", str(art),
                        str(tmp_path / "test_suite.py")], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "4 passed" in out, out
    # plain tests first, then the bug's: one restart of the drivers, not one per alternation
    order = [line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith("test_suite.py::")]
    assert order == ["test_a_plain", "test_c_plain_again", "test_b_bug", "test_d_bug_again"], order
    clusters = [d for d in art.iterdir() if d.name.startswith("pt-")]
    assert len(clusters) == 1, f"one cluster for both configurations: {clusters}"
    assert "1 driver reconfiguration" in out, out
    verdicts = json.loads((art / "summary.json").read_text())["verdicts"]
    assert [v["ok"] for v in verdicts] == [True, True, False, False], verdicts
    after = set(default_state_root().glob("pt-*")) if default_state_root().exists() else set()
    assert after <= before, f"clusters left behind: {after - before}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "rc", "trn1.32xlarge")


def _numa_of_neuron0(kube) -> object:
    slices, _ = kube.list("ResourceSlice")
    dev = next(d for s in slices if s["spec"]["driver"] == "neuron.aws.com" for d in s["spec"]["devices"]
               if d["attributes"].get("deviceId", {}).get("int") == 0)
    return dev["attributes"].get("resource.kubernetes.io/numaNode")


def test_reconfigure_restarts_only_what_changes_and_publishes_anew(cluster):
    from harness.backends.local.backend import control
    from harness.kube import Kube

    kube = Kube(str(cluster.kubeconfig))
    pids = {p["name"]: p["pid"] for p in control(cluster, "status")["state"]["procs"]}
    plain = _numa_of_neuron0(kube)
    assert plain is None, "without --extended-attributes no numaNode is published"
    assert cluster.reconfigure({"refdriver-neuron": ["--extended-attributes", "--inject-bug=swapped-numa"]}) == \
        ["trn1-32xlarge-0.refdriver-neuron"]
    # returned only once the new driver published: the attribute is there, swapped (neuron0 is on NUMA 0)
    assert _numa_of_neuron0(kube) == {"int": 1}
    now = {p["name"]: p["pid"] for p in control(cluster, "status")["state"]["procs"]}
    assert now["trn1-32xlarge-0.refdriver-neuron"] != pids["trn1-32xlarge-0.refdriver-neuron"]
    assert now["trn1-32xlarge-0.refdriver-efa"] == pids["trn1-32xlarge-0.refdriver-efa"], "the EFA driver kept running"
    assert cluster.reconfigure({"refdriver-neuron": ["--extended-attributes", "--inject-bug=swapped-numa"]}) == []
    assert cluster.reconfigure({"refdriver-neuron": ["--extended-attributes"]}) == ["trn1-32xlarge-0.refdriver-neuron"]
    assert _numa_of_neuron0(kube) == {"int": 0}
    # the state says what runs now, so a later `find` (another test process) knows it
    st = control(cluster, "status")["state"]
    assert st["spec"]["nodes"][0]["driver_args"] == {"refdriver-neuron": ["--extended-attributes"]}


def test_reconfigure_names_a_driver_that_cannot_start(cluster):
    from harness.backends import BackendError

    from harness.backends.local.backend import control
    from harness.backends.local.supervisor import DRIVER_BACKOFF_FIRST

    with pytest.raises(BackendError, match="exited during start-up"):
        cluster.reconfigure({"refdriver-efa": ["--inject-bug=no-such-bug"]})
    time.sleep(0.6)  # the supervisor has noticed the exit: the driver is in its crash back-off
    cluster.reconfigure({})  # and back: the cluster goes on
    pid = {p["name"]: p["pid"] for p in control(cluster, "status")["state"]["procs"]}["trn1-32xlarge-0.refdriver-efa"]
    # the back-off of the failed start is over with it: no "restart" of the good driver later
    time.sleep(DRIVER_BACKOFF_FIRST + 1.5)
    st = control(cluster, "status")
    now = {p["name"]: p["pid"] for p in st["state"]["procs"]}["trn1-32xlarge-0.refdriver-efa"]
    assert now == pid and st["alive"]["trn1-32xlarge-0.refdriver-efa"], "the reconfigured driver was restarted"
