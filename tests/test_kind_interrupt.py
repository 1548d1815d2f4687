"""Ctrl-C during `dra-harness up --backend kind` leaves nothing behind: no node containers, no
kind state, the host sysctls as they were. Interrupted at two points: while kind creates the node
containers, and after the nodes are up (the drivers installing). The signal goes to the whole
process group, as a terminal's Ctrl-C does, so kind and helm get it too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.backends import bins
from harness.backends.kind.backend import IMAGE, KindBackend, _read_sysctls, node_containers, node_image, state_dir

from .conftest import ROOT, bins_or_skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(docker_engine):
    """The node and driver images, built before any test's clock starts: from cold caches they
    take minutes (debootstrap, Go builds), which no interrupt point should have to wait out."""
    bins_or_skip()
    _, offline = node_image(None, "auto", say=lambda s: None)
    if offline:
        cmd = [str(bins.ROOT / "clusters/kind/driver-image.sh"), IMAGE]
    else:
        cmd = ["docker", "build", "-f", str(bins.ROOT / "deploy/Dockerfile"), "-t", IMAGE, str(bins.ROOT)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, f"building {IMAGE} failed: {r.stderr[-2000:]}"


@pytest.mark.parametrize("point", ["creating-nodes", "installing-drivers"])
def test_ctrl_c_during_kind_up_leaves_nothing(images, tmp_path, point):
    name = f"kc-{uuid.uuid4().hex[:5]}"
    try:
        _interrupt_at(point, name, tmp_path)
    finally:  # red or green, nothing of this test stays: its process group, its containers, its state
        KindBackend().down(name)
        assert node_containers(name) == [], "node containers left after down"


def _interrupt_at(point: str, name: str, tmp_path: Path) -> None:
    before = _read_sysctls()
    env = {**os.environ, "DRA_HARNESS_SKIP_IMAGE_BUILD": "1"} if point == "creating-nodes" else dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--backend", "kind", "--name", name,
                             "--nodes", "trn1.2xlarge", "--artifacts", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        reached = (lambda: node_containers(name)) if point == "creating-nodes" else (lambda: (tmp_path / "kubeconfig").exists())
        end = time.monotonic() + 300  # the images are built already: only kind's own work is timed
        while not reached():
            assert proc.poll() is None, f"up ended before {point}: {proc.stdout.read()}"
            assert time.monotonic() < end, f"never reached {point}"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:  # the test failed before the interrupt did its work
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert node_containers(name) == [], out
    assert not state_dir(name).exists()
    assert _read_sysctls() == before
    status = subprocess.run([sys.executable, "-m", "harness.cli", "status", "--backend", "kind", "--name", name],
                            cwd=ROOT, capture_output=True, text=True)
    assert "absent" in status.stdout + status.stderr, status
