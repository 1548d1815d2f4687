"""`make bench --only soak`: random claims, pods, hotplug and driver restarts on 2 nodes for a
bounded time, then the count of what was lost and what the oracle judged wrong, and whether
the cluster's processes, fds and memory stayed flat.

Every action is bounded: at most MAX_LIVE pods exist at once, one action per STEP seconds, and
the run stops at its deadline. A claim is "lost" when its pod was allocated devices but never
ran within LOST_AFTER seconds, or when the claim vanished while its pod still existed."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

from ..backends.local import backend as localbackend
from ..backends.local.backend import LocalBackend
from ..backends.spec import ClusterSpec, parse_nodes
from ..judge.oracle import judge
from ..kube import Kube, retrying

NODES = "trn1.32xlarge,trn1.32xlarge"
MAX_LIVE, STEP, LOST_AFTER = 12, 0.25, 60.0
SIZES = (1, 2, 4)  # Neuron devices a claim asks for; 4 with devicegroup4 alignment


def _claim_pod(ns: str, name: str, n: int) -> list[dict]:
    ex = {"deviceClassName": "neuron.aws.com", "count": n}
    cons = [{"requests": ["n"], "matchAttribute": "resource.aws.com/devicegroup4_id"}] if n == 4 else []
    return [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": ns},
             "spec": {"devices": {"requests": [{"name": "n", "exactly": ex}], "constraints": cons}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
             "spec": {"terminationGracePeriodSeconds": 0, "resourceClaims": [{"name": "d", "resourceClaimName": name}],
                      "containers": [{"name": "c", "image": "x", "resources": {"claims": [{"name": "d"}]}}]}}]


def _resources(name: str) -> dict:
    """Processes of the cluster (supervisor included), their open fds and RSS."""
    st = localbackend.load_state(name)
    pids = [(st.pid, "supervisor")] + [(p["pid"], p.get("name", str(p["pid"]))) for p in st.procs]
    fds = rss = alive = 0
    per: dict[str, dict] = {}  # which process grew: fds and RSS of each
    for pid, pname in pids:
        try:
            n = len(list(Path(f"/proc/{pid}/fd").iterdir()))
            kb = int(next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration):
            continue
        fds, rss, alive = fds + n, rss + kb, alive + 1
        per[pname] = {"fds": n, "rss_mib": round(kb / 1024, 1)}
    return {"processes": alive, "fds": fds, "rss_mib": round(rss / 1024, 1), "per_process": per}


def run(artifacts: Path, seconds: float = 600, seed: int = 1) -> dict:
    rnd = random.Random(seed)
    name = f"soak-{uuid.uuid4().hex[:4]}"
    c = LocalBackend().up(ClusterSpec(name=name, nodes=parse_nodes(NODES), netns=False), artifacts / name,
                          attached=True, timeout=300)
    counts = {"claims": 0, "deleted": 0, "hotplugs": 0, "driver_restarts": 0, "verdicts": 0, "wrong": 0, "lost": 0}
    wrong: list[str] = []
    lost: list[str] = []
    try:
        kube = Kube(str(c.kubeconfig))
        kube.health = c.failure
        ns = "soak"
        kube.create_namespace(ns)
        time.sleep(5)  # let the start-up settle before the first reading
        start = _resources(name)
        live: dict[str, float] = {}  # pod -> when it was allocated (0: not yet)
        judged: set[str] = set()
        removed: dict[str, str] = {}  # node -> device removed by hotplug, put back later
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            r = rnd.random()
            nodes = sorted(c.nodes)
            if r < 0.5 and len(live) < MAX_LIVE:
                pname = f"c{i:05d}"
                i += 1
                for o in _claim_pod(ns, pname, rnd.choice(SIZES)):
                    retrying(kube.apply, o)
                live[pname] = 0.0
                counts["claims"] += 1
            elif r < 0.8 and live:
                pname = rnd.choice(sorted(live))
                retrying(kube.core.delete_namespaced_pod, pname, ns, grace_period_seconds=0)
                retrying(kube.res.delete_namespaced_resource_claim, pname, ns)
                live.pop(pname)
                counts["deleted"] += 1
            elif r < 0.9:
                node = rnd.choice(nodes)
                if node in removed:
                    c.mutate(node, "add", removed.pop(node))
                    counts["hotplugs"] += 1
                else:
                    # Unplug only a free device, and only while no claim waits for one: the
                    # scheduler then cannot be allocating it at this moment. Otherwise a claim
                    # allocated in the same instant is judged against a truth that no longer
                    # has its device (the 10-minute soak's one wrong verdict).
                    current = kube.list("ResourceClaim", namespace=ns)[0]
                    pending = [x for x in current if not (x.get("status") or {}).get("allocation")]
                    held = {res["device"] for x in current for res in
                            ((x.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", [])
                            if res.get("pool") == node}
                    free = [i for i in range(16) if f"neuron-device-{i}" not in held]
                    if not pending and free:
                        dev = f"neuron{rnd.choice(free)}"
                        c.mutate(node, "remove", dev)
                        removed[node] = dev
                        counts["hotplugs"] += 1
            elif r < 0.93:
                c.restart_driver(rnd.choice(nodes), "refdriver-neuron")
                counts["driver_restarts"] += 1
            claims = {x["metadata"]["name"]: x for x in kube.list("ResourceClaim", namespace=ns)[0]}
            pods = {x["metadata"]["name"]: x for x in kube.list("Pod", namespace=ns)[0]}
            others = [x for x in claims.values() if (x.get("status") or {}).get("allocation")]
            now = time.monotonic()
            truths = None  # read once per step, and only when a claim is judged
            for pname in list(live):
                cl, pod = claims.get(pname), pods.get(pname)
                if cl is None and pod is not None:
                    lost.append(f"{pname}: the claim vanished while its pod existed")
                    live.pop(pname)
                    continue
                if cl is not None and (cl.get("status") or {}).get("allocation"):
                    if pname not in judged:
                        judged.add(pname)
                        truths = truths if truths is not None else c.truths()
                        v = judge(cl, truths, [x for x in others if x is not cl], c.identities())
                        counts["verdicts"] += 1
                        if not v.ok:
                            wrong.append(str(v))
                    if not live[pname]:
                        live[pname] = now
                    elif pod is not None and (pod.get("status") or {}).get("phase") != "Running" and now - live[pname] > LOST_AFTER:
                        lost.append(f"{pname}: allocated but not Running after {LOST_AFTER:.0f} s")
                        live.pop(pname)
            time.sleep(STEP)
        for node, dev in removed.items():
            c.mutate(node, "add", dev)
        kube.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
        kube.wait("Pod", lambda lst: not lst["items"], namespace=ns, timeout=60, what="the soak's pods gone")
        kube.res.delete_collection_namespaced_resource_claim(ns)
        kube.wait("ResourceClaim", lambda lst: not lst["items"], namespace=ns, timeout=60, what="the soak's claims gone")
        time.sleep(5)
        end = _resources(name)
    finally:
        LocalBackend().down(name)
    counts["wrong"], counts["lost"] = len(wrong), len(lost)
    return {"seconds": seconds, **counts, "start": start, "end": end, "wrong_examples": wrong[:3], "lost_examples": lost[:5],
            "target": "0 lost, 0 wrong; processes, fds and memory flat from start to end"}
