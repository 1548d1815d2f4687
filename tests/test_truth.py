"""Ground truth: alignment groups as AWS defines them, from the model."""

from __future__ import annotations

import hashlib
import json

import fakedev

from .conftest import cli


def _dev(t: fakedev.Truth, did: str) -> fakedev.TruthDevice:
    d = t.device(did)
    assert d is not None, did
    return d


def test_trn1_groups(trees):
    t = fakedev.truth_of(trees["trn1.32xlarge"])
    n0, n1, n4 = _dev(t, "neuron0"), _dev(t, "neuron1"), _dev(t, "neuron4")
    assert n0.align.devicegroup1 == n1.align.devicegroup1 == ("0000:10:1a.0",)
    assert n0.align.devicegroup4 == ("0",) and n4.align.devicegroup4 == ("1",)
    assert n0.align.pcieRoot == ("pci0000:10",) and n0.align.numaNode == ("0",)
    assert n4.align.of("topology4") == {"1"} and n4.align.of("topology8") == {"0"}
    efa = _dev(t, "0000:10:1a.0")
    assert efa.serves == (0, 1) and efa.align.devicegroup4 == ("0",) and efa.rdma == "rdmap16s26"
    assert efa.devnodes[0].path == "infiniband/uverbs1" and n4.devnodes[0].path == "neuron4"
    # AWS's hash: sha256 of the sorted unique EFA addresses of devices 0-3, first 16 hex digits.
    want = hashlib.sha256(b"0000:10:1a.0,0000:a0:1a.0").hexdigest()[:16]
    assert n0.aws_ids["devicegroup4_id"] == want == _dev(t, "neuron3").aws_ids["devicegroup4_id"]
    assert n4.aws_ids["devicegroup4_id"] != want
    assert len({_dev(t, f"neuron{i}").aws_ids["devicegroup16_id"] for i in range(16)}) == 1


def test_trn2_switches_and_non_efa_instances(trees):
    t = fakedev.truth_of(trees["trn2.48xlarge"])
    n1 = _dev(t, "neuron1")
    assert n1.switch == "sw4" and _dev(t, n1.efa).switch == "sw4"
    for name in ("trn1.2xlarge", "inf2.48xlarge", "trn2.3xlarge"):
        tt = fakedev.truth_of(trees[name])
        assert not tt.efa_enabled
        assert all(not d.align.devicegroup4 for d in tt.devices)


def test_truth_round_trips_through_json(trees):
    """Bundles and `fakedev truth` write JSON; reading it back gives the same typed truth."""
    t = fakedev.truth_of(trees["trn2.48xlarge"])
    assert fakedev.Truth.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_cli_truth_is_json(trees):
    r = cli("fakedev", "truth", str(trees["inf2.24xlarge"]), check=True)
    t = json.loads(r.stdout)
    assert t["instance_type"] == "inf2.24xlarge" and len([d for d in t["devices"] if d["kind"] == "neuron"]) == 6


def test_cli_truth_of_a_non_tree_fails_cleanly(tmp_path):
    r = cli("fakedev", "truth", str(tmp_path))
    assert r.returncode == 2 and "is not a fakedev tree" in r.stderr and "Traceback" not in r.stderr
