"""`make bench` section "repro": `capture` of an oracle-bug scenario (targets: <= 5 s) and its
`repro` in each mode, the cluster included (<= 60 s), on a trn1.32xlarge cluster whose Neuron
driver pairs devices with the wrong EFA (efa-shift)."""

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

    name = f"bench-repro-{uuid.uuid4().hex[:4]}"
    spec = ClusterSpec(name=name, nodes=parse_nodes("trn1.32xlarge", None, demo.BUG))
    c = LocalBackend().up(spec, artifacts / name, attached=True, timeout=300)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            kube = Kube(str(c.kubeconfig))
            demo.run_on(kube)
            t0 = time.monotonic()
            bundle = capture(kube, Path(tmp) / "b", c, log_dir=c.artifacts / "logs")
            out["capture_s"] = round(time.monotonic() - t0, 2)
        finally:
            LocalBackend().down(name)
        for mode in ("hardware", "slices"):
            r = repro(bundle, mode, artifacts, say=lambda s: None)
            out[f"repro_{mode}_s"] = r.seconds["total"]
            out[f"repro_{mode}"] = r.line()
    out["target"] = "capture <= 5 s; repro <= 60 s with the cluster; reproduced in both modes"
    return out
