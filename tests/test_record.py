"""Record and replay: record(render(spec)) renders to an identical tree, for every preset."""

from __future__ import annotations

import pytest
import yaml

import fakedev
from fakedev.record import record

from .conftest import PRESETS, cli
from .test_render import _snapshot


def _tree_only(snap: dict) -> dict:
    """The tree drivers see; fakedev/ metadata may differ (e.g. torus coordinates, names)."""
    return {k: v for k, v in snap.items() if not k.startswith("fakedev")}


@pytest.mark.parametrize("name", PRESETS)
def test_record_replays_identically(trees, tmp_path, name):
    spec, warnings = record(trees[name])
    assert warnings == []
    replay = fakedev.load_text(yaml.safe_dump(spec))
    fakedev.generate(replay, tmp_path / "replay")
    assert _tree_only(_snapshot(tmp_path / "replay")) == _tree_only(_snapshot(trees[name]))


def test_cli_record_to_file(trees, tmp_path):
    out = tmp_path / "rec.yaml"
    cli("fakedev", "record", "--root", str(trees["trn2.3xlarge"]), "--out", str(out), check=True)
    assert fakedev.load_spec(out).instance_type == "trn2.3xlarge"


def test_record_of_a_mutated_tree_says_what_it_lost(tree):
    fakedev.Tree(tree).duplicate_routing_id("neuron2")
    spec, warnings = record(tree)
    assert len(spec["neuron_devices"]) == 15
    assert any("0000:a0:1c.0" in w and "without a neuronN" in w for w in warnings)
