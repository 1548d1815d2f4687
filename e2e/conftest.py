"""The end-to-end suites users run (`make e2e`). The default cluster is the one `make e2e`
boots: trn1.32xlarge + trn2.48xlarge, both reference drivers, the Neuron driver with
--extended-attributes so pcieRoot/numaNode alignment can be exercised too."""

from __future__ import annotations

import pytest

pytest_plugins: list[str] = []  # the harness plugin is loaded through its pytest11 entry point

TRN1, TRN2 = "trn1.32xlarge", "trn2.48xlarge"  # instance types of the default cluster's nodes


def pytest_configure(config: pytest.Config) -> None:
    if not any(a.startswith("refdriver-neuron=--extended-attributes") for a in config.option.driver_arg):
        config.option.driver_arg.append("refdriver-neuron=--extended-attributes")


def node_of(truths: dict, instance_type: str) -> str:
    """The node of an instance type (node names differ between backends); tests that pin a
    node skip on clusters without one (`make e2e NODES=...`)."""
    node = next((n for n, t in truths.items() if t.instance_type == instance_type), None)
    if node is None:
        pytest.skip(f"this cluster has no {instance_type} node (nodes: "
                    f"{', '.join(t.instance_type for t in truths.values())})")
    return node


@pytest.fixture
def on(dra_truth):
    """on("trn2.48xlarge") -> that node's name."""
    return lambda instance_type: node_of(dra_truth, instance_type)
