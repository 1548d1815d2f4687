"""The reference drivers' image built without a registry (clusters/kind/driver-image.sh: the
debootstrap base with Debian's python3, wheels from PyPI), started with testcontainers, a fake
tree mounted read-only: the slices it would publish (--dry-run) equal the host's, byte for byte.
Needs a Docker engine (`dra-harness engine up`); the base build is cached by content."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import pytest

import fakedev

from .conftest import ROOT

IMAGE = "localhost/dra-harness-refdriver:dev"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image(docker_engine):
    # testcontainers' reaper (Ryuk) is an image from a registry; containers here are removed by
    # their context managers instead
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    pytest.importorskip("testcontainers")
    r = subprocess.run([str(ROOT / "clusters/kind/driver-image.sh"), IMAGE], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


@pytest.mark.parametrize("kind", ["neuron", "efa"])
def test_the_image_publishes_what_the_host_publishes(image, kind, tmp_path):
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    tree = tmp_path / "tree"
    topo = fakedev.load_preset("trn2.48xlarge")
    fakedev.generate(topo, tree)
    host = subprocess.run([sys.executable, "-m", "refdriver.cli", kind, "--sysfs-root", str(tree), "--dry-run"],
                          capture_output=True, text=True, check=True).stdout
    container = (DockerContainer(image).with_volume_mapping(str(tree), "/tree", "ro")
                 .with_command(f"{kind} --sysfs-root /tree --dry-run")
                 .waiting_for(LogMessageWaitStrategy(re.compile(r"^\]", re.M))))  # the end of the JSON list
    with container:
        out, _ = container.get_logs()
        state = container.get_wrapped_container()
        state.reload()
        assert state.attrs["HostConfig"]["Binds"] == [f"{tree}:/tree:ro"]
    slices = json.loads(out)
    assert sum(len(s["spec"]["devices"]) for s in slices) == len(topo.neuron if kind == "neuron" else topo.efa) > 0
    assert out == host.encode()
