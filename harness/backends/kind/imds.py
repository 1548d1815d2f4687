"""A fake IMDSv2 inside every kind worker, as the local backend has in each node's namespace.

Why a host-network pod: a kind node has no Python, and the service must live as long as the
node, not as long as the `up` process. So each worker gets 169.254.169.254/32 on its loopback
(`ip addr` in the node, once at up) and a DaemonSet pod of the drivers' image, in the node's
network namespace, serves `harness.backends.imds` there on port 80. Drivers with hostNetwork
reach it directly; pod-network containers reach it through their default route to the node, as
on EC2 where the link-local address answers from every network namespace of the instance.
The answers (instance type, MACs, node IP) are computed on the host from each node's fakedev
tree and handed over in a ConfigMap, one key per Kubernetes node.
"""

from __future__ import annotations

import json


NAMESPACE = "dra-harness"
NAME = "dra-harness-imds"
ADDR = "169.254.169.254"


def add_address_script() -> str:
    """Shell run in a kind node: the link-local address on loopback, once."""
    return f"ip addr show dev lo | grep -q ' {ADDR}/32' || ip addr add {ADDR}/32 dev lo"


def manifests(image: str, data: dict[str, dict]) -> list[dict]:
    """The ConfigMap with every node's answers and the DaemonSet serving them (least privilege:
    no service account token, no capabilities beyond binding port 80 as root in the pod)."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "dra-harness"}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
          "data": {"nodes.json": json.dumps(data)}}
    pod = {"hostNetwork": True, "automountServiceAccountToken": False, "priorityClassName": "system-node-critical",
           "nodeSelector": {"dra-harness.io/fake": "true"}, "terminationGracePeriodSeconds": 1,
           "containers": [{
               "name": "imds", "image": image, "imagePullPolicy": "IfNotPresent",
               "command": ["python3", "-m", "harness.backends.imds", "--data", "/etc/imds/nodes.json",
                           "--node", "$(NODE_NAME)", "--listen", f"{ADDR}:80"],
               "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
               "securityContext": {"allowPrivilegeEscalation": False,
                                   "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
               "readinessProbe": {"tcpSocket": {"host": ADDR, "port": 80}, "periodSeconds": 2},
               "resources": {"requests": {"cpu": "5m", "memory": "32Mi"}, "limits": {"memory": "96Mi"}},
               "volumeMounts": [{"name": "data", "mountPath": "/etc/imds", "readOnly": True}]}],
           "volumes": [{"name": "data", "configMap": {"name": NAME}}]}
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
          "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                   "template": {"metadata": {"labels": labels}, "spec": pod}}}
    return [cm, ds]


def ready(ds: dict | None) -> bool:
    st = (ds or {}).get("status") or {}
    return st.get("desiredNumberScheduled", 0) > 0 and st.get("numberReady") == st.get("desiredNumberScheduled")
