"""The golden-path kit: a bounded, validated YAML file; rendered objects that the Kubernetes
OpenAPI schemas accept; where each class fits, judged by the oracle; and, on the real API
server, team access denied with a message naming the class and quota enforced."""

from __future__ import annotations

import re

import uuid

import pytest
import yaml
from kubernetes.client.rest import ApiException

from harness.platform import kit as kitmod
from harness.platform.check import check

from .conftest import ROOT, local_cluster
from .openapi_strict import validate

KIT = ROOT / "platform/golden-paths.yaml"


def test_the_shipped_kit_loads_with_five_classes():
    k = kitmod.load(KIT)
    assert list(k.classes) == ["small-inference", "batch-inference", "interactive-experiment", "distributed-training",
                               "large-reserved-training"]


@pytest.mark.parametrize("edit,says", [
    (lambda d: d["classes"]["small-inference"].update(colour="red"), "classes.small-inference.colour: unknown key"),
    (lambda d: d["classes"]["small-inference"].update(teams=["nobody"]), "unknown team 'nobody'"),
    (lambda d: d["classes"]["batch-inference"]["constraints"][0].update(requests=["ghost"]), "unknown request(s)"),
    (lambda d: d["classes"]["batch-inference"]["requests"][0].update(device="gpu"), "requests[0].device: one of"),
    (lambda d: d["classes"]["batch-inference"].update(cost_per_device_hour="cheap"), "cost_per_device_hour"),
    (lambda d: d["classes"]["batch-inference"]["quota"].update(training=3), "quota.training: unknown key"),
])
def test_kit_errors_are_one_line_naming_the_field(tmp_path, edit, says):
    d = yaml.safe_load(KIT.read_text())
    edit(d)
    f = tmp_path / "kit.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(kitmod.KitError) as e:
        kitmod.load(f)
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_kit_alias_bomb_is_refused(tmp_path):
    from .test_hostile import BOMB

    f = tmp_path / "kit.yaml"
    f.write_text(BOMB.replace("preset: trn1.2xlarge\nmemory_gib:", "kit:"))
    with pytest.raises(kitmod.KitError, match="alias"):
        kitmod.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("minor", ["1.34", "1.37"])
def test_rendered_objects_validate_against_openapi(minor):
    objs = kitmod.render(kitmod.load(KIT))
    kinds = {o["kind"] for o in objs}
    assert kinds == {"Namespace", "DeviceClass", "PriorityClass", "ValidatingAdmissionPolicy",
                     "ValidatingAdmissionPolicyBinding", "ResourceClaimTemplate", "ResourceQuota"}
    version = {"1.34": "v1.34.4", "1.37": "v1.37.2"}[minor]
    for o in objs:
        assert validate(o, version) == [], o["metadata"]["name"]


def test_check_places_every_class_and_judges_it():
    rows = {(r.golden_path, r.preset): r for r in check(kitmod.load(KIT))}
    assert len(rows) == 5 * 9
    assert all(r.aligned for r in rows.values() if r.fits), "every allocation found is aligned by the oracle"
    assert rows[("distributed-training", "trn2.48xlarge")].fits and "one EFA group of 16" in \
        rows[("distributed-training", "trn2.48xlarge")].why
    assert not rows[("distributed-training", "inf2.48xlarge")].fits
    assert "only 12 usable" in rows[("distributed-training", "inf2.48xlarge")].why
    assert not rows[("batch-inference", "trn1.2xlarge")].fits


def test_check_reports_a_class_no_preset_can_hold(tmp_path):
    """The check can fail: a class asking for more devices than an EFA group holds is reported
    unsatisfiable with the reason, never placed."""
    d = yaml.safe_load(KIT.read_text())
    d["classes"]["distributed-training"]["requests"][0]["count"] = 17
    f = tmp_path / "kit.yaml"
    f.write_text(yaml.safe_dump(d))
    rows = [r for r in check(kitmod.load(f), ["trn2.48xlarge"]) if r.golden_path == "distributed-training"]
    assert rows[0].fits is False and "17" in rows[0].why


# -- enforcement on the real API server --------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory, "k", "trn1.32xlarge", netns=False)


def _claim(ns: str, name: str, cls: str, count: int) -> dict:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
            "spec": {"devices": {"requests": [{"name": "n", "exactly": {"deviceClassName": cls, "count": count}}]}}}


@pytest.mark.slow
def test_team_access_and_quota_are_enforced(cluster):
    import time

    from harness.kube import Kube

    kube = Kube(str(cluster.kubeconfig))
    for o in kitmod.render(kitmod.load(KIT)):
        kube.apply(o)
    deadline = time.monotonic() + 20  # admission policies and quotas take effect asynchronously
    denied = None
    while denied is None:
        try:
            kube.apply(_claim("team-inference", f"probe-{uuid.uuid4().hex[:4]}", "gp-distributed-training-neuron", 1))
            assert time.monotonic() < deadline, "team-inference was never denied the training class"
            time.sleep(0.2)
        except ApiException as e:
            denied = e
    assert denied.status in (403, 422)
    assert "golden path distributed-training is for teams training" in denied.body and "team-inference" in denied.body
    kube.apply(_claim("team-training", "ok", "gp-distributed-training-neuron", 16))  # its own team: admitted
    # quota: research may hold 4 small-inference devices
    kube.apply(_claim("team-research", "a", "gp-small-inference-neuron", 1))
    kube.apply(_claim("team-research", "b", "gp-small-inference-neuron", 3))
    with pytest.raises(ApiException) as e:
        kube.apply(_claim("team-research", "c", "gp-small-inference-neuron", 1))
    assert e.value.status == 403 and "exceeded quota" in e.value.body


def _pod(ns: str, name: str, template: str, priority_class: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"priorityClassName": priority_class, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                     "resourceClaims": [{"name": "d", "resourceClaimTemplateName": template}]}}


@pytest.mark.slow
def test_large_reserved_training_against_interactive_experiments(cluster):
    """The reserved class (priority 10000) needs the whole node; interactive experiments
    (priority 500) hold part of it. Kubernetes 1.37.2 (tested) does not preempt pods for DRA devices: the
    scheduler answers "cannot allocate all claims ... Preemption is not helpful for scheduling"
    (the DynamicResources filter is unresolvable). So the test checks what happens instead: the
    reserved claim stays pending, explained as "cluster full" with the experiments named as
    holders; once they are removed (the manual intervention the platform metrics count) the whole
    node is allocated to it, aligned. Should a version preempt, the test checks that instead."""
    from harness.judge.explain import explain
    from harness.judge.oracle import judge
    from harness.kube import Kube

    kube = Kube(str(cluster.kubeconfig))
    for o in kitmod.render(kitmod.load(KIT)):
        kube.apply(o)
    running = lambda o: bool(o and (o.get("status") or {}).get("phase") == "Running")  # noqa: E731
    for i in range(2):  # 2 x 2 devices of the node's 16, in the research team (quota 8)
        kube.apply(_pod("team-research", f"exp{i}", "interactive-experiment", "gp-interactive-experiment"))
    for i in range(2):
        kube.wait("Pod", running, namespace="team-research", name=f"exp{i}", timeout=30, what=f"exp{i} running")
    kube.apply(_pod("team-training", "reserved", "large-reserved-training", "gp-large-reserved-training"))
    p = kube.wait("Pod", lambda o: running(o) or any(
        c.get("reason") == "Unschedulable" for c in (o or {}).get("status", {}).get("conditions") or []),
        namespace="team-training", name="reserved", timeout=60, what="the scheduler's verdict on the reserved pod")
    if not running(p):
        msg = next(c["message"] for c in p["status"]["conditions"] if c.get("reason") == "Unschedulable")
        assert "Preemption is not helpful" in msg, msg
        assert all(running(kube.get("Pod", f"exp{i}", "team-research")) for i in range(2)), "nothing was preempted"
        claim = kube.get("ResourceClaim", p["status"]["resourceClaimStatuses"][0]["resourceClaimName"], "team-training")
        claims = [c for ns in ("team-research", "team-training") for c in kube.list("ResourceClaim", namespace=ns)[0]]
        e = explain(claim, cluster.truths(), claims, kube.list("DeviceClass")[0], slices=kube.list("ResourceSlice")[0])
        assert e.verdict == "cluster full" and "team-research/exp0" in str(e), str(e)
        for i in range(2):  # the manual intervention
            kube.core.delete_namespaced_pod(f"exp{i}", "team-research", grace_period_seconds=0)
        p = kube.wait("Pod", running, namespace="team-training", name="reserved", timeout=60,
                      what="the reserved pod running once the experiments are gone")
    else:
        events, _ = kube.list("Event", namespace="team-research")
        assert any(e.get("reason") == "Preempted" for e in events)
    claim = kube.get("ResourceClaim", p["status"]["resourceClaimStatuses"][0]["resourceClaimName"], "team-training")
    v = judge(claim, cluster.truths())
    assert v.ok and len(v.devices) == 16 + 8, str(v)


# -- every route to a golden-path class is gated by team (reliability probe 2, rows 121-131) ---------


def _fa_claim(ns: str, name: str, cls: str, count: int) -> dict:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
            "spec": {"devices": {"requests": [{"name": "r", "firstAvailable": [{"name": "a", "deviceClassName": cls,
                                                                               "count": count}]}]}}}


def _as_template(claim: dict) -> dict:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": claim["metadata"],
            "spec": {"spec": claim["spec"]}}


ROUTES = {  # the probe's bypasses, each from a namespace the class is not for
    "firstAvailable claim (row 121)": lambda: _fa_claim("team-research", "b1", "gp-batch-inference-neuron", 4),
    "firstAvailable template (row 123)": lambda: _as_template(_fa_claim("team-research", "b2", "gp-batch-inference-neuron", 4)),
    "firstAvailable from an unlabelled namespace (row 125)":
        lambda: _fa_claim("rogue", "b3", "gp-distributed-training-neuron", 16),
    "mixed firstAvailable, the first one forbidden (row 126)": lambda: {
        **_fa_claim("team-research", "b4", "gp-distributed-training-neuron", 16),
        "spec": {"devices": {"requests": [{"name": "r", "firstAvailable": [
            {"name": "a", "deviceClassName": "gp-distributed-training-neuron", "count": 16},
            {"name": "b", "deviceClassName": "gp-small-inference-neuron", "count": 1}]}]}}},
    "the driver's own DeviceClass from a team namespace (row 124)":
        lambda: _claim("team-research", "b5", "neuron.aws.com", 4),
    "the driver's DeviceClass in a firstAvailable subrequest": lambda: _fa_claim("team-inference", "b6", "neuron.aws.com", 1),
}


@pytest.fixture(scope="module")
def kit_applied(cluster):
    import time

    from harness.kube import Kube

    kube = Kube(str(cluster.kubeconfig))
    kube.create_namespace("rogue")
    for o in kitmod.render(kitmod.load(KIT)):
        kube.apply(o)
    deadline = time.monotonic() + 20  # each policy takes effect on its own: wait for the last one
    while True:
        try:
            kube.apply(_claim("team-research", f"probe-{uuid.uuid4().hex[:4]}", "neuron.aws.com", 1))
        except ApiException:
            break
        assert time.monotonic() < deadline, f"{kitmod.RESERVED_POLICY} never took effect"
        time.sleep(0.2)
    return kube


@pytest.mark.slow
@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_to_a_golden_path_is_gated_by_team(kit_applied, route):
    obj = ROUTES[route]()
    with pytest.raises(ApiException) as e:
        kit_applied.apply(obj)
    assert e.value.status in (403, 422), e.value.body
    assert "golden path" in e.value.body, e.value.body


@pytest.mark.slow
def test_an_extended_resource_of_the_drivers_class_is_refused_in_a_team_namespace(kit_applied):
    """Row 131: a pod asking `deviceclass.resource.kubernetes.io/neuron.aws.com: 4`, with no claim,
    got 4 devices. The scheduler's claim for it is now refused at admission: the pod stays
    unscheduled, and the scheduler says why. Row 130 (a golden path's own extended resource from
    the wrong team) is refused too, and the platform recorder counts both as wrong-class requests."""
    import time

    from harness.platform.recorder import Recorder

    kube = kit_applied
    for ns in ("team-research", "team-training"):  # free devices: the scheduler must get as far as the claim
        kube.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
        kube.wait("Pod", lambda lst: not lst["items"], namespace=ns, timeout=60, what=f"the pods of {ns} gone")
    rec = Recorder(kube, kitmod.load(KIT), {}, time.monotonic)
    rec.start()
    pods = {"er": "deviceclass.resource.kubernetes.io/neuron.aws.com",
            "er-gp": "deviceclass.resource.kubernetes.io/gp-batch-inference-neuron"}
    for name, resource in pods.items():
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team-research"},
                    "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {resource: "4"}}}]}})
    try:
        ev = kube.wait("Event", lambda lst: any(e.get("reason") == "FailedScheduling" and "reserved" in e.get("message", "")
                                                for e in lst["items"]),
                       namespace="team-research", timeout=30, what="the scheduler naming the refused claim")
        assert ev
        for name in pods:
            assert not kube.get("Pod", name, "team-research")["spec"].get("nodeName"), f"{name} was scheduled"
        deadline = time.monotonic() + 30
        want = {("research", "driver-class"), ("research", "batch-inference")}
        while {(d.team, d.klass) for d in rec.ledger.denials if d.reason == "access"} != want:
            assert time.monotonic() < deadline, f"denials recorded: {rec.ledger.denials}"
            time.sleep(0.2)
        time.sleep(2)  # the scheduler retries: each pod and class is still counted once
        assert len([d for d in rec.ledger.denials if d.reason == "access"]) == 2, rec.ledger.denials
    finally:
        rec.stop()
        for name in pods:
            kube.core.delete_namespaced_pod(name, "team-research", grace_period_seconds=0)


@pytest.mark.slow
def test_namespaces_outside_the_kit_keep_the_driver_classes(kit_applied):
    """Documented: a namespace no team of the kit owns is not the platform's (the harness's own
    test namespaces use the driver classes); only golden-path classes are gated there."""
    kit_applied.apply(_claim("rogue", "raw", "neuron.aws.com", 1))


@pytest.mark.slow
@pytest.mark.parametrize("version", ["v1.34.4", "v1.35.4", "v1.36.3", "v1.37.2"])
def test_a_legacy_name_becomes_the_extended_resource_of_its_class_and_a_quota_key(version):
    """legacy_name: the class's DeviceClass of that kind takes pods asking by count; the team's
    quota counts them under both extended names (dra-features.md §1.4)."""
    objs = kitmod.render(kitmod.load(ROOT / "platform/legacy.yaml"))
    classes = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "DeviceClass"}
    assert classes["gp-training-4-neuron"]["extendedResourceName"] == "aws.amazon.com/neuron"
    assert classes["gp-efa-2-efa"]["extendedResourceName"] == "vpc.amazonaws.com/efa"
    quota = next(o["spec"]["hard"] for o in objs if o["kind"] == "ResourceQuota" and o["metadata"]["name"] == "gp-training-4")
    assert quota == {"gp-training-4-neuron.deviceclass.resource.k8s.io/devices": "16",
                     "requests.aws.amazon.com/neuron": "16",
                     "requests.deviceclass.resource.kubernetes.io/gp-training-4-neuron": "16"}
    for o in objs:
        assert validate(o, version) == [], o["metadata"]["name"]


@pytest.mark.parametrize("change, said", [
    ("legacy_name: aws.amazon.com/neuron\n", "does not request"),      # on the EFA class
    ("legacy_name: nvidia.com/gpu\n", "one of aws.amazon.com/neuron, vpc.amazonaws.com/efa"),
    ("legacy_name: vpc.amazonaws.com/efa\n", "already class 'efa-2'"),  # a second class for one name
])
def test_a_legacy_name_the_kit_cannot_honour_is_refused(tmp_path, change, said):
    text = (ROOT / "platform/legacy.yaml").read_text()
    if said.startswith("already"):
        text = text.replace("    legacy_name: vpc.amazonaws.com/efa\n", "    legacy_name: vpc.amazonaws.com/efa\n", 1)
        text += ("  efa-2b:\n    requests:\n      - {name: efas, device: efa, count: 2}\n    teams: [ml]\n"
                 "    cost_per_device_hour: 0.5\n    priority: 100\n    " + change)
    else:
        text = text.replace("    legacy_name: vpc.amazonaws.com/efa\n", "    " + change)
    f = tmp_path / "k.yaml"
    f.write_text(text)
    with pytest.raises(kitmod.KitError, match=re.escape(said)):
        kitmod.load(f)
