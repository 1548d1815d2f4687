"""DRANET, a driver nobody here wrote, brought to kind as a new user would (issue 21 item 6):
its binary built from its own source, made an image by `dra-harness driver-image`, and installed
from its own chart with only values (the image and `cloudProviderHint: AWS`). The fake EFAs of a
trn1.32xlarge worker must be what it publishes, with the attributes the truth states, and a 2-EFA
claim on one devicegroup4 must be Running, prepared by DRANET for the real kubelet and judged
ALIGNED by the oracle.

DRANET is not vendored and not on the Go module proxy: the test runs when
DRA_HARNESS_DRANET_SRC names a checkout (`git clone https://github.com/kubernetes-sigs/dranet`),
and says so when it skips. Minutes: a Go build (cached by Go after the first) and a kind cluster."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.backends.kind.backend import IMAGE, KindBackend
from harness.backends.spec import ClusterSpec, parse_nodes
from harness.judge.identity import Identity, efa_device_name
from harness.kube import Kube

from .conftest import bins_or_skip, cli

pytestmark = pytest.mark.slow
SRC = os.environ.get("DRA_HARNESS_DRANET_SRC", "")
KIND = KindBackend()


@pytest.fixture(scope="module")
def dranet_profile(tmp_path_factory) -> Path:
    """A profile as README's "Bring DRANET" writes it, beside the image archive it names."""
    if not SRC or not (Path(SRC) / "cmd/dranet").is_dir():
        pytest.skip("set DRA_HARNESS_DRANET_SRC to a checkout of kubernetes-sigs/dranet (not vendored here)")
    d = tmp_path_factory.mktemp("dranet")
    env = {**os.environ, "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(d / "dranet"), "./cmd/dranet"], cwd=SRC, env=env, check=True,
                   timeout=1200)
    cli("dra-harness", "driver-image", str(d / "dranet"), "--tag", "localhost/dranet:src", "-o",
        str(d / "dranet.tar"), check=True)
    prof = d / "dranet.yaml"
    prof.write_text(f"""name: dranet
driver: dra.net
kind_images: [./dranet.tar]
kind_chart: {Path(SRC).resolve()}/deployments/helm/dranet
kind_values:
  image: {{repository: localhost/dranet, tag: src, pullPolicy: Never}}
  args: {{cloudProviderHint: AWS}}
identity: {{name_pattern: 'pci-(?P<domain>[0-9a-f]{{4}})-(?P<bus>[0-9a-f]{{2}})-(?P<slot>[0-9a-f]{{2}})-(?P<fn>[0-7])'}}
nri: true
""")
    return prof


@pytest.fixture(scope="module")
def cluster(dranet_profile, docker_engine, tmp_path_factory):
    bins_or_skip()
    name = f"dn-{uuid.uuid4().hex[:5]}"
    nodes = parse_nodes("trn1.32xlarge", drivers=["refdriver-neuron", str(dranet_profile)])
    c = KIND.up(ClusterSpec(name=name, nodes=nodes), tmp_path_factory.mktemp("kind"))
    yield c
    KIND.down(name)


def _value(attr: dict):
    return next(iter(attr.values()))


def test_dranet_publishes_every_fake_efa_with_the_truths_attributes(cluster):
    """All 8 EFAs of the worker's tree, none of the host's NICs, each with the PCI address, NUMA
    node, PCIe root, RDMA device and AWS device-group ids the truth gives (the reference EFA
    driver's attributes, refdriver/attributes.py)."""
    kube = Kube(str(cluster.kubeconfig))
    worker, truth = next(iter(cluster.truths().items()))
    deadline = time.monotonic() + 120
    while True:
        slices, _ = kube.list("ResourceSlice")
        devices = {d["name"]: d.get("attributes", {}) for s in slices
                   if s["spec"]["driver"] == "dra.net" and s["spec"].get("nodeName") == worker
                   for d in s["spec"].get("devices", [])}
        efas = {n: a for n, a in devices.items() if a.get("dra.net/rdma", {}).get("bool")}
        if len(efas) >= 8 or time.monotonic() > deadline:
            break
        time.sleep(2)
    want = {efa_device_name(t.bdf): t for t in truth.of_kind("efa")}
    assert sorted(efas) == sorted(want)
    for name, attrs in efas.items():
        t = want[name]
        got = {k.split("/")[-1]: _value(v) for k, v in attrs.items()}
        assert got["pciAddress"] == t.bdf and got["numaNode"] == t.numa_node and got["pcieRoot"] == t.root
        assert got["rdmaDevice"] == t.rdma
        for group in ("devicegroup1_id", "devicegroup4_id", "devicegroup8_id", "devicegroup16_id"):
            assert got[group] == t.aws_ids[group], (name, group)
    # the rest are the ENA (a PCI NIC without RDMA) and virtual interfaces: never a host PCI function
    host_pci = [n for n, a in devices.items() if n.startswith("pci-") and n not in want and
                _value(a.get("dra.net/pciAddress", {"string": ""})) not in {e.bdf for e in truth.of_kind("ena")}]
    assert host_pci == []


def test_a_two_efa_claim_on_one_devicegroup4_runs_and_is_judged_aligned(cluster):
    from harness.judge.oracle import judge_live

    kube = Kube(str(cluster.kubeconfig))
    ns = f"dn-{uuid.uuid4().hex[:5]}"
    kube.create_namespace(ns)
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "two-efa", "namespace": ns},
                "spec": {"devices": {
                    "requests": [{"name": "efa", "exactly": {"deviceClassName": "efa.networking.k8s.aws", "count": 2}}],
                    "constraints": [{"requests": ["efa"], "matchAttribute": "resource.aws.com/devicegroup4_id"}]}}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two-efa", "namespace": ns},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "w", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sleep", "3600"], "resources": {"claims": [{"name": "efa"}]}}],
                         "resourceClaims": [{"name": "efa", "resourceClaimName": "two-efa"}]}})
    deadline = time.monotonic() + 120
    while (pod := kube.get("Pod", "two-efa", ns))["status"].get("phase") != "Running":
        assert time.monotonic() < deadline, pod["status"]
        time.sleep(2)
    claim = kube.get("ResourceClaim", "two-efa", ns)
    results = claim["status"]["allocation"]["devices"]["results"]
    assert len(results) == 2 and {r["driver"] for r in results} == {"dra.net"}
    # DRANET reports what it prepared in the claim's device status (an RDMA-only EFA: no networkData)
    status = {d["device"]: d for d in claim["status"].get("devices", [])}
    assert set(status) == {r["device"] for r in results}
    assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in d.get("conditions", []))
               for d in status.values())
    identities = {d: Identity.from_profile(d, i) for d, i in cluster.identities().items()}
    verdicts = judge_live(kube, cluster.truths(), identities, claims=[claim])
    assert [v.ok for v in verdicts] == [True], [str(v) for v in verdicts]
