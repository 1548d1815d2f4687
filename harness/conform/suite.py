"""The report card's checks (harness/conform CHECKS, in that order), run by `dra-harness conform`
against the one driver profile given with `--driver`, on the node the harness plugin boots for it.

Contract checks follow KEP-5970's seven behaviours; each sets up what it needs in its own
namespace, so one failing does not hide the next. Oracle checks read the truth of the fake node.
A check that does not apply to the driver skips with the reason ("not applicable: ...")."""

from __future__ import annotations

import time

import pytest

from harness.backends import BackendError
from harness.backends.profiles import parse_driver_args, resolve
from harness.backends.registration import names as registers
from harness.conform.subject import Subject, classes_naming, identity_of, node_slices, pin
from harness.judge import published
from harness.judge.identity import INTENT
from harness.judge.sharing import quantity
from harness.kube import WaitTimeout

FAULT_OP = {"neuron": "ecc", "efa": "efa_fail"}  # how fakedev breaks a device of each kind (fakedev mutate)
SETTLE = 10.0  # seconds a driver gets to follow a change of its hardware (the reference drivers take < 1 s)


def _na(why: str) -> None:
    pytest.skip(f"not applicable: {why}")


@pytest.fixture
def subject(request, dra, dra_cluster) -> Subject:
    cfg = request.config
    names = cfg.getoption("--driver")
    if len(names) != 1:
        raise pytest.UsageError("a report card is about one driver: give --driver PROFILE once")
    prof = resolve(names[0], parse_driver_args(cfg.getoption("--driver-arg")))
    node = next(iter(dra_cluster.nodes))
    chosen = cfg.getoption("--device-class")
    classes = classes_naming(prof.driver, dra.kube.list("DeviceClass")[0], chosen)
    if chosen and not dra.kube.get("DeviceClass", chosen):
        raise pytest.UsageError(f"--device-class {chosen}: the cluster has no such DeviceClass")
    return Subject(prof, node, classes, node_slices(dra.kube, prof.driver, node), identity_of(prof))


@pytest.fixture
def any_device(dra, subject) -> str:
    """A DeviceClass of every device of the driver, for claims that pin one device by its
    attributes (the driver's own classes may each cover only some)."""
    name = f"conform.{subject.driver}"[:253]
    obj = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": name},
           "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{subject.driver}"'}}]}}
    dra.kube.apply(obj)
    yield name
    dra.kube.delete(obj)


def _klass(subject: Subject) -> str:
    if not subject.device_class:
        pytest.fail(f"no DeviceClass names driver {subject.driver} (its profile ships none, and none in the cluster "
                    "selects device.driver == that name): give one with --device-class")
    return subject.device_class


def _one_running(dra, subject: Subject, claim: str = "c", pod: str = "p") -> dict:
    dra.create(dra.claim(claim, dra.request("d", _klass(subject))), dra.pod(pod, claim))
    dra.allocated(claim)
    dra.pod_running(pod)
    return dra.get_claim(claim)


# -- the contract (KEP-5970) ----------------------------------------------------------------------

def test_registration(dra_cluster, subject):
    got = dra_cluster.registered(subject.node)
    assert registers(subject.driver, got), (f"the kubelet of {subject.node} has not registered {subject.driver} "
                                            f"(registered: {', '.join(got) or 'nothing'})")


def test_slices(subject):
    assert subject.slices, f"{subject.driver} published no ResourceSlice for node {subject.node}"
    pools: dict[str, list[dict]] = {}
    for s in subject.slices:
        pools.setdefault(s["spec"]["pool"]["name"], []).append(s)
    problems = []
    for pool, slices in pools.items():
        gen = max(s["spec"]["pool"]["generation"] for s in slices)
        current = [s for s in slices if s["spec"]["pool"]["generation"] == gen]
        want = {s["spec"]["pool"]["resourceSliceCount"] for s in current}
        if want != {len(current)}:
            problems.append(f"pool {pool} generation {gen}: {len(current)} slice(s), resourceSliceCount says "
                            f"{sorted(want)} (the scheduler ignores an incomplete pool)")
        names = [d["name"] for s in current for d in s["spec"].get("devices") or []]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"pool {pool}: device name(s) {', '.join(dup[:5])} published more than once")
    assert subject.devices(), f"{subject.driver}'s slices on {subject.node} hold no device"
    assert not problems, "; ".join(problems)


def test_allocation(dra, subject):
    klass = _klass(subject)
    dra.create(dra.claim("c", dra.request("d", klass)), dra.pod("p", "c"))
    results = dra.allocated("c")["status"]["allocation"]["devices"]["results"]
    assert len(results) == 1 and results[0]["driver"] == subject.driver, results


def test_prepare(dra, dra_cluster, subject):
    _one_running(dra, subject)
    if dra_cluster.nodes[subject.node].cdi_dir is None:
        return  # a real kubelet started the container only after NodePrepareResources succeeded
    problems = dra.check_prepared("p")
    assert not problems, "; ".join(problems)


def test_pod_running(dra, subject):
    _one_running(dra, subject)


def test_unprepare(dra, dra_cluster, subject):
    claim = _one_running(dra, subject)
    cdi = dra_cluster.nodes[subject.node].cdi_dir
    uid = claim["metadata"]["uid"]
    specs = sorted(cdi.glob(f"*{uid}*")) if cdi else []
    dra.delete("Pod", "p")  # the kubelet removes the pod once the driver unprepared its devices
    failed = [e.get("message", "") for e in dra.kube.list("Event", namespace=dra.ns)[0]
              if e.get("reason") == "FailedUnprepareDynamicResources"]
    assert not failed, f"unprepare failed: {failed[0][:300]}"
    left = [p.name for p in specs if p.exists()]
    assert not left, f"CDI spec(s) of claim {uid} still on the node after unprepare: {left}"
    dra.kube.wait("ResourceClaim", lambda o: not [d for d in ((o or {}).get("status") or {}).get("devices") or []
                                                  if d.get("driver") == subject.driver],
                  namespace=dra.ns, name="c", timeout=SETTLE, what=f"{subject.driver}'s status.devices withdrawn")


def test_reuse(dra, subject):
    _one_running(dra, subject)
    dra.delete("Pod", "p")
    dra.delete("ResourceClaim", "c")
    dra.create(dra.claim("all", dra.request("d", _klass(subject), all=True)), dra.pod("p-all", "all"))
    got = dra.allocated("all")["status"]["allocation"]["devices"]["results"]
    dra.pod_running("p-all")
    assert got, "allocationMode All got no device"


# -- what only the oracle can judge ---------------------------------------------------------------

def _identified(subject: Subject, dra, first: bool = False) -> None:
    """The oracle's checks need the node's ground truth and a way to map devices onto it; the
    first of them says why in full, the others point to it."""
    if dra.truths().get(subject.node) is None:
        _na(f"node {subject.node} is not a fake node: there is no ground truth to judge against")
    if subject.identity is None:
        _na(f"the profile of {subject.driver} states no identity, so its devices cannot be mapped to the node's "
            "hardware (an `identity:` of name_pattern, pci_attribute or index_attribute makes them judgeable)"
            if first else "its devices are not mapped to the hardware (see identity)")


def test_identity(dra, subject):
    _identified(subject, dra, first=True)
    covs = published.coverage(subject.slices, dra.truths(), subject.driver, {subject.driver: subject.identity})
    (cov,) = covs or [None]
    assert cov and cov.mapped, (f"the identity of {subject.driver} maps none of its "
                                f"{len(subject.devices())} devices to the hardware (e.g. {subject.devices()[0]['name']})")
    assert not cov.problems, _listing(f"{len(cov.problems)} problem(s)", cov.problems)
    if cov.unmapped:  # published devices the identity does not cover are not judged: say so
        print(f"not mapped (not judged): {', '.join(cov.unmapped[:10])}")


def test_alignment(dra, subject):
    _identified(subject, dra)
    idents = {subject.driver: subject.identity}
    groups = published.intents(subject.slices, dra.truths(), idents, {subject.driver})
    if not groups:
        attrs = sorted({a for d in subject.devices() for a in d.get("attributes") or {}})
        _na(f"{subject.driver} publishes no attribute with a topology intent the oracle knows "
            f"(it publishes {', '.join(attrs[:12]) or 'none'}; known: {', '.join(sorted(INTENT))})")
    values = published.standard_values(subject.slices, dra.truths(), idents)
    assert not values, (f"{len(values)} standard attribute value(s) are not the hardware's, e.g. {values[0]}\n"
                        + "\n".join(values[1:8]))
    every = [v for vs in groups.values() for v in vs]
    wrong = [v for v in every if not v.ok]
    assert not wrong, (f"{len(wrong)} of {len(every)} published groups are not really together, e.g. "
                       f"{wrong[0].reasons[0]}\n" + "\n".join(map(str, wrong[:6])))
    # and through the scheduler: one claim per intent, as large as its largest group
    klass = _klass(subject)
    for i, (attr, verdicts) in enumerate(sorted(groups.items())):
        size = min(4, max(len(v.devices) for v in verdicts))
        name = f"intent-{i}"
        dra.create(dra.claim(name, dra.request("d", klass, size), match=(attr, ["d"])), dra.pod(f"p-{i}", name))
        dra.allocated(name)
        v = dra.judge(name)  # what else the verdict says (status, shares) is for the checks of those
        bad = [r for r in v.reasons if attr in r or "not allocated" in r]
        assert not bad, f"claim {name} of {size} matching {attr}: {bad[0]}\n{v}"
        dra.delete("Pod", f"p-{i}")
        dra.delete("ResourceClaim", name)
    print("judged: " + "; ".join(f"{a}: {len(vs)} group(s)" for a, vs in sorted(groups.items())))


def _mapped(subject: Subject, truth, kinds: set[str] | None = None) -> list[tuple[dict, str]]:
    """(device, truth id) of present devices, one per real device, the last by name first (the
    least used)."""
    out = []
    for d in subject.devices():
        tid = subject.truth_id(d)
        dev = truth.device(tid) if tid else None
        if dev and dev.present and (kinds is None or dev.kind in kinds) and tid not in {t for _, t in out}:
            out.append((d, tid))
    return sorted(out, key=lambda x: x[0]["name"], reverse=True)


def _published_ids(dra, subject: Subject) -> set[str]:
    slices = node_slices(dra.kube, subject.driver, subject.node)
    return {subject.truth_id(d) for s in slices for d in s["spec"].get("devices") or []}


def _until(cond, what: str, timeout: float = SETTLE) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what} (waited {timeout:g} s)")
        time.sleep(0.2)


def test_hotplug(dra, subject):
    _identified(subject, dra)
    truth = dra.truths()[subject.node]
    candidates = _mapped(subject, truth)
    if not candidates:
        _na("none of its devices maps to a device fakedev can remove")
    device, tid = candidates[0]
    dra.mutate(subject.node, "remove", tid)
    try:
        _until(lambda: tid not in _published_ids(dra, subject),
               f"{device['name']} ({tid}) was hot-removed but {subject.driver} still publishes it")
    finally:
        dra.mutate(subject.node, "add", tid)
    _until(lambda: tid in _published_ids(dra, subject),
           f"{device['name']} ({tid}) was added back but {subject.driver} does not publish it again")


def test_faults(dra, dra_cluster, subject):
    _identified(subject, dra)
    truth = dra.truths()[subject.node]
    candidates = _mapped(subject, truth, set(FAULT_OP))
    if not candidates:
        _na(f"fakedev breaks Neuron devices (ECC) and EFAs (port down); {subject.driver} publishes neither")
    device, tid = candidates[0]
    kind = truth.device(tid).kind
    dra.fault(subject.node, FAULT_OP[kind], tid)
    found = dra.audit_taints(settle=SETTLE)
    assert not found, _listing(f"{tid} broken ({FAULT_OP[kind]})", found)
    try:
        dra_cluster.restart_driver(subject.node, subject.profile.name)
    except BackendError as e:
        print(f"the driver was not restarted ({e}): timeAdded across a restart not checked")
    else:
        end = time.monotonic() + 3  # the restarted driver republishes: its taints must keep their time
        while time.monotonic() < end:
            moved = [f for f in dra.audit_taints(settle=0) if f.problem == "timeAdded moved"]
            assert not moved, _listing("after a restart of the driver", moved)
            time.sleep(0.25)
    dra.heal(subject.node, tid)
    found = dra.audit_taints(settle=SETTLE)
    assert not found, _listing(f"{tid} healed", found)


def _allocated_within(dra, claim: str, seconds: float = 5) -> bool:
    """Whether the scheduler allocates `claim` within `seconds` (it must not, where this is asked)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if (dra.get_claim(claim).get("status") or {}).get("allocation"):
            return True
        time.sleep(0.2)
    return bool((dra.get_claim(claim).get("status") or {}).get("allocation"))


def _listing(when: str, findings: list) -> str:
    """The first finding on the card's line, all of them below."""
    return f"{when}: {findings[0]}" + "".join(f"\n  {f}" for f in findings[1:8])


def test_sharing(dra, subject, any_device):
    shareable = [d for n, d in published.shareable(subject.slices, subject.driver)]
    if not shareable:
        _na(f"{subject.driver} publishes no device that allows several allocations")
    truths = dra.truths()
    wrong = published.capacity(subject.slices, truths, {subject.driver: subject.identity} if subject.identity else None)
    assert not wrong, _listing("published capacity", wrong)
    device = shareable[-1]
    sel = pin(subject.driver, device, subject.devices())
    if sel is None:
        _na(f"{device['name']} cannot be told apart from another device by its attributes")
    cap_name, cap = next(iter((device.get("capacity") or {}).items()), (None, None))
    if cap_name is None:
        _na(f"{device['name']} allows several allocations but publishes no capacity to divide")
    total = quantity(str(cap["value"]))
    part = f"{int(total * 0.3)}"  # two shares in one claim: each its own CDI device (share_id)
    dra.create(dra.claim("two", dra.request("a", any_device, selectors=sel, capacity={cap_name: part}),
                         dra.request("b", any_device, selectors=sel, capacity={cap_name: part})), dra.pod("p-two", "two"))
    dra.assert_aligned("two")
    dra.pod_running("p-two")
    if dra.cluster.nodes[subject.node].cdi_dir is not None:
        problems = dra.check_prepared("p-two")
        assert not problems, "; ".join(problems)
    # 40% of what the device publishes is left; 60% more must not fit (the oracle holds the true rate)
    dra.create(dra.claim("more", dra.request("a", any_device, selectors=sel, capacity={cap_name: f"{int(total * 0.6)}"})),
               dra.pod("p-more", "more"))
    if _allocated_within(dra, "more"):
        v = dra.judge("more")
        assert v.ok, f"the scheduler over-committed what the driver published:\n{v}"
        pytest.fail(f"{device['name']}: 120% of its published {cap_name} was allocated, yet the oracle found no "
                    f"over-commitment:\n{v}")


def test_partitions(dra, subject, any_device):
    if not any(s["spec"].get("sharedCounters") for s in dra.kube.list("ResourceSlice")[0]
               if s["spec"]["driver"] == subject.driver):
        _na(f"{subject.driver} publishes no counter sets (no partitionable devices)")
    _identified(subject, dra)
    devices = subject.devices()
    wholes = [d for d in devices if d.get("consumesCounters") and subject.truth_id(d)]
    for whole in wholes:
        tid = subject.truth_id(whole)
        parts = [d for d in devices if d is not whole and subject.truth_id(d) == tid]
        sel_w, sel_p = pin(subject.driver, whole, devices), (pin(subject.driver, parts[0], devices) if parts else None)
        if sel_w and sel_p:
            break
    else:
        _na("no device with a partition of the same hardware that selectors can tell apart")
    dra.create(dra.claim("whole", dra.request("d", any_device, selectors=sel_w)), dra.pod("p-whole", "whole"))
    dra.assert_aligned("whole")
    dra.create(dra.claim("part", dra.request("d", any_device, selectors=sel_p)), dra.pod("p-part", "part"))
    if _allocated_within(dra, "part"):
        v = dra.judge("part")
        assert v.ok, f"{whole['name']} and its partition {parts[0]['name']} were both allocated: {v.reasons[0]}\n{v}"


def test_claim_status(dra, subject):
    _one_running(dra, subject)
    try:
        dra.kube.wait("ResourceClaim", lambda o: any(d.get("driver") == subject.driver
                                                     for d in ((o or {}).get("status") or {}).get("devices") or []),
                      namespace=dra.ns, name="c", timeout=5, what="status.devices")
    except WaitTimeout:
        _na(f"{subject.driver} writes no status.devices for what it prepared (optional: KEP-4817)")
    v = dra.judge("c")
    bad = [r for r in v.reasons if r.startswith("status.devices")]  # the rest is for the other checks
    assert not bad, f"{bad[0]}\n{v}"
    assert any(c.startswith("status.devices") for c in v.checks), v
