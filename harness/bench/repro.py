"""`make bench` section "repro": `capture` of an oracle-bug scenario (targets: <= 5 s) and its
`repro` in each mode, the cluster included (<= 60 s), on a trn1.32xlarge cluster whose Neuron
driver pairs devices with the wrong EFA (efa-shift)."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

SEL = "device.attributes['neuron.aws.com'].deviceId == 1"


def run(artifacts: Path) -> dict:
    from ..backends.local.backend import LocalBackend
    from ..backends.spec import ClusterSpec, parse_nodes
    from ..kube import Kube
    from ..repro.capture import capture
    from ..repro.repro import repro

    name = f"bench-repro-{uuid.uuid4().hex[:4]}"
    spec = ClusterSpec(name=name, nodes=parse_nodes("trn1.32xlarge", None, {"refdriver-neuron": ["--inject-bug=efa-shift"]}))
    c = LocalBackend().up(spec, artifacts / name, attached=True, timeout=300)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            kube = Kube(str(c.kubeconfig))
            kube.create_namespace("team-a")
            kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                        "metadata": {"name": "paired", "namespace": "team-a"},
                        "spec": {"devices": {"requests": [
                            {"name": "neuron", "exactly": {"deviceClassName": "neuron.aws.com",
                                                           "selectors": [{"cel": {"expression": SEL}}]}},
                            {"name": "efa", "exactly": {"deviceClassName": "efa.networking.k8s.aws"}}],
                            "constraints": [{"requests": ["neuron", "efa"],
                                             "matchAttribute": "resource.aws.com/devicegroup1_id"}]}}})
            kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a"},
                        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}],
                                 "resourceClaims": [{"name": "d", "resourceClaimName": "paired"}]}})
            kube.wait("ResourceClaim", lambda o: bool(((o or {}).get("status") or {}).get("allocation")),
                      namespace="team-a", name="paired", timeout=30, what="claim allocated")
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
