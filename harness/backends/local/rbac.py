"""The identity a local cluster gives each driver, and what that identity may do: a
least-privilege ClusterRole for the group every driver certificate carries, and an admission
policy tying slice writes to the certificate's own node and driver (research/dra-api.md §3.6)."""

from __future__ import annotations


def driver_subject(node: str, driver: str) -> tuple[str, list[str]]:
    """(user, groups) of a driver's client certificate."""
    return f"dra-driver:{node}:{driver}", ["dra-harness:drivers", f"dra-harness:driver:{driver}"]


# What a DRA driver needs and no more (research/dra-api.md §1.5, §3.6): slices (limited below to
# its own node and driver), reading claims, claim status and on 1.36+ the per-driver
# `resourceclaims/driver` associated-node verbs, events, DeviceClasses and its own Node (get).
DRIVER_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "dra-harness:driver"},
     "rules": [
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"],
          "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]},
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get", "list", "watch"]},
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims/status"], "verbs": ["get", "patch", "update"]},
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims/driver"],
          "verbs": ["associated-node:update", "associated-node:patch"]},
         {"apiGroups": ["resource.k8s.io"], "resources": ["deviceclasses"], "verbs": ["get", "list", "watch"]},
         {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
         {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
     ]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "dra-harness:driver"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "dra-harness:driver"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "dra-harness:drivers"}]},
    # A driver's identity is its certificate's CN, dra-driver:<node>:<driver>: it may write only
    # ResourceSlices of that node and driver, as upstream recommends (dra-api.md §3.6).
    {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
     "metadata": {"name": "dra-harness-driver-slices"},
     "spec": {"failurePolicy": "Fail",
              "matchConstraints": {"resourceRules": [{"apiGroups": ["resource.k8s.io"], "apiVersions": ["*"],
                                                      "operations": ["CREATE", "UPDATE", "DELETE"],
                                                      "resources": ["resourceslices"]}]},
              "matchConditions": [{"name": "is-a-driver", "expression": "'dra-harness:drivers' in request.userInfo.groups"}],
              "variables": [
                  {"name": "mayWriteNew", "expression": "request.operation == 'DELETE' || (has(object.spec.nodeName) && "
                   "request.userInfo.username == 'dra-driver:' + object.spec.nodeName + ':' + object.spec.driver)"},
                  {"name": "mayTouchOld", "expression": "request.operation == 'CREATE' || (has(oldObject.spec.nodeName) && "
                   "request.userInfo.username == 'dra-driver:' + oldObject.spec.nodeName + ':' + oldObject.spec.driver)"}],
              "validations": [{"expression": "variables.mayWriteNew && variables.mayTouchOld",
                               "messageExpression": "'driver identity ' + request.userInfo.username + ' may write only "
                                                    "the ResourceSlices of its own node and driver'",
                               "reason": "Forbidden"}]}},
    {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
     "metadata": {"name": "dra-harness-driver-slices"},
     "spec": {"policyName": "dra-harness-driver-slices", "validationActions": ["Deny"]}},
]
