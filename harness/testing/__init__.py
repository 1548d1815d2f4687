"""What end-to-end suites use: the pytest plugin's fixtures (`dra`, `dra_cluster`, `dra_kube`,
`dra_truth`), the `Dra` API bound to a test's namespace, and the few facts about topologies a
suite needs to say what it expects (preset names and their Neuron device counts). Suites import
nothing else of the project (tests/test_layering.py enforces it)."""

from __future__ import annotations

from pathlib import Path

import fakedev


def presets() -> list[str]:
    """Names of the EC2 instance presets fakedev can render."""
    return fakedev.presets.names()


def neuron_devices(preset: str) -> int:
    """How many Neuron devices the preset has (for expectations written from the product's side)."""
    return len(fakedev.load_preset(preset).neuron)


def golden_path_objects(kit_path: str | Path) -> list[dict]:
    """The DeviceClasses and claim templates of a golden-path kit (harness.platform.kit), for a
    test's own namespace: team namespaces, quotas and access policies are left to `kit render`."""
    from ..platform import kit

    k = kit.load(kit_path)
    out = []
    for g in k.classes.values():
        out += kit.device_classes(g)
        out.append({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                    "metadata": {"name": g.name}, "spec": {"spec": kit.claim_spec(g)}})
    return out


def gbit(quantity: str) -> float:
    """A bandwidth quantity in Gbit/s: the API server may normalise "50G" to "48828125Ki"."""
    from ..judge.sharing import quantity as q

    return q(quantity) / 1e9


__all__ = ["presets", "neuron_devices", "golden_path_objects", "gbit"]


def legacy_alignment(truths: dict, legacy: list[dict], aligned: list[dict]) -> dict:
    """"Alignment lost to legacy requests" (harness.platform.metrics.legacy_alignment)."""
    from ..platform.metrics import legacy_alignment as measure

    return measure(truths, legacy, aligned)


def __getattr__(name: str):
    """`WaitTimeout`: what a wait of the `dra` API raises when its condition never came (or a
    `stays_*` when it broke), for a scenario that explains a failure in its own words."""
    if name == "WaitTimeout":
        from ..kube import WaitTimeout

        return WaitTimeout
    raise AttributeError(name)
