"""The identity a local cluster gives each driver, and what that identity may do: a
least-privilege ClusterRole for the group every driver certificate carries, and admission
policies tying slice writes and claim status entries to the certificate's own node and driver
(research/dra-api.md §3.6)."""

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
         # A certificate user has no node association (only a service-account token bound to a
         # pod carries one), so on 1.36+ its status.devices writes are checked against the
         # arbitrary-node verbs (external-drivers.md L5); the policy below holds each driver to
         # its own node's entries instead, as associated-node does on a real node.
         {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims/driver"],
          "verbs": ["associated-node:update", "associated-node:patch", "arbitrary-node:update", "arbitrary-node:patch"]},
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
    # ... and only the status.devices entries of its own driver on its own node (pool = node):
    # every entry it adds or changes, and every entry it removes (dra-features.md §4.5 item 3).
    {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
     "metadata": {"name": "dra-harness-driver-claim-status"},
     "spec": {"failurePolicy": "Fail",
              "matchConstraints": {"resourceRules": [{"apiGroups": ["resource.k8s.io"], "apiVersions": ["*"],
                                                      "operations": ["UPDATE"], "resources": ["resourceclaims/status"]}]},
              "matchConditions": [{"name": "is-a-driver", "expression": "'dra-harness:drivers' in request.userInfo.groups"}],
              "variables": [
                  {"name": "new", "expression": "has(object.status) && has(object.status.devices) ? object.status.devices : []"},
                  {"name": "old", "expression": "has(oldObject.status) && has(oldObject.status.devices) ? "
                                                "oldObject.status.devices : []"},
                  {"name": "mine", "expression": "request.userInfo.username"}],
              "validations": [{"expression": "variables.new.all(d, variables.old.exists(o, o == d) || "
                                             "variables.mine == 'dra-driver:' + d.pool + ':' + d.driver) && "
                                             "variables.old.all(o, variables.new.exists(d, d == o) || "
                                             "variables.mine == 'dra-driver:' + o.pool + ':' + o.driver)",
                               "messageExpression": "'driver identity ' + request.userInfo.username + ' may write only "
                                                    "the status.devices entries of its own node and driver'",
                               "reason": "Forbidden"}]}},
    {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
     "metadata": {"name": "dra-harness-driver-claim-status"},
     "spec": {"policyName": "dra-harness-driver-claim-status", "validationActions": ["Deny"]}},
]
