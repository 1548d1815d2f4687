"""Faults become device taints: the reference drivers taint what the fake hardware breaks, the
scheduler keeps new claims off, kube-controller-manager's device-taint eviction controller evicts
running pods, and the oracle checks each step against the true health of the hardware.

Runs on every version of the matrix: 1.34/1.35 clusters get the alpha gates (gates.py); effect
None needs 1.35 (`k8s` marker).
"""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path

import pytest

KIT = Path(__file__).parent.parent / "platform" / "golden-paths.yaml"
# a private cluster, shared with the hotplug suite: faults must not reach other modules' claims
pytestmark = pytest.mark.topology("trn1.32xlarge", exclusive="faults")

ECC = "neuron.aws.com/ecc-uncorrected"
EFA = "dra.net/efa-unresponsive"
DG4 = "resource.aws.com/devicegroup4_id"


def _node(dra_cluster) -> str:
    return next(iter(dra_cluster.nodes))


def _neurons(v) -> list[int]:
    return sorted(int(d["truth_id"][len("neuron"):]) for d in v.devices if d["driver"] == "neuron.aws.com")


def test_ecc_on_a_running_aligned_claim_evicts_it_and_the_next_claim_lands_on_healthy_devices(dra, dra_cluster):
    node = _node(dra_cluster)
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", 4), match=(DG4, ["n"])), dra.pod("p", "c"))
    v = dra.assert_aligned("c")
    dra.pod_running("p")
    broken = _neurons(v)[1]
    dra.fault(node, "ecc", f"neuron{broken}", "mem", "1")
    taint = dra.tainted(node, f"neuron-device-{broken}", ECC)
    assert taint["effect"] == "NoExecute" and taint["value"] == "mem"
    gone = dra.evicted("p")
    cond = next(c for c in gone["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert cond["status"] == "True" and cond["reason"] == "DeletionByDeviceTaintManager", cond
    dra.kube.wait("ResourceClaim", lambda o: o is not None and not (o.get("status") or {}).get("allocation"),
                  namespace=dra.ns, name="c", timeout=30, what="claim c deallocated after the eviction")
    dra.create(dra.claim("c2", dra.request("n", "neuron.aws.com", 4), match=(DG4, ["n"])), dra.pod("p2", "c2"))
    v2 = dra.assert_aligned("c2")
    truth = {d.id: d for d in dra.truths()[node].devices}
    assert all(truth[d["truth_id"]].health == "ok" for d in v2.devices), v2.devices
    assert broken // 4 not in {i // 4 for i in _neurons(v2)}, "landed on the group of the broken device"
    assert not dra.audit_taints()


@pytest.mark.upstream_bug("kubernetes#134434", fixed_in="1.35",
                          why="the scheduler does not copy a request's tolerations into the allocation result "
                              "(fixed by kubernetes#134479), so the eviction controller evicts the pod at once")
def test_toleration_seconds_delay_the_eviction_by_that_long_and_no_longer(dra, dra_cluster):
    node, wait_s = _node(dra_cluster), 6
    req = dra.request("n", "neuron.aws.com")
    req["exactly"]["tolerations"] = [{"key": ECC, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": wait_s}]
    dra.create(dra.claim("c", req), dra.pod("p", "c"))
    v = dra.assert_aligned("c")
    dra.pod_running("p")
    (device,) = _neurons(v)
    dra.fault(node, "ecc", f"neuron{device}")
    stamp = dra.tainted(node, f"neuron-device-{device}", ECC)["timeAdded"]  # RFC 3339, whole seconds
    added = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    dra.evicted("p", timeout=wait_s + 30)
    late = time.time() - added
    # timeAdded has whole seconds: the eviction may come up to 1 s "early" against it
    assert wait_s - 1 <= late <= wait_s + 5, f"evicted {late:.1f} s after the taint; tolerationSeconds {wait_s}"
    claim = dra.get_claim("c")  # one read: the controller may deallocate it between two
    v = dra.judge(claim) if (claim.get("status") or {}).get("allocation") else None
    assert v is None or v.ok, str(v)


def test_a_failed_efa_is_never_paired_in_a_joint_devicegroup4_claim(dra, dra_cluster):
    node = _node(dra_cluster)
    efa = "0000:10:1a.0"  # one of the two EFAs of a devicegroup4 on trn1.32xlarge
    dra.fault(node, "efa_fail", efa)
    dra.tainted(node, "pci-0000-10-1a-0", EFA)
    claims = []
    for i in range(3):  # three of the four groups' worth: the scheduler must route around the broken EFA
        name = f"c{i}"
        dra.create(dra.claim(name, dra.request("n", "neuron.aws.com", 4), dra.request("e", "efa.networking.k8s.aws", 2),
                             match=(DG4, ["n", "e"])), dra.pod(name, name))
        claims.append(name)
    for name in claims:
        v = dra.assert_aligned(name)
        assert efa not in {d["truth_id"] for d in v.devices}, f"{name} got the failed EFA: {v.devices}"
    assert not dra.audit_taints()


def test_pending_because_every_fitting_device_is_tainted_until_the_fault_clears(dra, dra_cluster):
    node = _node(dra_cluster)
    sel = ["device.attributes['neuron.aws.com'].deviceId == 7"]
    dra.fault(node, "ecc", "neuron7", "sram")
    dra.tainted(node, "neuron-device-7", ECC)
    dra.create(dra.claim("c", dra.request("n", "neuron.aws.com", selectors=sel)), dra.pod("p", "c"))
    dra.unschedulable("p")
    e = dra.explain("c")
    assert e.verdict == f"pending: every fitting device is tainted (key {ECC})", str(e)
    dra.heal(node, "neuron7")
    dra.untainted(node, "neuron-device-7")
    dra.assert_aligned("c", timeout=60)
    dra.pod_running("p")


@pytest.mark.k8s(min="1.35")
def test_a_drain_rule_with_effect_none_counts_what_the_oracle_counts(dra, dra_cluster):
    node = _node(dra_cluster)
    dra.create(dra.claim("a", dra.request("n", "neuron.aws.com", 4), match=(DG4, ["n"])), dra.pod("a", "a"),
               dra.claim("b", dra.request("n", "neuron.aws.com", 2)), dra.pod("b", "b"))
    for c in ("a", "b"):
        dra.assert_aligned(c)
    rule = f"drain-{dra.ns}"[:63]
    dra.taint_rule(rule, key="dra-harness.io/maintenance", effect="None", driver="neuron.aws.com", pool=node)
    api = dra.kube.taint_rule_api()
    r = dra.kube.dyn.resources.get(api_version=api, kind="DeviceTaintRule")

    def message():
        conds = ((r.get(name=rule).to_dict().get("status") or {}).get("conditions") or [])
        return next((c.get("message", "") for c in conds if c.get("type") == "EvictionInProgress"), "")

    end = time.monotonic() + 40  # the controller updates rule status at most every 10 s
    while not re.search(r"(\d+) published devices selected", message()) and time.monotonic() < end:
        time.sleep(0.5)
    msg = message()
    m = re.search(r"(\d+) published devices selected\. (\d+) allocated devices selected\. (\d+) pods? would be evicted", msg)
    assert m, f"rule status says {msg!r}"
    taints = dra.taints()
    selected = [k for k, ts in taints.items() if any(t["source"] == f"rule {rule}" for t in ts)]
    held = {(r_["driver"], r_["pool"], r_["device"]) for c in dra.all_claims()
            for r_ in ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", [])}
    pods = {u["name"] for c in dra.all_claims() for u in (c.get("status") or {}).get("reservedFor") or []
            if any((r_["driver"], r_["pool"], r_["device"]) in selected
                   for r_ in c["status"]["allocation"]["devices"]["results"])}
    assert (int(m[1]), int(m[2]), int(m[3])) == (len(selected), len(held & set(selected)), len(pods)), msg
    for c in ("a", "b"):  # effect None evicts nobody and blocks nothing
        dra.assert_aligned(c)


def test_time_added_survives_a_driver_restart(dra, dra_cluster):
    node = _node(dra_cluster)
    dra.fault(node, "efa_fail", "0000:10:19.0")
    before = dra.tainted(node, "pci-0000-10-19-0", EFA)["timeAdded"]
    assert not dra.audit_taints()
    time.sleep(1.1)  # a new stamp would differ from the old one by at least a second
    dra_cluster.restart_driver(node, "refdriver-efa")
    end = time.monotonic() + 5  # the restarted driver has published: it stays clean throughout
    while time.monotonic() < end:
        assert not dra.audit_taints(settle=0)
        time.sleep(0.25)
    assert dra.tainted(node, "pci-0000-10-19-0", EFA)["timeAdded"] == before


def test_the_platform_counts_evictions_automatic_and_manual_and_the_devices_lost(dra, dra_platform, dra_cluster):
    node = _node(dra_cluster)
    p = dra_platform(KIT)
    a, b = (p.workload("research", "small-inference", node=node) for _ in range(2))
    ra, rb = p.allocated(a), p.allocated(b)
    dra.fault(node, "ecc", ra.neuron[0])  # a fault: the driver's taint evicts (automatic)
    p.evicted(a)
    device_b = "neuron-device-" + rb.neuron[0][len("neuron"):]
    dra.taint_rule(f"drain-{dra.ns}"[:63], pool=node, device=device_b)  # maintenance: a rule evicts (manual)
    p.evicted(b)
    m = p.metrics()["all"]["all"]
    assert (m.evictions_automatic, m.evictions_manual) == (1, 1), m
    assert p.ledger.claims[b].evicted_by.startswith("rule drain-")
    assert p.ledger.samples[-1].neuron_lost == 1  # the failed device (a rule's taint is no fault)
