"""A scenario's own feature gates (`topology(..., gates={...})`, ClusterSpec.feature_gates): on
every component beside its minor's, for that cluster only (other gates mean another cluster),
and refused when a name or value could become something else on a command line. The list
attribute scenario that needs them runs in e2e/test_list_attributes.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends import gates
from harness.backends.kind import config as kindconfig
from harness.backends.spec import ClusterSpec, ClusterSpecError, parse_nodes


def test_a_scenarios_gates_join_the_minors_on_every_backend():
    assert gates.gate_flags("1.36", {"DRAListTypeAttributes": True}) == \
        ["--feature-gates=DRADeviceTaintRules=true,DRAListTypeAttributes=true"]
    assert gates.gate_flags("1.37", {"DRAListTypeAttributes": True}) == ["--feature-gates=DRAListTypeAttributes=true"]
    assert gates.gate_flags("1.37") == []
    spec = ClusterSpec(name="x", nodes=parse_nodes("trn1.2xlarge"), k8s_version="1.37",
                       feature_gates={"DRAListTypeAttributes": True})
    cfg = kindconfig.render(spec, {n.name: Path("/t") for n in spec.nodes}, "1.37")
    assert cfg["featureGates"] == {"DRAListTypeAttributes": True}
    assert ClusterSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).feature_gates == {"DRAListTypeAttributes": True}


@pytest.mark.parametrize("bad", [{"X=true,--authorization-mode=AlwaysAllow": True}, {"DRAListTypeAttributes": "true"},
                                 {"lower": True}, {"": False}])
def test_a_gate_that_is_no_gate_is_refused(bad):
    with pytest.raises(ClusterSpecError, match="a gate name"):
        ClusterSpec(name="x", nodes=parse_nodes("trn1.2xlarge"), feature_gates=bad)


def test_other_gates_mean_another_cluster(pytestconfig):
    from harness.testing.plugin import DraSession

    s = DraSession(pytestconfig)
    plain = s.key(pytest.mark.topology("trn1.32xlarge").mark)
    gated = s.key(pytest.mark.topology("trn1.32xlarge", gates={"DRAListTypeAttributes": True}).mark)
    assert plain[0] != gated[0] and gated[1]["gates"] == {"DRAListTypeAttributes": True} and plain[1]["gates"] == {}
