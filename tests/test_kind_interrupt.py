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

from harness.backends.kind.backend import _read_sysctls, node_containers, state_dir

from .conftest import ROOT, bins_or_skip

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["creating-nodes", "installing-drivers"])
def test_ctrl_c_during_kind_up_leaves_nothing(docker_engine, tmp_path, point):
    bins_or_skip()
    name = f"kc-{uuid.uuid4().hex[:5]}"
    before = _read_sysctls()
    env = {**os.environ, "DRA_HARNESS_SKIP_IMAGE_BUILD": "1"} if point == "creating-nodes" else dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--backend", "kind", "--name", name,
                             "--nodes", "trn1.2xlarge", "--artifacts", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    reached = (lambda: node_containers(name)) if point == "creating-nodes" else (lambda: (tmp_path / "kubeconfig").exists())
    end = time.monotonic() + 300
    while not reached():
        assert proc.poll() is None, f"up ended before {point}: {proc.stdout.read()}"
        assert time.monotonic() < end, f"never reached {point}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert node_containers(name) == [], out
    assert not state_dir(name).exists()
    assert _read_sysctls() == before
    status = subprocess.run([sys.executable, "-m", "harness.cli", "status", "--backend", "kind", "--name", name],
                            cwd=ROOT, capture_output=True, text=True)
    assert "absent" in status.stdout + status.stderr, status
