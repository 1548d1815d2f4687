"""Golden-path classes (the kit in platform/golden-paths.yaml) on every preset: they land aligned
where they should and stay pending, explained as impossible on that topology, where they cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.testing import golden_path_objects, neuron_devices, presets

PRESETS = presets()
TEMPLATES = ["small-inference", "batch-inference", "interactive-experiment", "distributed-training",
             "large-reserved-training"]
EFA_GROUPS_OF_16 = {"trn1.32xlarge", "trn1n.32xlarge", "trn2.48xlarge", "trn2u.48xlarge"}


def expected(template: str, preset: str) -> bool:
    """Where each golden path fits, from the product's point of view (not from the harness)."""
    n = neuron_devices(preset)
    return {"small-inference": n >= 1, "interactive-experiment": n >= 2, "batch-inference": n >= 4,
            "distributed-training": preset in EFA_GROUPS_OF_16, "large-reserved-training": preset in EFA_GROUPS_OF_16}[template]


@pytest.mark.topology(*PRESETS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_golden_path_on_every_preset(dra, dra_truth, template):
    dra.create(*golden_path_objects(Path(__file__).parent.parent / "platform" / "golden-paths.yaml"))
    pods = {}
    for node, truth in sorted(dra_truth.items()):
        pods[node] = f"p-{node}"
        dra.create(dra.pod(pods[node], template=template, node=node))
    for node, truth in sorted(dra_truth.items()):
        preset = truth.instance_type
        claim = dra.claim_of_pod(pods[node])
        if expected(template, preset):
            v = dra.assert_aligned(claim)
            assert v.node == node
        else:
            dra.unschedulable(pods[node])
            e = dra.explain(claim, nodes=[node])
            assert e.verdict == "cannot be satisfied with this topology", f"{preset}: {e}"
        # each golden path is tested alone on each node: free the node for the next template
    for node in pods:
        dra.delete("Pod", pods[node], wait=False)
