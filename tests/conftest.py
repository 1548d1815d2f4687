"""Fixtures shared by the project's own tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fakedev

ROOT = Path(__file__).resolve().parent.parent

from fakedev import presets as _presets  # noqa: E402

PRESETS = _presets.names()
is_root = os.geteuid() == 0
needs_root = pytest.mark.skipif(not is_root, reason="needs root (mount namespaces, mknod)")


def needs_tool(name: str):
    return pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed (make debs)")


@pytest.fixture(scope="session")
def trees(tmp_path_factory) -> dict[str, Path]:
    """One rendered tree per preset, shared read-only by the session."""
    base = tmp_path_factory.mktemp("trees")
    out = {}
    for name in PRESETS:
        fakedev.generate(fakedev.load_preset(name), base / name)
        out[name] = base / name
    return out


@pytest.fixture
def tree(tmp_path) -> Path:
    """A private trn1.32xlarge tree a test may mutate."""
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), tmp_path / "node")
    return tmp_path / "node"


def cli(*args: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run a console entry point of this checkout as a user would."""
    exe = {"fakedev": "fakedev.cli", "refdriver": "refdriver.cli", "dra-harness": "harness.cli"}[args[0]]
    return subprocess.run([sys.executable, "-m", exe, *args[1:]], capture_output=True, text=True, check=check,
                          cwd=ROOT, **kw)


def bins_or_skip() -> None:
    """Skip a test that needs the control-plane binaries when they are not built."""
    from harness.backends import bins

    try:
        bins.ensure(None, build=False)
    except bins.BinsError as e:
        pytest.skip(str(e))


def local_cluster(tmp_path_factory, prefix: str, nodes: str, **spec):
    """A local cluster for a test module (attached to the test run), brought down afterwards;
    use as `yield from local_cluster(...)` in a module-scoped fixture."""
    import uuid

    from harness.backends.local.backend import LocalBackend
    from harness.backends.spec import ClusterSpec, parse_nodes

    bins_or_skip()
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    node_specs = parse_nodes(nodes, spec.pop("drivers", None), spec.pop("driver_args", None))
    c = LocalBackend().up(ClusterSpec(name=name, nodes=node_specs, **spec),
                          tmp_path_factory.mktemp(prefix), attached=True, timeout=120)
    try:
        yield c
    finally:
        LocalBackend().down(name)


@pytest.fixture(scope="module")
def docker_engine():
    """A Docker engine for a test module: one that answers, else one `dra-harness engine up`
    starts (and this fixture stops again); skipped where none can be had."""
    from harness.backends.kind import engine

    if engine.answers():
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("no Docker engine answers, and starting one needs root")
    started = engine.up(say=lambda s: None)
    try:
        yield
    finally:
        if started.dockerd:
            engine.down(say=lambda s: None)
