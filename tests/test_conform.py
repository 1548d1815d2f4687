"""The report card (`dra-harness conform`): the reference drivers pass every check that applies
to them, upstream's e2e test driver passes the contract and is "not applicable" to every topology
check (never a pass by default), and each injectable bug of the reference drivers fails the check
the catalogue says catches it. Plus the pieces: the slice judgements on dry-run slices, the
kubelet-metrics registration reader, device pinning, the card from JUnit."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import fakedev
from harness.backends.registration import names, registered_sockets
from harness.conform import BY_NAME, CHECKS
from harness.conform.card import outcomes, render
from harness.conform.subject import classes_naming, pin
from harness.judge import published
from refdriver.bugs import BUGS

from .conftest import ROOT, bins_or_skip, cli


# -- the pieces -----------------------------------------------------------------------------------

def test_registration_is_the_plugin_managers_actual_state_of_the_world():
    text = ("# TYPE plugin_manager_total_plugins gauge\n"
            'plugin_manager_total_plugins{socket_path="/var/lib/kubelet/plugins_registry/neuron.aws.com-reg.sock",'
            'state="actual_state_of_world"} 1\n'
            'plugin_manager_total_plugins{socket_path="/var/lib/kubelet/plugins_registry/dra.net-reg.sock",'
            'state="desired_state_of_world"} 1\n'
            'plugin_manager_total_plugins{socket_path="/var/lib/kubelet/plugins_registry/gone-reg.sock",'
            'state="actual_state_of_world"} 0\n')
    socks = [s.rpartition("/")[2] for s in registered_sockets(text)]
    assert socks == ["neuron.aws.com-reg.sock"]  # desired-but-not-registered and zero do not count
    assert names("neuron.aws.com", socks) and not names("dra.net", socks)
    assert not names("neuron.aws.co", socks) and names("dra.net", ["dra.net"])


def test_a_device_is_pinned_by_its_attributes_or_not_at_all():
    a = {"name": "a", "attributes": {"deviceId": {"int": 1}, "x.io/kind": {"string": "n"}}}
    b = {"name": "b", "attributes": {"deviceId": {"int": 2}, "x.io/kind": {"string": "n"}}}
    sup = {"name": "sup", "attributes": {"deviceId": {"int": 1}, "x.io/kind": {"string": "n"}, "more": {"bool": True}}}
    assert pin("d.io", a, [a, b]) == ['device.attributes["d.io"]["deviceId"] == 1',
                                       'device.attributes["x.io"]["kind"] == "n"']
    assert pin("d.io", a, [a, b, sup]) is None  # sup matches every selector of a's too
    assert pin("d.io", sup, [a, b, sup]) is not None
    assert pin("d.io", {"name": "bare"}, [a]) is None


def test_classes_naming_a_driver():
    cls = [{"metadata": {"name": n}, "spec": {"selectors": [{"cel": {"expression": e}}]}} for n, e in
           [("z", 'device.driver == "d.io"'), ("a", "device.driver == 'd.io' && true"), ("o", 'device.driver == "e.io"')]]
    assert classes_naming("d.io", cls) == ["a", "z"]
    assert classes_naming("d.io", cls, chosen="z") == ["z", "a"]


def test_the_card_reads_junit_and_fails_on_any_failed_check(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testsuite name="s">'
        '<testcase classname="suite" name="test_registration" time="0.1"/>'
        '<testcase classname="suite" name="test_alignment" time="2"><failure message="AssertionError: 2 of 9 '
        'published groups are not really together, e.g. x&#10;more">tb</failure></testcase>'
        '<testcase classname="suite" name="test_sharing" time="0"><skipped type="pytest.skip" '
        'message="not applicable: no shareable device"/></testcase>'
        '</testsuite></testsuites>')
    got = outcomes(junit)
    assert {k: o.status for k, o in got.items()} == {"registration": "PASS", "alignment": "FAIL", "sharing": "N/A"}
    assert got["alignment"].detail == "2 of 9 published groups are not really together, e.g. x"
    card = render("d.io", "p", "local", got)
    assert "  FAIL    alignment     2 of 9" in card and "  N/A     sharing       no shareable device" in card
    assert "  NOT RUN slices" in card and card.splitlines()[-1].startswith("d.io FAILS: 1 passed, 1 failed, 1 not")
    del got["alignment"]
    assert "d.io PASSES" in render("d.io", "p", "local", got)


def _dry_slices(tree, kind: str, *args: str) -> list[dict]:
    r = cli("refdriver", kind, "--sysfs-root", str(tree), "--dry-run", "--node-name", "n1", *args)
    assert r.returncode == 0, r.stderr
    slices = json.loads(r.stdout)
    for s in slices:
        s["spec"]["nodeName"] = "n1"
    return slices


@pytest.mark.parametrize("kind,args,expect", [
    ("neuron", ["--extended-attributes"], []),
    ("neuron", ["--partition-cores"], []),
    ("efa", ["--share-efa"], []),
    ("neuron", ["--extended-attributes", "--inject-bug=efa-shift"], ["resource.aws.com/devicegroup1_id"]),
    ("neuron", ["--extended-attributes", "--inject-bug=wrong-pcie-root"], ["resource.kubernetes.io/pcieRoot", "values"]),
    # NUMA 0 and 1 swapped for every device alike: the driver's own groups stay right, the values do not
    ("neuron", ["--extended-attributes", "--inject-bug=swapped-numa"], ["values"]),
    ("neuron", ["--inject-bug=group-by-probe-order"], ["resource.aws.com/devicegroup4_id", "resource.aws.com/devicegroup8_id"]),
    ("neuron", ["--partition-cores", "--inject-bug=partition-no-counters"], ["coverage"]),
    ("efa", ["--share-efa", "--inject-bug=bandwidth-doubled"], ["capacity"]),
])
def test_the_slice_judgements_find_exactly_the_bug(trees, kind, args, expect):
    tree = trees["trn1.32xlarge"]
    truths = {"n1": fakedev.truth_of(tree)}
    slices = _dry_slices(tree, kind, *args)
    driver = {"neuron": "neuron.aws.com", "efa": "dra.net"}[kind]
    (cov,) = published.coverage(slices, truths, driver)
    groups = published.intents(slices, truths)
    wrong = {a for a, vs in groups.items() if any(not v.ok for v in vs)}
    found = wrong | ({"coverage"} if cov.problems else set()) | ({"capacity"} if published.capacity(slices, truths) else set()) \
        | ({"values"} if published.standard_values(slices, truths) else set())
    assert found == set(expect), (found, cov.problems[:2])
    assert len(set(cov.mapped.values())) == {"neuron": 16, "efa": 8}[kind]


def test_every_injectable_bug_has_a_check_that_catches_it():
    caught = {b for c in CHECKS for b in c.catches}
    assert caught == set(BUGS), set(BUGS) ^ caught


# -- the card, end to end on the local backend ------------------------------------------------------

def _conform(tmp_path, profile: str, *args: str) -> tuple[int, dict[str, str], str]:
    bins_or_skip()
    art = tmp_path / "art"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "conform", "--driver", profile, "--artifacts", str(art),
                        *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    card = (art / "card.txt").read_text() if (art / "card.txt").exists() else ""
    assert card, r.stdout + r.stderr
    got = {m[2]: m[1] for m in re.finditer(r"^  (PASS|FAIL|N/A|SKIP|NOT RUN)\s+(\w+)", card, re.M)}
    return r.returncode, got, card


PASS_ALL = {c.name: "PASS" for c in CHECKS}


@pytest.mark.slow
@pytest.mark.parametrize("profile,args,not_applicable", [
    ("refdriver-neuron", ["--driver-arg", "refdriver-neuron=--extended-attributes"], {"sharing", "partitions"}),
    ("refdriver-efa-shared", [], {"partitions"}),
    ("refdriver-neuron-partitioned", [], {"sharing"}),
    ("e2e-test-driver", [], {c.name for c in CHECKS if c.part == "oracle"}),
])
def test_reference_drivers_pass_and_the_upstream_test_driver_is_not_applicable(tmp_path, profile, args, not_applicable):
    rc, got, card = _conform(tmp_path, profile, *args)
    assert got == {**PASS_ALL, **{n: "N/A" for n in not_applicable}}, card
    assert rc == 0, card
    if profile == "e2e-test-driver":
        assert "states no identity" in card and "writes no status.devices" in card


BUG_RUNS = [(bug, check.name, prof, extra) for check in CHECKS for bug in check.catches
            for prof, extra in [{
                "bandwidth-doubled": ("refdriver-efa-shared", []), "share-cdi-collide": ("refdriver-efa-shared", []),
                "partition-no-counters": ("refdriver-neuron-partitioned", []),
                "taint-sticky": ("refdriver-efa", []), "taint-time-reset": ("refdriver-efa", []),
            }.get(bug, ("refdriver-neuron", ["--extended-attributes"]))]]


@pytest.mark.slow
@pytest.mark.parametrize("bug,check,profile,extra", BUG_RUNS, ids=[f"{b}-{c}" for b, c, _, _ in BUG_RUNS])
def test_each_injected_bug_fails_the_check_that_names_it(tmp_path, bug, check, profile, extra):
    args = [a for x in [*extra, f"--inject-bug={bug}"] for a in ("--driver-arg", f"{profile}={x}")]
    rc, got, card = _conform(tmp_path, profile, *args, "--check", check)
    assert got[check] == "FAIL" and rc == 1, card
    assert all(s == "NOT RUN" for c, s in got.items() if c != check), card
    assert BY_NAME[check].part == "oracle"


@pytest.mark.slow
def test_the_same_card_on_kind_with_a_real_kubelet(tmp_path, docker_engine):
    """Registration read from the real kubelet's plugin manager, prepare by containerd, the fake
    node's faults and hotplug through the kind backend: the card the local backend gives."""
    rc, got, card = _conform(tmp_path, "refdriver-neuron", "--backend", "kind")
    assert got == {**PASS_ALL, "sharing": "N/A", "partitions": "N/A"}, card
    assert rc == 0 and "on kind (trn1.32xlarge)" in card, card
