"""Cluster backends behind one interface, laid out as kind lays out its providers
(`pkg/cluster/internal/providers`): each backend implements `Backend` (base.py), and `get(name)`
is the one place a backend is chosen by name. Everything else holds a `Cluster` handle and calls
through it, so nothing outside this registry branches on the backend's name.

Also here: what a cluster is made of (`spec`), driver profiles (`profiles`), control-plane
binaries (`bins`), child processes (`procs`), and clusters shared across test workers (`shared`).
"""

from __future__ import annotations

from .base import Backend, BackendError, StateError
from .handle import Cluster, NodeInfo

_REGISTRY = {
    "local": "harness.backends.local.backend:LocalBackend",
    "kind": "harness.backends.kind.backend:KindBackend",
    "existing": "harness.backends.existing:ExistingBackend",
}
NAMES = tuple(_REGISTRY)
DEFAULT = "local"


def get(name: str) -> Backend:
    """The backend called `name` (imported on first use: kind's code is not loaded for local runs)."""
    import importlib

    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r} (known: {', '.join(NAMES)})")
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["Backend", "BackendError", "StateError", "Cluster", "NodeInfo", "NAMES", "DEFAULT", "get"]
