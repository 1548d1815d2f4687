"""`make bench` section "conform": the report card's run time for each reference driver profile
on the local backend, the cluster included (target: <= 3 min each), and whether it passed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ..backends.bins import ROOT

PROFILES = {"refdriver-neuron": ["--driver-arg", "refdriver-neuron=--extended-attributes"], "refdriver-efa": [],
            "refdriver-efa-shared": [], "refdriver-neuron-partitioned": []}


def run(artifacts: Path) -> dict:
    out: dict = {}
    for prof, extra in PROFILES.items():
        art = artifacts / f"conform-{prof}"
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "harness.cli", "conform", "--driver", prof, "--artifacts", str(art),
                            *extra], cwd=ROOT, capture_output=True, text=True, timeout=900)
        last = (r.stdout.strip().splitlines() or [""])[-2] if r.stdout.strip() else r.stderr[-200:]
        out[prof] = {"seconds": round(time.monotonic() - t0, 1), "card": last}
    out["target"] = "each card <= 180 s on the local backend; every applicable check PASS"
    return out
