"""A golden-path kit: one YAML file a platform team owns, read with the bounded loader and
validated field by field (one-line errors naming the field), rendered to Kubernetes objects.

Per class: its DeviceClasses (one per device kind, `gp-<class>-<kind>`, so quota can count them),
a ResourceClaimTemplate in each allowed team's namespaces, a ResourceQuota per team on
`<deviceclass>.deviceclass.resource.k8s.io/devices`, a ValidatingAdmissionPolicy denying claims
and templates of the class outside its teams (with a message naming the class and who may use
it), and a PriorityClass. Every object carries the class's terms (golden path, team, cost per
device-hour, priority) as labels, so `kubectl get -L` and cost tools see them on the claims too.

Legacy requests (`legacy_name: aws.amazon.com/neuron` or `vpc.amazonaws.com/efa`): the class's
DeviceClass of that kind gets the name as `extendedResourceName`, so a pod that asks for it by
count, the device-plugin way, is given that class's devices through a claim the scheduler makes
(no constraints: what alignment such pods lose is measured, harness/platform/metrics.py
legacy_alignment); the team's quota counts them under `requests.<name>` and
`requests.deviceclass.resource.kubernetes.io/<class>` too.

EFA sharing (`share_efa_with`, with `efa_share_gbps`): the classes of the one sharing group get
EFA DeviceClasses that select shareable EFAs and requests for a share of the bandwidth; every
other class asks for no share, which a sharing driver serves with the whole NIC (its default
share, refdriver/sharing.py). DRA cannot keep two groups apart on one NIC (a request cannot see
who else holds it), so the kit refuses a sharing rule it could not enforce."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fakedev import safeyaml

TEAM_LABEL = "dra-harness.io/team"
MAX_NAMESPACES = 1000
MAX_CLASSES = 100
MAX_CLASS_NAMESPACES = 5000
CLASS_LABEL = "dra-harness.io/golden-path"
COST_LABEL = "dra-harness.io/cost-per-device-hour"
PRIORITY_LABEL = "dra-harness.io/priority"
BANDWIDTH = "bandwidth"  # the shared EFA's capacity in the refdriver (refdriver/sharing.py), Gbit/s
# The device plugins' resource names a class may take legacy requests under (DeviceClass
# extendedResourceName, KEP-5004; dra-features.md §1.4): AWS's Neuron and EFA device plugins.
LEGACY_NAMES = {"aws.amazon.com/neuron": "neuron", "vpc.amazonaws.com/efa": "efa"}
EXTENDED_CLAIM_KEY = "requests.deviceclass.resource.kubernetes.io/"  # + class: the implicit name's quota key
DRIVERS = {"neuron": ("neuron.aws.com", None), "efa": ("dra.net", 'device.attributes["dra.net"].rdma == true')}
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?")
ATTR_RE = re.compile(r"[a-z0-9.-]+/[A-Za-z0-9_]+")


class KitError(ValueError):
    """A kit problem at a field path; str() is one line."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__("".join(c if c.isprintable() else "?" for c in f"{source}: {path}: {problem}"))


@dataclass
class Request:
    name: str
    device: str  # neuron | efa
    count: int | None  # None: all
    logical_neuron_core: int | None = None


@dataclass
class GoldenPath:
    name: str
    requests: list[Request]
    constraints: list[tuple[list[str], str]]  # (requests, attribute)
    teams: list[str]
    quota: dict[str, int]
    cost_per_device_hour: float
    priority: int
    share_efa_with: list[str] = field(default_factory=list)
    efa_share_gbps: int | None = None
    legacy_name: str | None = None  # pods asking this device-plugin resource by count get this class's devices

    def labels(self, team: str | None = None) -> dict[str, str]:
        """The class's terms as labels (values are label-safe: names, integers, decimals)."""
        cost = f"{self.cost_per_device_hour:.6f}".rstrip("0").rstrip(".")
        out = {CLASS_LABEL: self.name, COST_LABEL: cost, PRIORITY_LABEL: str(self.priority)}
        return {**out, TEAM_LABEL: team} if team else out

    @property
    def shares_efa(self) -> bool:
        return bool(self.share_efa_with)

    def device_class(self, kind: str) -> str:
        return f"gp-{self.name}-{kind}"

    def neuron_devices(self, whole_node: int) -> int:
        """Neuron devices the class allocates; a request for `all` counts `whole_node`."""
        return sum(whole_node if r.count is None else r.count for r in self.requests if r.device == "neuron")


@dataclass
class Kit:
    name: str
    teams: dict[str, list[str]]  # team -> namespaces
    classes: dict[str, GoldenPath]


def _map(obj, path: str, src: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise KitError(src, path, f"expected a mapping, got {type(obj).__name__}")
    for k in obj:
        if k not in allowed:
            raise KitError(src, f"{path}.{k}" if path else str(k)[:40], f"unknown key (allowed: {', '.join(sorted(allowed))})")
    for k in sorted(required - set(obj)):
        raise KitError(src, f"{path}.{k}" if path else k, "required key is missing")
    return obj


def _name(obj, path: str, src: str) -> str:
    if not isinstance(obj, str) or not NAME_RE.fullmatch(obj):
        raise KitError(src, path, "a DNS label of at most 42 characters is required")
    return obj


def _int(obj, path: str, src: str, lo: int, hi: int) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int) or not lo <= obj <= hi:
        raise KitError(src, path, f"an integer in {lo}..{hi} is required")
    return obj


def _names(obj, path: str, src: str) -> list[str]:
    if not isinstance(obj, list):
        raise KitError(src, path, "a list of names is required")
    return [_name(x, f"{path}[{i}]", src) for i, x in enumerate(obj)]


def load(path: str | Path) -> Kit:
    src = str(path)
    try:
        data = safeyaml.load_file(path)
    except safeyaml.YamlLimitError as e:
        raise KitError(e.source, e.where, e.problem) from None
    d = _map(data, "", src, {"kit", "teams", "classes"}, {"kit", "teams", "classes"})
    teams = {}
    owner: dict[str, str] = {}
    for t, spec in _map(d["teams"], "teams", src, set(d["teams"]) if isinstance(d["teams"], dict) else set()).items():
        _name(t, f"teams.{str(t)[:40]}", src)
        spec = _map(spec, f"teams.{t}", src, {"namespaces"}, {"namespaces"})
        teams[t] = _names(spec["namespaces"], f"teams.{t}.namespaces", src)
        for ns in teams[t]:  # a namespace carries one team label: two teams would fight over it (row 28)
            if ns in owner:
                raise KitError(src, f"teams.{t}.namespaces", f"namespace {ns!r} is already team {owner[ns]!r}'s")
            owner[ns] = t
    if len(owner) > MAX_NAMESPACES:
        raise KitError(src, "teams", f"{len(owner)} namespaces; a kit may name at most {MAX_NAMESPACES}")
    if isinstance(d["classes"], dict) and len(d["classes"]) > MAX_CLASSES:
        raise KitError(src, "classes", f"{len(d['classes'])} classes; a kit may define at most {MAX_CLASSES}")
    classes = {}
    cls_map = d["classes"] if isinstance(d["classes"], dict) else None
    if cls_map is None:
        raise KitError(src, "classes", "expected a mapping of class name -> class")
    for cname, c in cls_map.items():
        p = f"classes.{str(cname)[:40]}"
        _name(cname, p, src)
        c = _map(c, p, src, {"requests", "constraints", "teams", "quota", "cost_per_device_hour", "priority",
                             "share_efa_with", "efa_share_gbps", "legacy_name"},
                 {"requests", "teams", "cost_per_device_hour", "priority"})
        reqs = []
        if not isinstance(c["requests"], list) or not c["requests"]:
            raise KitError(src, f"{p}.requests", "a non-empty list is required")
        for i, r in enumerate(c["requests"]):
            rp = f"{p}.requests[{i}]"
            r = _map(r, rp, src, {"name", "device", "count", "all", "logical_neuron_core"}, {"name", "device"})
            if r["device"] not in DRIVERS:
                raise KitError(src, f"{rp}.device", f"one of {', '.join(DRIVERS)}")
            if "all" in r and r["all"] is not True:  # "no" is a truthy string (row 24)
                raise KitError(src, f"{rp}.all", f"only `all: true` (unquoted) is meaningful, got {r['all']!r:.40}")
            if ("count" in r) == ("all" in r):
                raise KitError(src, rp, "exactly one of count or all: true")
            lnc = r.get("logical_neuron_core")
            if lnc is not None and (isinstance(lnc, bool) or r["device"] != "neuron" or lnc not in (1, 2)):
                raise KitError(src, f"{rp}.logical_neuron_core", "1 or 2, for neuron devices only")
            reqs.append(Request(_name(r["name"], f"{rp}.name", src), r["device"],
                                _int(r["count"], f"{rp}.count", src, 1, 64) if "count" in r else None, lnc))
        names = {r.name for r in reqs}
        if len(names) < len(reqs):  # the API refuses the template (row 25): so does the kit
            dup = next(r.name for i, r in enumerate(reqs) if r.name in {x.name for x in reqs[:i]})
            raise KitError(src, f"{p}.requests", f"request name {dup!r} is used twice")
        cons = []
        for i, k in enumerate(c.get("constraints") or []):
            kp = f"{p}.constraints[{i}]"
            k = _map(k, kp, src, {"requests", "match"}, {"requests", "match"})
            rs = _names(k["requests"], f"{kp}.requests", src)
            if set(rs) - names:
                raise KitError(src, f"{kp}.requests", f"unknown request(s) {sorted(set(rs) - names)}")
            if not isinstance(k["match"], str) or not ATTR_RE.fullmatch(k["match"]):
                raise KitError(src, f"{kp}.match", "a qualified attribute name like resource.aws.com/devicegroup4_id")
            cons.append((rs, k["match"]))
        cteams = _names(c["teams"], f"{p}.teams", src)
        for t in cteams:
            if t not in teams:
                raise KitError(src, f"{p}.teams", f"unknown team {t!r} (teams: {', '.join(teams)})")
        quota = {}
        for t, n in _map(c.get("quota") or {}, f"{p}.quota", src, set(cteams)).items():
            quota[t] = _int(n, f"{p}.quota.{t}", src, 0, 100_000)
        cost = c["cost_per_device_hour"]
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not 0 <= cost <= 10_000:
            raise KitError(src, f"{p}.cost_per_device_hour", "a number in 0..10000 is required")
        share = _names(c.get("share_efa_with") or [], f"{p}.share_efa_with", src)
        gbps = _int(c["efa_share_gbps"], f"{p}.efa_share_gbps", src, 1, 3200) if "efa_share_gbps" in c else None
        if share and gbps is None:
            raise KitError(src, f"{p}.efa_share_gbps", "required with share_efa_with: the bandwidth (Gbit/s) of "
                           "the EFA share each claim of the class takes")
        if gbps is not None and not share:
            raise KitError(src, f"{p}.efa_share_gbps", "only meaningful with share_efa_with")
        if share and not any(r.device == "efa" for r in reqs):
            raise KitError(src, f"{p}.share_efa_with", "the class requests no EFA to share")
        legacy = c.get("legacy_name")
        if legacy is not None:
            if not isinstance(legacy, str) or legacy not in LEGACY_NAMES:
                raise KitError(src, f"{p}.legacy_name", f"one of {', '.join(LEGACY_NAMES)} (the device plugins' names)")
            if LEGACY_NAMES[legacy] not in {r.device for r in reqs}:
                raise KitError(src, f"{p}.legacy_name", f"{legacy} asks for {LEGACY_NAMES[legacy]} devices, which the "
                               "class does not request")
            other = next((o for o in classes.values() if o.legacy_name == legacy), None)
            if other is not None:  # the scheduler would pick the newest class: the kit says which instead
                raise KitError(src, f"{p}.legacy_name", f"{legacy} is already class {other.name!r}'s: one class per name")
        classes[cname] = GoldenPath(cname, reqs, cons, cteams, quota, float(cost),
                                    _int(c["priority"], f"{p}.priority", src, 0, 1_000_000_000), share, gbps, legacy)
    objects = sum(len(teams[t]) for g in classes.values() for t in g.teams)  # a template (and quota) per class x namespace
    if objects > MAX_CLASS_NAMESPACES:  # bounded before rendering: 50 x 1000 took 51 s, more ran out of memory (row 31)
        raise KitError(src, "classes", f"{objects} class x namespace pairs; a kit may have at most {MAX_CLASS_NAMESPACES}")
    _check_sharing(classes, src)
    return Kit(_name(d["kit"], "kit", src), teams, classes)


def _check_sharing(classes: dict[str, GoldenPath], src: str) -> None:
    """The sharing rule must be one group whose members all name one another: anything else
    asks DRA to keep sharers apart, which it cannot (module docstring)."""
    group = {g.name for g in classes.values() if g.shares_efa}
    for g in classes.values():
        where = f"classes.{g.name}.share_efa_with"
        for other in g.share_efa_with:
            if other not in classes:
                raise KitError(src, where, f"unknown class {other!r}")
            if other != g.name and g.name not in classes[other].share_efa_with:
                raise KitError(src, where, f"{other!r} does not name {g.name!r} back: sharing a NIC is mutual")
        missing = sorted(group - set(g.share_efa_with) - {g.name}) if g.shares_efa else []
        if missing:
            raise KitError(src, where, f"does not name {', '.join(map(repr, missing))}, which also share EFAs: DRA "
                           "cannot keep two sharing groups apart on one NIC, so a kit has one group whose "
                           "classes all name one another")


def device_classes(g: GoldenPath) -> list[dict]:
    out = []
    for kind in sorted({r.device for r in g.requests}):
        driver, extra = DRIVERS[kind]
        expr = f'device.driver == "{driver}"' + (f" && {extra}" if extra else "")
        if kind == "efa" and g.shares_efa:  # only EFAs the driver publishes as shareable
            expr += " && device.allowMultipleAllocations == true"
        lnc = next((r.logical_neuron_core for r in g.requests if r.device == kind and r.logical_neuron_core), None)
        spec: dict = {"selectors": [{"cel": {"expression": expr}}]}
        if g.legacy_name and LEGACY_NAMES[g.legacy_name] == kind:  # legacy pods' special claims come here
            spec["extendedResourceName"] = g.legacy_name
        if lnc:
            spec["config"] = [{"opaque": {"driver": driver, "parameters": {
                "apiVersion": "neuron.aws.com/v1", "kind": "NeuronConfig", "logicalNeuronCore": lnc}}}]
        out.append({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                    "metadata": {"name": g.device_class(kind), "labels": g.labels()}, "spec": spec})
    return out


def claim_spec(g: GoldenPath) -> dict:
    reqs = []
    for r in g.requests:
        ex: dict = {"deviceClassName": g.device_class(r.device)}
        if r.count is None:
            ex["allocationMode"] = "All"
        else:
            ex["count"] = r.count
        if r.device == "efa" and g.shares_efa:
            ex["capacity"] = {"requests": {BANDWIDTH: f"{g.efa_share_gbps}G"}}
        reqs.append({"name": r.name, "exactly": ex})
    return {"devices": {"requests": reqs,
                        "constraints": [{"requests": rs, "matchAttribute": a} for rs, a in g.constraints]}}


def _access_policy(g: GoldenPath, teams: list[str]) -> list[dict]:
    classes = [g.device_class(k) for k in sorted({r.device for r in g.requests})]
    # every route to the class: an `exactly` request, or any firstAvailable subrequest (in a claim,
    # a template, or the scheduler's claim for an extended resource); probe 2 rows 121-126
    listed = "[" + ", ".join(f"'{c}'" for c in classes) + "]"
    uses = (f"(has(r.exactly) && r.exactly.deviceClassName in {listed}) || "
            f"(has(r.firstAvailable) && r.firstAvailable.exists(s, s.deviceClassName in {listed}))")
    allowed = "[" + ", ".join(f"'{t}'" for t in g.teams) + "]"
    name = f"gp-{g.name}-access"
    team = f"namespaceObject.metadata.?labels[?'{TEAM_LABEL}'].orValue('')"
    return _claim_policy(name, g.name, f"!variables.requests.exists(r, {uses}) || {team} in {allowed}",
                         f"'golden path {g.name} is for teams {', '.join(g.teams)}; "
                         f"namespace ' + namespaceObject.metadata.name + ' belongs to team \"' + {team} + '\"'")


def _claim_policy(name: str, label: str, expression: str, message: str) -> list[dict]:
    """A ValidatingAdmissionPolicy over the requests of ResourceClaims and their templates, and
    its Deny binding."""
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name, "labels": {CLASS_LABEL: label}},
         "spec": {"failurePolicy": "Fail",
                  "matchConstraints": {"resourceRules": [{"apiGroups": ["resource.k8s.io"], "apiVersions": ["*"],
                                                          "operations": ["CREATE", "UPDATE"],
                                                          "resources": ["resourceclaims", "resourceclaimtemplates"]}]},
                  "variables": [{"name": "requests", "expression":
                                 "object.kind == 'ResourceClaimTemplate' ? object.spec.spec.devices.requests "
                                 ": object.spec.devices.requests"}],
                  "validations": [{"expression": expression, "messageExpression": message, "reason": "Forbidden"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name, "labels": {CLASS_LABEL: label}},
         "spec": {"policyName": name, "validationActions": ["Deny"]}},
    ]


RESERVED_POLICY = "gp-only-golden-paths"


def _golden_paths_only(kit: Kit) -> list[dict]:
    """In a team's namespace, every request names one of the kit's DeviceClasses: the classes
    drivers ship (`neuron.aws.com`, `dra.net`, any other driver's) and their extended-resource
    names (`deviceclass.resource.kubernetes.io/<class>`, whose claim the scheduler creates and
    admission sees) are reserved, or a team would walk around its golden paths and their quota
    (probe 2 rows 124, 131). Namespaces outside the kit's teams are not the platform's and keep
    the driver classes (the harness's own test namespaces use them)."""
    mine = sorted({g.device_class(k) for g in kit.classes.values() for k in {r.device for r in g.requests}})
    listed = "[" + ", ".join(f"'{c}'" for c in mine) + "]"
    teams = "[" + ", ".join(f"'{t}'" for t in sorted(kit.teams)) + "]"
    team = f"namespaceObject.metadata.?labels[?'{TEAM_LABEL}'].orValue('')"
    other = (f"(has(r.exactly) && !(r.exactly.deviceClassName in {listed})) || "
             f"(has(r.firstAvailable) && r.firstAvailable.exists(s, !(s.deviceClassName in {listed})))")
    name = f"{RESERVED_POLICY}-{kit.name}"[:200].rstrip("-.")  # one per kit: applying one kit never rewrites another's
    return _claim_policy(name, RESERVED_POLICY, f"!({team} in {teams}) || !variables.requests.exists(r, {other})",
                         f"'namespace ' + namespaceObject.metadata.name + ' belongs to team \"' + {team} + "
                         f"'\" of kit {kit.name}: requests must name a golden path DeviceClass ({', '.join(mine)}); "
                         f"driver DeviceClasses are reserved'")


def render(kit: Kit) -> list[dict]:
    """Every object of the kit, in an order `kubectl apply` accepts."""
    out: list[dict] = []
    for team, nss in kit.teams.items():
        for ns in nss:
            out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {TEAM_LABEL: team}}})
    out += _golden_paths_only(kit)
    for g in kit.classes.values():
        out += device_classes(g)
        out.append({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": f"gp-{g.name}", "labels": g.labels()}, "value": g.priority,
                    "description": f"golden path {g.name}", "preemptionPolicy": "PreemptLowerPriority"})
        out += _access_policy(g, g.teams)
        for team in g.teams:
            for ns in kit.teams[team]:
                out.append({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                            "metadata": {"name": g.name, "namespace": ns, "labels": g.labels(team)},
                            "spec": {"metadata": {"labels": g.labels(team)},  # on every claim made from it
                                     "spec": claim_spec(g)}})
                if team in g.quota:
                    hard = {f"{g.device_class(k)}.deviceclass.resource.k8s.io/devices": str(g.quota[team])
                            for k in sorted({r.device for r in g.requests})}
                    if g.legacy_name:  # the same devices asked the device-plugin way, by either name
                        legacy_class = g.device_class(LEGACY_NAMES[g.legacy_name])
                        hard[f"requests.{g.legacy_name}"] = str(g.quota[team])
                        hard[EXTENDED_CLAIM_KEY + legacy_class] = str(g.quota[team])
                    out.append({"apiVersion": "v1", "kind": "ResourceQuota",
                                "metadata": {"name": f"gp-{g.name}", "namespace": ns, "labels": {CLASS_LABEL: g.name}},
                                "spec": {"hard": hard}})
    return out
