"""pytest plugin of dra-harness (entry point `pytest11`): options and markers.

Fixtures and hooks that boot clusters live in harness.fixtures and are registered here.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("dra-harness", "DRA driver end-to-end harness")
    g.addoption("--backend", default=None, choices=["local", "kind", "existing"],
                help="cluster backend for e2e tests (default: local)")
    g.addoption("--k8s-version", default=None, help="Kubernetes version, e.g. 1.36 (default: the pinned default)")
    g.addoption("--nodes", default=None,
                help="comma-separated presets or spec files, one per node (default: trn1.32xlarge,trn2.48xlarge)")
    g.addoption("--keep-cluster", action="store_true", help="leave the cluster running after the session")
    g.addoption("--artifacts", default=None, help="directory for logs, failure bundles and reports")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(*presets, nodes=N): the cluster this test needs")
    config.addinivalue_line("markers", "k8s(min=None, max=None): Kubernetes versions this test applies to")
