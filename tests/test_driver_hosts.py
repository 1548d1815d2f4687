"""Host mode (issue 14): one reference-driver process per driver serves many fake nodes that
share one rendered tree; each node keeps its own slices, sockets, CDI directory and identity; a
node whose tree is changed gets its own copy and its own driver processes, and the others stay
served by the host. The oracle still judges every allocation, and catches a bug injected into a
host (the check shown failing)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from harness.backends.local.backend import LocalBackend, control, load_state
from harness.kube import Kube
from harness.testing.api import Dra

from .conftest import local_cluster

pytestmark = pytest.mark.slow
NODES = "trn1.32xlarge,trn1.32xlarge,trn1.32xlarge"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "dh", NODES, driver_hosts=True)


@pytest.fixture
def dra(cluster):
    kube = Kube(str(cluster.kubeconfig))
    ns = f"dh-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    return Dra(cluster, ns, kube)


def _driver_procs(cluster) -> list[dict]:
    return [p for p in load_state(cluster.name).procs if ".refdriver-" in p["name"]]


def test_two_processes_serve_the_drivers_of_three_nodes_from_one_tree(cluster):
    procs = _driver_procs(cluster)
    assert sorted(p["name"] for p in procs) == ["host0.refdriver-efa", "host0.refdriver-neuron"]
    trees = {n: i.tree for n, i in cluster.nodes.items()}
    assert all(t.is_symlink() for t in trees.values()) and len({t.resolve() for t in trees.values()}) == 1
    kube = Kube(str(cluster.kubeconfig))
    per_node: dict[tuple[str, str], int] = {}
    for s in kube.list("ResourceSlice")[0]:
        key = (s["spec"]["nodeName"], s["spec"]["driver"])
        per_node[key] = per_node.get(key, 0) + len(s["spec"]["devices"])
    assert per_node == {(n, d): c for n in cluster.nodes for d, c in (("neuron.aws.com", 16), ("dra.net", 8))}
    status = control(cluster, "status")
    assert all(sorted(status["plugins"][n]) == ["dra.net", "neuron.aws.com"] for n in cluster.nodes), status["plugins"]


def test_each_node_prepares_into_its_own_cdi_directory(cluster, dra):
    node = sorted(cluster.nodes)[2]
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 4), match=("resource.aws.com/devicegroup4_id", ["n"])),
               dra.pod("p", "c", node=node))
    v = dra.assert_aligned("c")
    assert v.node == node
    dra.pod_running("p")
    st = load_state(cluster.name)
    uid = dra.get_claim("c")["metadata"]["uid"]
    assert [f.name for f in Path(st.nodes[node].cdi_dir).iterdir() if uid in f.name]
    assert not any(uid in f.name for n in cluster.nodes if n != node for f in Path(st.nodes[n].cdi_dir).iterdir())
    dra.delete("Pod", "p")


def test_changing_a_nodes_tree_gives_it_its_own_copy_and_drivers(cluster, dra):
    node, other = sorted(cluster.nodes)[0], sorted(cluster.nodes)[1]
    dra.mutate(node, "remove", "neuron3")
    assert not cluster.nodes[node].tree.is_symlink() and cluster.nodes[other].tree.is_symlink()
    names = sorted(p["name"] for p in _driver_procs(cluster))
    assert names == sorted(["host0.refdriver-efa", "host0.refdriver-neuron",
                            f"{node}.refdriver-efa", f"{node}.refdriver-neuron"]), names
    kube = dra.kube

    def counts(lst):
        got = {}
        for s in lst["items"]:
            if s["spec"]["driver"] == "neuron.aws.com":
                got[s["spec"]["nodeName"]] = got.get(s["spec"]["nodeName"], 0) + len(s["spec"]["devices"])
        return got

    kube.wait("ResourceSlice", lambda lst: counts(lst).get(node) == 15 and counts(lst).get(other) == 16,
              what=f"{node} publishing 15 Neuron devices, {other} still 16", timeout=30)
    shared = cluster.nodes[other].tree.resolve()
    assert (shared / "sys/class/neuron_device/neuron3").exists()  # the shared tree was not touched
    dra.create(dra.claim("c2", dra.request("n", "neuron.aws.com")), dra.pod("p2", "c2", node=other))
    dra.pod_running("p2")  # the host still prepares for the nodes it serves


def test_restarting_a_hosted_nodes_driver_restarts_its_host(cluster):
    node = sorted(cluster.nodes)[1]
    before = {p["name"]: p["pid"] for p in _driver_procs(cluster)}
    LocalBackend().restart_driver(cluster, node, "refdriver-neuron")
    after = {p["name"]: p["pid"] for p in _driver_procs(cluster)}
    assert after["host0.refdriver-neuron"] != before["host0.refdriver-neuron"]
    assert after["host0.refdriver-efa"] == before["host0.refdriver-efa"]


def test_a_bug_injected_into_a_host_is_caught_by_the_oracle(tmp_path_factory):
    """The check shown failing: the host passes --inject-bug to every node it serves."""
    from harness.backends.spec import ClusterSpec, parse_nodes
    from .conftest import bins_or_skip

    bins_or_skip()
    name = f"dhb-{uuid.uuid4().hex[:5]}"
    spec = ClusterSpec(name=name, nodes=parse_nodes("trn1.32xlarge,trn1.32xlarge",
                                                    driver_args={"refdriver-neuron": ["--inject-bug=efa-shift"]}),
                       driver_hosts=True)
    c = LocalBackend().up(spec, tmp_path_factory.mktemp("dhb"), attached=True, timeout=120)
    try:
        kube = Kube(str(c.kubeconfig))
        dra = Dra(c, "default", kube)
        sel = "device.attributes['neuron.aws.com'].deviceId == 1"  # as e2e/test_oracle_catches_bugs.py
        dra.create(dra.claim("pair", dra.request("n", "neuron.aws.com", selectors=[sel]),
                             dra.request("e", "efa.networking.k8s.aws"),
                             match=("resource.aws.com/devicegroup1_id", ["n", "e"])), dra.pod("p", "pair"))
        dra.allocated("pair")
        v = dra.judge("pair")
        assert not v.ok and "the same EFA" in str(v), str(v)
    finally:
        LocalBackend().down(name)


def test_hostile_host_node_lists_are_one_line_errors(tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    for text in ("", "{", "[1]", json.dumps([{"node_name": "a"}])):
        f = tmp_path / "nodes.json"
        f.write_text(text)
        r = subprocess.run([sys.executable, "-m", "refdriver.cli", "neuron", "--host-nodes", str(f)],
                           capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a host node list" in r.stderr, (text, r.stderr)
