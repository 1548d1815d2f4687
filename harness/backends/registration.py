"""Which plugins a node's kubelet has registered, as its own metrics say: the plugin manager's
`plugin_manager_total_plugins{socket_path, state="actual_state_of_world"}` gauge (kubelet
pkg/kubelet/pluginmanager/metrics), read through the API server's node proxy. Backends with a
real kubelet (kind, existing clusters) answer from it; the local backend asks its stand-in."""

from __future__ import annotations

import re

_SERIES = re.compile(r'^plugin_manager_total_plugins\{([^}]*)\}\s+([0-9.eE+-]+)\s*$', re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def registered_sockets(metrics_text: str) -> list[str]:
    """The socket paths in the plugin manager's actual state of the world (registered plugins)."""
    out = []
    for labels, value in _SERIES.findall(metrics_text):
        lab = dict(_LABEL.findall(labels))
        if lab.get("state") == "actual_state_of_world" and float(value) >= 1 and lab.get("socket_path"):
            out.append(lab["socket_path"])
    return sorted(out)


def from_kubelet(kube, node: str) -> list[str]:
    """The registered plugins' socket names (`<driver>-reg.sock` for the kubeletplugin library) of
    `node`'s kubelet."""
    text = kube.raw(f"/api/v1/nodes/{node}/proxy/metrics").decode("utf-8", "replace")
    return [p.rpartition("/")[2] for p in registered_sockets(text)]


def names(driver: str, registered: list[str]) -> bool:
    """Whether a registered plugin name or socket is `driver`'s (`driver`, `driver-reg.sock`,
    `driver.sock`)."""
    return any(r == driver or r.startswith(f"{driver}-") or r == f"{driver}.sock" for r in registered)
