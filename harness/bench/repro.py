"""`make bench` section "repro": for every oracle-bug scenario (harness/repro/demo.py, the
driver bugs of e2e/test_oracle_catches_bugs.py), `capture` of its cluster (target: <= 5 s) and
`repro` of the bundle in each mode, the cluster included (target: <= 60 s), and how many of
them reproduce (target: all)."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path


def run(artifacts: Path) -> dict:
    from ..backends.local.backend import LocalBackend
    from ..backends.spec import ClusterSpec, parse_nodes
    from ..kube import Kube
    from ..repro import demo
    from ..repro.capture import capture
    from ..repro.repro import repro

    out: dict = {"scenarios": {}}
    for bug, scenario in demo.SCENARIOS.items():
        name = f"bench-repro-{uuid.uuid4().hex[:4]}"
        spec = ClusterSpec(name=name, nodes=parse_nodes("trn1.32xlarge", None, scenario.driver_args))
        c = LocalBackend().up(spec, artifacts / name, attached=True, timeout=300)
        one: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                kube = Kube(str(c.kubeconfig))
                demo.run_on(kube, scenario=scenario, cluster=c)
                t0 = time.monotonic()
                bundle = capture(kube, Path(tmp) / "b", c, log_dir=c.artifacts / "logs")
                one["capture_s"] = round(time.monotonic() - t0, 2)
            finally:
                LocalBackend().down(name)
            for mode in ("hardware", "slices"):
                r = repro(bundle, mode, artifacts, say=lambda s: None)
                one[f"repro_{mode}_s"] = r.seconds["total"]
                one[f"repro_{mode}"] = r.line()
                one.setdefault("reproduced", 0)
                one["reproduced"] += int(r.reproduced)
        out["scenarios"][bug] = one
    runs = out["scenarios"].values()
    out["reproduced"] = f"{sum(o['reproduced'] for o in runs)} of {2 * len(out['scenarios'])} (scenarios x modes)"
    out["capture_s_max"] = max(o["capture_s"] for o in runs)
    out["repro_s_max"] = max(max(o["repro_hardware_s"], o["repro_slices_s"]) for o in runs)
    out["target"] = "capture <= 5 s; repro <= 60 s with the cluster; every bundle reproduced in both modes"
    return out
