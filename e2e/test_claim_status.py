"""Claim device status: the reference drivers tell in `status.devices` what they prepared (Neuron:
Ready, the chip's serial and the logical cores; EFA: Ready as an RDMA-only device, no networkData),
and the oracle holds every entry to the allocation and the hardware. GA in 1.37, on since 1.33."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.topology("trn1.32xlarge")
DG4 = "resource.aws.com/devicegroup4_id"


def _entries(dra, claim: str, n: int) -> list[dict]:
    dra.kube.wait("ResourceClaim", lambda o: len(((o or {}).get("status") or {}).get("devices") or []) == n,
                  namespace=dra.ns, name=claim, timeout=30, what=f"{n} status.devices entries of claim {claim}")
    return dra.get_claim(claim)["status"]["devices"]


def test_the_drivers_report_what_they_prepared_and_the_oracle_holds_it_to_the_hardware(dra):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 2), dra.request("e", "efa.networking.k8s.aws", 2),
                         match=(DG4, ["n", "e"])), dra.pod("p", "c"))
    dra.pod_running("p")
    entries = _entries(dra, "c", 4)
    by_driver = {d: [e for e in entries if e["driver"] == d] for d in ("neuron.aws.com", "dra.net")}
    assert len(by_driver["neuron.aws.com"]) == 2 and len(by_driver["dra.net"]) == 2, entries
    for e in entries:
        (cond,) = e["conditions"]
        assert cond["type"] == "Ready" and cond["status"] == "True", e
    assert all(e["conditions"][0]["reason"] == "RDMAOnlyDeviceReady" and "networkData" not in e
               for e in by_driver["dra.net"])
    assert all(e["data"]["serial"] and len(e["data"]["logicalCores"]) == 2 for e in by_driver["neuron.aws.com"])
    v = dra.assert_aligned("c")
    assert "status.devices: 4 entries true to the allocation and the hardware" in v.checks, v


def test_the_entries_go_when_the_pod_is_gone(dra):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com")), dra.pod("p", "c"))
    dra.pod_running("p")
    _entries(dra, "c", 1)
    dra.delete("Pod", "p")
    dra.kube.wait("ResourceClaim", lambda o: not ((o or {}).get("status") or {}).get("devices"),
                  namespace=dra.ns, name="c", timeout=30, what="claim c without status.devices after unprepare")


@pytest.mark.topology("trn1.32xlarge", driver_args={"refdriver-neuron": ["--inject-bug=status-neighbour-serial"]})
def test_the_oracle_catches_a_status_that_names_the_wrong_chip(dra):
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com")), dra.pod("p", "c"))
    dra.pod_running("p")
    _entries(dra, "c", 1)
    v = dra.judge("c")
    assert not v.ok and any("is the chip with serial" in r and "but it lies on" in r for r in v.reasons), v
