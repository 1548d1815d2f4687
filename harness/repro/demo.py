"""The oracle-bug scenarios that capture and repro are proven on (tests/test_repro.py, `make bench
--only repro`): the driver bugs of e2e/test_oracle_catches_bugs.py, each with the claim the
scheduler happily allocates and the oracle judges WRONG, on a trn1.32xlarge node.

`efa-shift` is the first: one Neuron device (neuron1) and an EFA that must share its
devicegroup1 (the same EFA); with the bug the scheduler pairs neuron1 with the EFA of neuron2."""

from __future__ import annotations

from dataclasses import dataclass

NEURON, EFA = "neuron.aws.com", "efa.networking.k8s.aws"


def _neuron(index: int) -> list[dict]:
    return [{"cel": {"expression": f"device.attributes['neuron.aws.com'].deviceId == {index}"}}]


@dataclass(frozen=True)
class Scenario:
    bug: str
    driver_args: dict[str, list[str]]
    requests: tuple[dict, ...]  # the claim's requests
    match: str | None = None  # a matchAttribute over all of them
    removed: str | None = None  # a device hot-removed before the claim is made (fakedev truth id)

    def objects(self, namespace: str, claim: str = "paired", pod: str = "p") -> list[dict]:
        """The claim and its pod, to apply in that order."""
        names = [r["name"] for r in self.requests]
        constraints = [{"requests": names, "matchAttribute": self.match}] if self.match else []
        return [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                 "metadata": {"name": claim, "namespace": namespace},
                 "spec": {"devices": {"requests": list(self.requests), "constraints": constraints}}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": namespace},
                 "spec": {"containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                          "resourceClaims": [{"name": "d", "resourceClaimName": claim}]}}]


def _req(name: str, klass: str, count: int = 1, selectors: list[dict] | None = None) -> dict:
    ex: dict = {"deviceClassName": klass, "count": count}
    if selectors:
        ex["selectors"] = selectors
    return {"name": name, "exactly": ex}


SCENARIOS: dict[str, Scenario] = {s.bug: s for s in (
    Scenario("efa-shift", {"refdriver-neuron": ["--inject-bug=efa-shift"]},
             (_req("neuron", NEURON, selectors=_neuron(1)), _req("efa", EFA)), "resource.aws.com/devicegroup1_id"),
    # neuron12 (root pci0000:10) is published on pci0000:20, and so are two EFAs of pci0000:10
    Scenario("wrong-pcie-root", {"refdriver-neuron": ["--extended-attributes", "--inject-bug=wrong-pcie-root"],
                                 "refdriver-efa": ["--inject-bug=wrong-pcie-root"]},
             (_req("neuron", NEURON, selectors=_neuron(12)), _req("efa", EFA, 2)), "resource.kubernetes.io/pcieRoot"),
    Scenario("swapped-numa", {"refdriver-neuron": ["--extended-attributes", "--inject-bug=swapped-numa"]},
             (_req("neuron", NEURON, selectors=_neuron(0)), _req("efa", EFA)), "resource.kubernetes.io/numaNode"),
    Scenario("group-by-probe-order", {"refdriver-neuron": ["--inject-bug=group-by-probe-order"]},
             (_req("neuron", NEURON, 4),), "resource.aws.com/devicegroup4_id"),
    Scenario("stale-after-hotplug", {"refdriver-neuron": ["--inject-bug=stale-after-hotplug"]},
             (_req("neuron", NEURON, selectors=_neuron(3)),), removed="neuron3"),
)}
BUG = SCENARIOS["efa-shift"].driver_args  # the scenario of the single-bundle tests


def run_on(kube, namespace: str = "team-a", scenario: Scenario = SCENARIOS["efa-shift"], cluster=None) -> None:
    """Create the scenario on a cluster (its hot-removal through `cluster`) and wait for the claim
    to be allocated."""
    if scenario.removed:
        node = next(iter(cluster.nodes))
        cluster.mutate(node, "remove", scenario.removed)
    kube.create_namespace(namespace)
    for obj in scenario.objects(namespace):
        kube.apply(obj)
    kube.wait("ResourceClaim", lambda o: bool(((o or {}).get("status") or {}).get("allocation")),
              namespace=namespace, name="paired", timeout=30, what="claim paired allocated")
