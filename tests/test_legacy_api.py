"""The beta DRA API versions: served by default on every version of the matrix (as EKS), off with
`beta_apis=False` (`--beta-dra-apis off`), where kubectl refuses a v1beta1 manifest as users
see it today. The round trip itself runs in e2e/test_legacy_api.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.backends import bins, gates
from harness.backends.kind import config as kindconfig
from harness.backends.spec import ClusterSpec, parse_nodes

from .conftest import local_cluster

TEMPLATE = """apiVersion: resource.k8s.io/v1beta1
kind: ResourceClaimTemplate
metadata: {name: aws-4-neurons, namespace: default}
spec:
  spec:
    devices:
      requests:
      - {name: neurons, deviceClassName: neuron.aws.com, allocationMode: ExactCount, count: 4}
"""


@pytest.mark.parametrize("minor", ["1.34", "1.35", "1.36", "1.37"])
def test_beta_versions_are_served_unless_turned_off(minor):
    on = gates.runtime_config_flags(minor)
    assert len(on) == 1 and "resource.k8s.io/v1beta1=true" in on[0] and "resource.k8s.io/v1beta2=true" in on[0]
    # off: only what the features need (1.36 serves DeviceTaintRule from v1beta2, so that stays)
    assert gates.runtime_config(minor, beta_apis=False) == gates.RUNTIME_CONFIG[minor]
    spec = ClusterSpec(name="x", nodes=parse_nodes("trn1.2xlarge"), k8s_version=minor, beta_apis=False)
    cfg = kindconfig.render(spec, {n.name: Path("/t") for n in spec.nodes}, minor)
    assert "resource.k8s.io/v1beta1" not in cfg.get("runtimeConfig", {})


@pytest.fixture(scope="module")
def no_betas(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "nb", "trn1.2xlarge", beta_apis=False)


def test_with_the_betas_off_a_v1beta1_template_is_refused_as_on_a_stock_cluster(no_betas, tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(TEMPLATE)
    r = subprocess.run([str(bins.bin_dir(None) / "kubectl"), "--kubeconfig", str(no_betas.kubeconfig), "apply", "-f", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "ensure CRDs are installed first" in r.stderr, r.stderr
