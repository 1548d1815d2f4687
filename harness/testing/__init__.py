"""What end-to-end suites use: the pytest plugin's fixtures (`dra`, `dra_cluster`, `dra_kube`,
`dra_truth`), the `Dra` API bound to a test's namespace, and the few facts about topologies a
suite needs to say what it expects (preset names and their Neuron device counts). Suites import
nothing else of the project (tests/test_layering.py enforces it)."""

from __future__ import annotations

import fakedev


def presets() -> list[str]:
    """Names of the EC2 instance presets fakedev can render."""
    return fakedev.presets.names()


def neuron_devices(preset: str) -> int:
    """How many Neuron devices the preset has (for expectations written from the product's side)."""
    return len(fakedev.load_preset(preset).neuron)


__all__ = ["presets", "neuron_devices"]
