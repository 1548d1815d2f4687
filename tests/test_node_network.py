"""A fake node is a network namespace (local backend, as root): loopback up, a veth to the host
in 198.18.0.0/16 whose node end is the tree's ENA interface carrying the default route, the API
server reachable over TLS at the same 127.0.0.1 port, and a fake IMDSv2 at 169.254.169.254."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from harness.backends import bins
from harness.backends.local import backend, netns
from harness.backends.local.backend import LocalBackend
from harness.backends.spec import ClusterSpec, parse_nodes

from .conftest import ROOT

pytestmark = pytest.mark.slow
LOCAL = LocalBackend()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if netns.available():
        pytest.skip(netns.available())
    try:
        bins.ensure(None, build=False)
    except bins.BinsError as e:
        pytest.skip(str(e))
    name = f"n-{uuid.uuid4().hex[:6]}"
    c = LOCAL.up(ClusterSpec(name=name, nodes=parse_nodes("trn1.32xlarge"), netns=True), tmp_path_factory.mktemp("a"),
                 attached=True, timeout=120)
    yield c
    st = backend.load_state(name)
    LOCAL.down(name)
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    holder = st.nodes[next(iter(st.nodes))].netns
    assert holder and not __import__("os").path.exists(holder), "the namespace is gone with the cluster"
    assert "dh" not in "".join(line.split(":")[1] for line in out.splitlines()), "no veth left on the host"


def _in_node(cluster, code: str, tree_view: bool = False) -> dict:
    st = backend.load_state(cluster.name)
    node = st.nodes[next(iter(st.nodes))]
    argv = [sys.executable, "-c", code]
    if tree_view:
        argv = [sys.executable, "-m", "fakedev.cli", "run", "--tree", node.tree, "--", *argv]
    r = subprocess.run(["nsenter", f"--net={node.netns}", "--", *argv], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


NET_PROBE = r"""
import json, os, socket, subprocess
routes = subprocess.run(["ip", "-j", "route"], capture_output=True, text=True).stdout
links = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True).stdout)
print(json.dumps({"routes": json.loads(routes), "links": {l["ifname"]: [a["local"] for a in l["addr_info"]] for l in links},
                  "device": os.path.basename(os.path.realpath("/sys/class/net/ens5/device"))}))
"""


def test_the_node_has_its_ena_interface_with_the_default_route(cluster):
    got = _in_node(cluster, NET_PROBE, tree_view=True)
    default = next(r for r in got["routes"] if r["dst"] == "default")
    assert default["dev"] == "ens5" and default["gateway"].startswith("198.18.")
    assert set(got["links"]) == {"lo", "ens5"} and "169.254.169.254" in got["links"]["lo"]
    assert all(a.startswith("198.18.") or ":" in a for a in got["links"]["ens5"])
    assert got["device"] == "0000:10:02.0", "the interface leads to the tree's ENA function"


IMDS_PROBE = r"""
import json, urllib.request, urllib.error
base = "http://169.254.169.254"
def call(method, path, headers):
    req = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), ""
v1 = call("GET", "/latest/meta-data/instance-type", {})[0]
code, headers, token = call("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
h = {"X-aws-ec2-metadata-token": token}
doc = json.loads(call("GET", "/latest/dynamic/instance-identity/document", h)[2])
itype = call("GET", "/latest/meta-data/instance-type", h)[2]
macs = call("GET", "/latest/meta-data/network/interfaces/macs/", h)[2]
bad = call("GET", "/latest/meta-data/instance-type", {"X-aws-ec2-metadata-token": "forged"})[0]
print(json.dumps({"v1": v1, "ttl": headers.get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"), "doc": doc, "type": itype,
                  "macs": macs, "forged": bad}))
"""


def test_imds_v2_answers_from_the_nodes_spec(cluster):
    got = _in_node(cluster, IMDS_PROBE)
    assert got["v1"] == 401 and got["forged"] == 401, "a token is required, and checked"
    assert got["ttl"] == "21600"
    assert got["doc"]["instanceType"] == got["type"] == "trn1.32xlarge"
    assert got["doc"]["region"] and got["doc"]["availabilityZone"].startswith(got["doc"]["region"])
    st = backend.load_state(cluster.name)
    tree = st.nodes[next(iter(st.nodes))].tree
    mac = open(f"{tree}/sys/class/net/ens5/address").read().strip()
    assert got["macs"].splitlines() == [f"{mac}/"], "IMDS and the tree agree on the ENA's MAC"


def test_drivers_run_in_the_namespace_and_reach_the_api_server(cluster):
    st = backend.load_state(cluster.name)
    node = st.nodes[next(iter(st.nodes))]
    drivers = [p for p in st.procs if p["name"].endswith(("refdriver-neuron", "refdriver-efa"))]
    assert len(drivers) == 2
    for p in drivers:
        assert p["argv"][:2] == ["nsenter", f"--net={node.netns}"]
        assert __import__("os").stat(f"/proc/{p['pid']}/ns/net").st_ino == __import__("os").stat(node.netns).st_ino
    assert node.imds_endpoint == "http://169.254.169.254"
