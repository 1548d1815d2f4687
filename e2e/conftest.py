"""The end-to-end suites users run (`make e2e`). The default cluster is the one `make e2e`
boots: trn1.32xlarge + trn2.48xlarge, both reference drivers, the Neuron driver with
--extended-attributes so pcieRoot/numaNode alignment can be exercised too."""

from __future__ import annotations

import pytest

pytest_plugins: list[str] = []  # the harness plugin is loaded through its pytest11 entry point

TRN1, TRN2 = "trn1-32xlarge-0", "trn2-48xlarge-1"


def pytest_configure(config: pytest.Config) -> None:
    if not any(a.startswith("refdriver-neuron=--extended-attributes") for a in config.option.driver_arg):
        config.option.driver_arg.append("refdriver-neuron=--extended-attributes")


def node_of(truths: dict, instance_type: str) -> str:
    return next(n for n, t in truths.items() if t["instance_type"] == instance_type)
