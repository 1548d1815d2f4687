"""Feature gates and API versions the DRA features the harness drives need, per Kubernetes
minor, so a cluster of any version of the matrix can run the scenarios its version allows
(dra-features.md §1 gate table and §1.1 "runtime-config needed"):

            DRADeviceTaints   DRADeviceTaintRules            DeviceTaintRule served as
  1.34      alpha, off        (none: under DRADeviceTaints)  resource.k8s.io/v1alpha3
  1.35      alpha, off        alpha, off                     resource.k8s.io/v1alpha3
  1.36      beta, on          beta, off                      resource.k8s.io/v1beta2
  1.37      GA                GA                             resource.k8s.io/v1

Every component gets the same gates (the scheduler filters tainted devices, the
kube-controller-manager evicts, the API server stores the fields); only the API server takes
the runtime config. Effect None needs 1.35 (the refdriver drops it before, taints.py).

DRAConsumableCapacity (EFA sharing, refdriver/sharing.py) is alpha and off in 1.34 and 1.35,
beta and on from 1.36 (dra-features.md §1.0); the kubelet needs it too for `share_id`.
DRAPartitionableDevices (NeuronCores as partitions, refdriver/partitions.py) likewise: alpha and
off in 1.34 (counters beside their devices) and 1.35 (counters in a slice of their own), beta and
on from 1.36; the API server and the scheduler need it. DRAExtendedResource (a pod asking for
`aws.amazon.com/neuron: 4` the device-plugin way is given devices through a claim the scheduler
makes; harness/platform/kit.py legacy_name) likewise: alpha and off in 1.34/1.35, on in 1.36,
GA in 1.37; every component needs it, the kubelet (our stand-in) included.

The beta DRA API versions (`resource.k8s.io/v1beta1`, `v1beta2`) are still served by 1.34-1.37,
but off by default (dra-api.md §1.1). Users' manifests still use them (AWS's published claim
templates are v1beta1), so a cluster serves them unless told not to (`beta_apis`), as EKS does:
"The Dynamic Resource Allocation beta Kubernetes API is enabled" (EKS release notes for 1.33,
docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions-standard.html; the notes of 1.34
and later record no change to it).
"""

from __future__ import annotations

import re

from . import bins

GATES: dict[str, dict[str, bool]] = {
    "1.34": {"DRADeviceTaints": True, "DRAConsumableCapacity": True, "DRAPartitionableDevices": True,
             "DRAExtendedResource": True},
    "1.35": {"DRADeviceTaints": True, "DRADeviceTaintRules": True, "DRAConsumableCapacity": True,
             "DRAPartitionableDevices": True, "DRAExtendedResource": True},
    "1.36": {"DRADeviceTaintRules": True},
    "1.37": {},
}
RUNTIME_CONFIG: dict[str, dict[str, str]] = {
    "1.34": {"resource.k8s.io/v1alpha3": "true"},
    "1.35": {"resource.k8s.io/v1alpha3": "true"},
    "1.36": {"resource.k8s.io/v1beta2": "true"},
    "1.37": {},
}


BETA_APIS: dict[str, list[str]] = {m: ["resource.k8s.io/v1beta1", "resource.k8s.io/v1beta2"]
                                   for m in ("1.34", "1.35", "1.36", "1.37")}
BETA_APIS_DEFAULT = True  # as EKS (module docstring)


def runtime_config(version: str | None, beta_apis: bool | None = None) -> dict[str, str]:
    """The API server's --runtime-config entries: the features' (RUNTIME_CONFIG) plus, unless
    `beta_apis` is False, the beta DRA versions the minor still ships."""
    minor = minor_of(version)
    out = dict(RUNTIME_CONFIG.get(minor, {}))
    if BETA_APIS_DEFAULT if beta_apis is None else beta_apis:
        out.update({v: "true" for v in BETA_APIS.get(minor, [])})
    return out


def minor_of(version: str | None) -> str:
    """'v1.36.3', '1.36' or None (the default version) -> '1.36'."""
    return ".".join((version or bins.versions()["K8S_DEFAULT"]).lstrip("v").split(".")[:2])


GATE_NAME_RE = re.compile(r"[A-Z][A-Za-z0-9]{1,80}\Z")


def check(extra: dict[str, bool] | None) -> None:
    """A name that is no gate name or a value that is no bool is refused: it would become part of
    every component's command line."""
    for k, v in (extra or {}).items():
        if not isinstance(k, str) or not GATE_NAME_RE.match(k) or not isinstance(v, bool):
            raise ValueError(f"feature gate {str(k)[:60]!r}={str(v)[:20]}: a gate name (CamelCase) and true or false")


def merged(version: str | None, extra: dict[str, bool] | None = None) -> dict[str, bool]:
    """The minor's gates and `extra` (a scenario's own) over them."""
    check(extra)
    return {**GATES.get(minor_of(version), {}), **(extra or {})}


def gate_flags(version: str | None, extra: dict[str, bool] | None = None) -> list[str]:
    gates = merged(version, extra)
    return [f"--feature-gates={','.join(f'{k}={str(v).lower()}' for k, v in sorted(gates.items()))}"] if gates else []


def runtime_config_flags(version: str | None, beta_apis: bool | None = None) -> list[str]:
    rc = runtime_config(version, beta_apis)
    return [f"--runtime-config={','.join(f'{k}={v}' for k, v in sorted(rc.items()))}"] if rc else []
