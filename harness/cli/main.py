"""`dra-harness`: boot clusters whose DRA drivers see fake Neuron/EFA nodes, explain pending
claims, run the end-to-end suites."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from ..backends import DEFAULT as DEFAULT_BACKEND, NAMES as BACKENDS
from ..backends.spec import DEFAULT_NODES
from ..conform import CHECKS

EPILOG = """\
examples:
  dra-harness up --nodes trn1.32xlarge,trn2.48xlarge        boot a local cluster (prints its kubeconfig)
  dra-harness status                                        components and nodes of the cluster
  dra-harness explain default/my-claim                      why is this claim pending?
  dra-harness judge default/my-claim                        is its allocation really aligned? (exit 1: WRONG)
  dra-harness judge --all                                   every allocated claim of the cluster
  dra-harness drain NODE --wait 60                          evict the node's device users (DeviceTaintRule)
  dra-harness down                                          stop everything, leave nothing behind
  dra-harness e2e                                           up + the e2e suites + down (what `make e2e` runs)
  dra-harness conform --driver refdriver-neuron             a driver's report card (KEP-5970 + the oracle)
  dra-harness kit check platform/golden-paths.yaml          where each golden path fits, judged by the oracle
  dra-harness kit render platform/golden-paths.yaml | kubectl apply -f -
"""

DRAIN_EXAMPLES = """\
examples:
  dra-harness drain trn1-0 --wait 60                        evict every pod using the node's devices
  dra-harness drain trn1-0 --device neuron-device-3 --effect NoSchedule
  dra-harness drain trn1-0 --effect None                    what would be evicted (the rule's status)
  dra-harness drain trn1-0 --undo                           end the maintenance
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dra-harness", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cluster_args(s, nodes=True):
        s.add_argument("--name", default="dra-harness", help="cluster name, a DNS-1123 label (default: dra-harness)")
        s.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                       help=f"where the cluster runs (default: {DEFAULT_BACKEND})")
        if nodes:
            s.add_argument("--nodes", default=DEFAULT_NODES,
                           help=f"comma-separated presets or spec files, optionally NAME=..., one per node (default: {DEFAULT_NODES})")
            s.add_argument("--k8s-version", default=None, help="1.34, 1.35, 1.36 or 1.37 (default: pinned default)")
            s.add_argument("--driver", action="append", default=None, metavar="PROFILE",
                           help="driver profile per node (built-in: refdriver-neuron, refdriver-efa, "
                                "refdriver-efa-shared, e2e-test-driver; or a YAML file); repeatable")
            s.add_argument("--driver-arg", action="append", default=[], metavar="PROFILE=ARG",
                           help="extra argument for a profile, e.g. refdriver-neuron=--inject-bug=efa-shift")
            s.add_argument("--artifacts", default=None, help="logs and reports (default: ./artifacts/NAME)")
            s.add_argument("--timeout", type=float, default=300, help="seconds to wait for the cluster to be ready")
            s.add_argument("--netns", choices=["auto", "on", "off"], default="auto",
                           help="local backend: a network namespace per node with its ENA interface, IMDS and "
                                "the API server forwarded in (auto: when running as root)")
            s.add_argument("--node-image", choices=["auto", "offline", "pinned"], default=None,
                           help="kind backend: the pinned kindest/node image, or one built here without a registry "
                                "(dra-harness kind-image); auto: pinned where a registry answers")
            s.add_argument("--driver-hosts", choices=["auto", "on", "off"], default="auto",
                           help="local backend: one process serves the reference drivers of many nodes that share "
                                "a rendered tree, for scale (auto: from 32 nodes, when no namespace or NRI per node "
                                "is asked for)")
            s.add_argument("--beta-dra-apis", choices=["auto", "on", "off"], default="auto",
                           help="serve resource.k8s.io/v1beta1 and v1beta2 beside v1, for manifests written for "
                                "them (AWS's claim templates are v1beta1); auto: on, as EKS does")
            s.add_argument("--nri", choices=["auto", "on", "off"], default="auto",
                           help="local backend: an NRI runtime stand-in per node at its /var/run/nri/nri.sock, "
                                "delivering pod and container events to NRI plugins (auto: when a driver "
                                "profile says nri: true)")

    s = sub.add_parser("up", help="start a cluster and return (it runs until `down`)")
    cluster_args(s)
    s = sub.add_parser("status", help="show a cluster's components and nodes")
    cluster_args(s, nodes=False)
    s = sub.add_parser("down", help="stop a cluster and remove its state")
    cluster_args(s, nodes=False)
    s = sub.add_parser("explain", help="explain why a claim is pending")
    s.add_argument("claim", help="NAMESPACE/NAME")
    cluster_args(s, nodes=False)
    s.add_argument("--kubeconfig", default=None, help="(default: the named cluster's)")
    s = sub.add_parser("judge", help="the oracle's verdict on allocated claims (exit 1 if any is WRONG)",
                       description="Judge a claim (or --all allocated claims) of a cluster dra-harness made against "
                       "the ground truth of its fake nodes, as the pytest plugin does: the same text, exit status 1 "
                       "when a verdict is WRONG, 0 when every one is ALIGNED.")
    s.add_argument("claim", nargs="?", help="NAMESPACE/NAME")
    s.add_argument("--all", action="store_true", help="every allocated claim of the cluster")
    cluster_args(s, nodes=False)
    s.add_argument("--kubeconfig", default=None, help="(default: the named cluster's)")
    s = sub.add_parser("capture", help="a cluster's DRA state as a bundle `repro` replays (slices, classes, claims, "
                       "pods, events, versions, gates, topologies)",
                       description="Writes into OUT (a new directory) what a reproduction needs: ResourceSlices, "
                       "DeviceClasses, the claims, templates and pods of every namespace that uses devices (or "
                       "--namespace), quotas, admission policies, events, the scheduler's verdicts, the server's "
                       "version and DRA feature gates, node labels, and for each fake node its topology; for a "
                       "cluster dra-harness made, its driver profiles and arguments. Any kubeconfig works; only a "
                       "harness cluster's nodes come with topologies.",
                       epilog="examples:\n  dra-harness capture bug-42/                    the running harness cluster\n"
                              "  dra-harness capture --anonymise share/        names, namespaces and UIDs replaced\n"
                              "  dra-harness capture --kubeconfig ~/.kube/config out/   any cluster (slices only)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("out", help="a new directory for the bundle")
    s.add_argument("--namespace", action="append", default=None, metavar="NS",
                   help="capture these namespaces (repeatable; default: every namespace using devices)")
    s.add_argument("--anonymise", action="store_true",
                   help="replace namespaces, object and node names and UIDs consistently; drop events and logs")
    cluster_args(s, nodes=False)
    s.add_argument("--kubeconfig", default=None, help="(default: the named cluster's)")
    s = sub.add_parser("repro", help="replay a captured bundle on a local cluster and say whether it reproduces",
                       description="Boots a local cluster of the bundle's Kubernetes version and replays the bundle: "
                       "`hardware` renders each node's captured topology and runs the same driver profiles and "
                       "arguments; `slices` publishes the captured ResourceSlices verbatim with no driver. Then it "
                       "recreates classes, templates, claims and pods in the captured order, judges with the oracle "
                       "and ends with one line: reproduced (the same allocations and verdicts), or the differences. "
                       "Exit 0 when reproduced, 1 when not.",
                       epilog="example: dra-harness repro bug-42/ --mode slices",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("bundle", help="a directory `dra-harness capture` (or a failing test) wrote")
    s.add_argument("--mode", choices=["hardware", "slices"], default="hardware")
    s.add_argument("--keep-cluster", action="store_true", help="leave the reproduction running (dra-harness down)")
    s.add_argument("--artifacts", default="artifacts", help="where the reproduction's logs go (default: ./artifacts)")
    s = sub.add_parser("drain", help="taint a node's devices through a DeviceTaintRule (maintenance), or undo it",
                       description="Maintenance as 1.37 does it: a DeviceTaintRule selects the node's pool (or one "
                       "device) and taints it. NoExecute evicts the pods using the devices once their tolerations "
                       "run out, NoSchedule keeps new claims off, None (1.35+) only reports what NoExecute would evict.",
                       epilog=DRAIN_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("node", help="node name (the reference drivers' pool name)")
    s.add_argument("--device", default=None, help="one device of the pool, as its slice names it (neuron-device-3)")
    s.add_argument("--driver", default=None, help="only this driver's devices (neuron.aws.com, dra.net); default: all")
    s.add_argument("--effect", default="NoExecute", choices=["NoExecute", "NoSchedule", "None"])
    s.add_argument("--key", default="dra-harness.io/maintenance", help="taint key (default: dra-harness.io/maintenance)")
    s.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="wait up to SECONDS for the evicted pods to be gone (NoExecute)")
    s.add_argument("--undo", action="store_true", help="delete the drain rule instead")
    cluster_args(s, nodes=False)
    s.add_argument("--kubeconfig", default=None, help="(default: the named cluster's)")
    s = sub.add_parser("kit", help="a golden-path kit: render it to Kubernetes objects, or check where each class fits",
                       description="A golden-path kit is one YAML file a platform team owns (see platform/golden-paths.yaml).")
    s.add_argument("action", choices=["render", "check"], help="render: objects as YAML on stdout; check: every class "
                                                                  "on every preset, judged by the oracle")
    s.add_argument("kit", help="the kit's YAML file")
    s.add_argument("--presets", default=None, help="check: comma-separated presets (default: all)")
    s = sub.add_parser("replay", help="replay a workload trace against a local cluster, faster than real time",
                       description="Boots a local cluster with the trace's nodes (or uses --cluster), applies the "
                       "trace's golden-path kit, runs every workload as a pod of its team and class, and records "
                       "the five platform metrics over time into OUT (ledger.json, run.json, metrics.txt). "
                       "`--generate KIND` writes a seeded synthetic trace instead.")
    s.add_argument("trace", nargs="?", help="trace YAML (platform/traces/*.yaml)")
    s.add_argument("--speed", type=float, default=30, help="trace seconds per real second (default 30)")
    s.add_argument("--out", default=None, help="run directory (default: artifacts/replay-<trace>)")
    s.add_argument("--cluster", default=None, help="an already running local cluster to use (its nodes, not the trace's)")
    s.add_argument("--generate", choices=["healthy", "stranding"], help="write a synthetic trace of this kind")
    s.add_argument("--kit", default="platform/golden-paths.yaml", help="--generate: the kit the trace uses")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--count", type=int, default=500)
    s.add_argument("--duration", type=float, default=3600, help="--generate: trace seconds")
    s.add_argument("--nodes", default=",".join(["trn1.32xlarge"] * 8), help="--generate: the trace's nodes")
    s = sub.add_parser("report", help="one self-contained HTML page for a replay's run directory")
    s.add_argument("run_dir")
    s.add_argument("--out", default=None, help="(default: RUN_DIR/report.html)")
    s = sub.add_parser("engine", help="a container engine that allows kind: up, down, status",
                       description="up: use a Docker engine that answers as it is; otherwise write a daemon config "
                       "with every network in 198.18.0.0/15, register a runc wrapper where the capability bounding "
                       "set lacks capabilities --privileged needs, install docker.io if missing, start dockerd, and "
                       "pre-create the `kind` network. down: undo exactly what up did.")
    s.add_argument("action", choices=["up", "down", "status"])
    s = sub.add_parser("kind-image", help="build a kind node image without a registry (cached; a second call is a no-op)",
                       description="Debian by debootstrap, kind's base files, containerd, kubelet, kubeadm and the "
                       "component images made from the binaries `make bins` builds (clusters/kind/node-image.sh).")
    s.add_argument("--k8s-version", default=None, help="1.34 ... 1.37 (default: the pinned default)")
    s = sub.add_parser("driver-image", help="a static driver binary as an image archive for `kind_images` (no registry, "
                       "no base image, no Docker build)",
                       description="Writes a `docker save` archive whose only files are the binary (at /NAME, the "
                       "entrypoint) and an empty /tmp: enough for a static Go driver such as DRANET "
                       "(CGO_ENABLED=0 go build ./cmd/dranet). Name the archive in a profile's kind_images; "
                       "`kind load image-archive` puts it on every node.",
                       epilog="example: dra-harness driver-image ./dranet --tag localhost/dranet:src -o dranet.tar")
    s.add_argument("binary", help="a statically linked executable")
    s.add_argument("--tag", required=True, help="the image reference the chart's values name, e.g. localhost/dranet:src")
    s.add_argument("-o", "--out", required=True, help="the archive to write (.tar)")
    s = sub.add_parser("conform", help="a driver's report card: KEP-5970's seven behaviours and the oracle's checks",
                       description="Boots a cluster whose node runs the one driver profile given, runs the report "
                       "card's checks against it and prints the card: the DRA driver contract of KEP-5970 "
                       "(registration, slices, allocation, prepare, pod running, unprepare, reuse) and what only "
                       "the ground truth can judge (identity, alignment of every published topology attribute, "
                       "hotplug, faults, sharing, partitions, claim status). A check that does not apply says "
                       "N/A and why. Exit status 1 when a check fails. JUnit and the card go to the artifacts.",
                       epilog="examples:\n"
                              "  dra-harness conform --driver refdriver-neuron\n"
                              "  dra-harness conform --driver my-driver.yaml --device-class gpu.example.com\n"
                              "  dra-harness conform --driver refdriver-neuron "
                              "--driver-arg refdriver-neuron=--inject-bug=efa-shift --check alignment\n"
                              "  dra-harness conform --driver e2e-test-driver --backend kind",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--driver", required=True, metavar="PROFILE",
                   help="the driver profile to judge (built-in name or YAML file)")
    s.add_argument("--driver-arg", action="append", default=[], metavar="PROFILE=ARG",
                   help="extra argument for the profile, e.g. refdriver-neuron=--extended-attributes")
    s.add_argument("--device-class", default=None, help="the DeviceClass the contract checks allocate from "
                   "(default: the first whose selectors name the driver)")
    s.add_argument("--check", action="append", default=[], metavar="NAME",
                   help="run only this check (repeatable): " + ", ".join(c.name for c in CHECKS))
    s.add_argument("--nodes", default="trn1.32xlarge", help="the node's preset or spec file (default: trn1.32xlarge)")
    s.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help=f"(default: {DEFAULT_BACKEND})")
    s.add_argument("--k8s-version", default=None, help="1.34, 1.35, 1.36 or 1.37 (default: pinned default)")
    s.add_argument("--artifacts", default=None, help="JUnit, card and logs (default: ./artifacts/conform-PROFILE)")
    s.add_argument("--verbose", action="store_true", help="show pytest's output")
    s = sub.add_parser("e2e", help="up, run e2e/ with pytest, down, print the summary")
    cluster_args(s)
    s.add_argument("--keep-cluster", action="store_true")
    s.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- extra pytest arguments")
    return p


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "node_image", None):  # for the kind backend, here and in `e2e`'s pytest
        os.environ["DRA_HARNESS_NODE_IMAGE"] = args.node_image
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops what was started, as Ctrl-C does
    from ..backends import BackendError, StateError
    from ..backends.bins import BinsError
    from ..backends.kind.engine import EngineError
    from ..platform.kit import KitError

    try:
        return {"up": _up, "status": _status, "down": _down, "explain": _explain, "judge": _judge, "drain": _drain, "e2e": _e2e, "kit": _kit,
                "replay": _replay, "report": _report, "engine": _engine, "kind-image": _kind_image,
                "driver-image": _driver_image, "capture": _capture, "repro": _repro,
                "conform": _conform}[args.cmd](args)
    except (BackendError, BinsError, StateError, KitError, ValueError, EngineError) as e:
        print(f"dra-harness: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dra-harness: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`
        return 0


def _spec(args):
    from ..backends.paths import check_name
    from ..backends.profiles import check_set, parse_driver_args
    from ..backends.spec import ClusterSpec, parse_nodes

    extra = parse_driver_args(args.driver_arg)
    spec = ClusterSpec(name=check_name(args.name, "cluster name"), nodes=parse_nodes(args.nodes, args.driver, extra),
                       k8s_version=args.k8s_version, netns={"auto": None, "on": True, "off": False}[args.netns],
                       nri={"auto": None, "on": True, "off": False}[args.nri],
                       driver_hosts={"auto": None, "on": True, "off": False}[args.driver_hosts],
                       beta_apis={"auto": None, "on": True, "off": False}[args.beta_dra_apis])
    for n in spec.nodes:  # every profile valid, once per driver, before anything starts
        check_set(n.drivers, extra, args.backend)
    return spec


def _up(args) -> int:
    from ..backends import get

    spec = _spec(args)
    t0 = time.monotonic()
    cluster = get(args.backend).up(spec, Path(args.artifacts or f"artifacts/{spec.name}").resolve(), timeout=args.timeout)
    print(f"cluster {cluster.name} up in {time.monotonic() - t0:.1f}s (Kubernetes {cluster.k8s_version})")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(summary(cluster))
    return 0


def summary(cluster) -> str:
    from ..kube import Kube

    kube = Kube(str(cluster.kubeconfig))
    slices, _ = kube.list("ResourceSlice")
    rows = [("NODE", "TOPOLOGY", "NEURON", "EFA", "PUBLISHED (driver: devices)")]
    for name, info in cluster.nodes.items():
        t = info.truth()
        pub: dict[str, int] = {}
        for s in slices:
            if s["spec"].get("nodeName") == name:
                pub[s["spec"]["driver"]] = pub.get(s["spec"]["driver"], 0) + len(s["spec"].get("devices") or [])
        rows.append((name, info.topology, str(len(t.of_kind("neuron"))) if t else "-",
                     str(len(t.of_kind("efa"))) if t else "-",
                     ", ".join(f"{d}: {n}" for d, n in sorted(pub.items())) or "-"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in rows)


def _status(args) -> int:
    from ..backends import get
    from ..backends.paths import check_name

    st = get(args.backend).status(check_name(args.name, "cluster name"))
    print(json.dumps(st, indent=2))
    return 0 if st["state"] == "running" else 1


def _down(args) -> int:
    from ..backends import get
    from ..backends.paths import check_name

    killed = get(args.backend).down(check_name(args.name, "cluster name"))
    print(f"cluster {args.name} is down" + (f" (killed leftovers: {', '.join(killed)})" if killed else ""))
    return 0


SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


def _target(args):
    """(kubeconfig, the named cluster or None) for explain and judge."""
    from ..backends import get
    from ..backends.paths import check_name

    kubeconfig = args.kubeconfig
    cluster = get(args.backend).find(check_name(args.name, "cluster name"))
    if cluster is not None:
        kubeconfig = kubeconfig or str(cluster.kubeconfig)
    if not kubeconfig:
        kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        raise ValueError(f"no cluster {args.name!r} running and no --kubeconfig/KUBECONFIG given")
    return kubeconfig, cluster


def _claim_ref(text: str) -> tuple[str, str]:
    from ..backends.paths import LABEL_RE

    ns, _, name = text.partition("/")
    if not name:
        raise ValueError("claim must be NAMESPACE/NAME")
    # checked here, not by the API server: a name goes into a field selector, where `=` or `,`
    # would change the query (reliability-probe-2.md rows 67-70)
    if not LABEL_RE.match(ns):
        raise ValueError(f"claim namespace {ns[:70]!r} is not a DNS-1123 label")
    if len(name) > 253 or not SUBDOMAIN_RE.match(name):
        raise ValueError(f"claim name {name[:70]!r} is not a DNS-1123 subdomain")
    return ns, name


def _identities(cluster) -> dict:
    from ..judge.identity import Identity

    return {d: Identity.from_profile(d, i) for d, i in cluster.identities().items()} if cluster else {}


def _explain(args) -> int:
    from ..judge.explain import explain_claim

    kubeconfig, cluster = _target(args)
    ns, name = _claim_ref(args.claim)
    print(explain_claim(kubeconfig, ns, name, cluster.truths() if cluster else None, _identities(cluster)))
    return 0


def _judge(args) -> int:
    from ..judge.oracle import judge_live
    from ..kube import Kube

    if bool(args.claim) == bool(args.all):
        raise ValueError("name one claim (NAMESPACE/NAME) or give --all")
    ref = _claim_ref(args.claim) if args.claim else None
    kubeconfig, cluster = _target(args)
    truths = cluster.truths() if cluster else {}
    if not truths:  # the oracle judges against the fake hardware; without it there is nothing to say
        raise ValueError(f"the ground truth of this cluster is not known: judge needs a cluster dra-harness made "
                         f"(--name, --backend; no cluster {args.name!r} with fake nodes was found)")
    try:
        kube = Kube(kubeconfig)
    except Exception as e:  # a file that is no kubeconfig
        raise ValueError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({type(e).__name__})") from None
    kube.api.configuration.retries = 1
    claims = None
    if ref:
        claim = kube.get("ResourceClaim", ref[1], ref[0])
        if claim is None:
            raise ValueError(f"claim {ref[0]}/{ref[1]} not found")
        claims = [claim]
    verdicts = judge_live(kube, truths, _identities(cluster), claims)
    for v in verdicts:
        print(v)
    wrong = sum(not v.ok for v in verdicts)
    if args.all:
        print(f"{len(verdicts)} allocated claim{'s' * (len(verdicts) != 1)} judged, {wrong} WRONG")
    return 1 if wrong else 0


def _drain(args) -> int:
    from ..backends import get
    from ..backends.paths import LABEL_RE, check_name
    from ..kube import Kube
    from ..platform import drain

    if len(args.node) > 253 or not SUBDOMAIN_RE.match(args.node):
        raise ValueError(f"node name {args.node[:70]!r} is not a DNS-1123 subdomain")
    if args.device is not None and not LABEL_RE.match(args.device):
        raise ValueError(f"device {args.device[:70]!r} is not a DNS-1123 label (as slices name devices)")
    if not 0 <= args.wait <= 3600:  # nan fails both comparisons: refused too
        raise ValueError("--wait must be 0..3600 seconds")
    drain.rule("v1", "x", key=args.key)  # a bad key is refused before any cluster is asked
    cluster = get(args.backend).find(check_name(args.name, "cluster name"))
    kubeconfig = args.kubeconfig or (str(cluster.kubeconfig) if cluster else os.environ.get("KUBECONFIG"))
    if not kubeconfig:
        raise ValueError(f"no cluster {args.name!r} running and no --kubeconfig/KUBECONFIG given")
    kube = Kube(kubeconfig)
    if args.undo:
        gone = drain.undrain(kube, args.node, args.device)
        print(f"rule {drain.rule_name(args.node, args.device)} " + ("deleted" if gone else "was not there"))
        return 0
    if kube.core.list_node(field_selector=f"metadata.name={args.node}").items == []:
        raise ValueError(f"no node {args.node!r} in this cluster")
    done = drain.drain(kube, args.node, device=args.device, driver=args.driver, effect=args.effect, key=args.key,
                       wait=args.wait)
    print(done)
    return 1 if args.wait and done.pods_left else 0


def _kit(args) -> int:
    from fakedev import safeyaml

    from ..platform import kit

    k = kit.load(args.kit)
    if args.action == "render":
        sys.stdout.write(safeyaml.dumps_all(kit.render(k)))
        return 0
    from ..platform.check import check

    rows = check(k, args.presets.split(",") if args.presets else None)
    w = max(len(r.golden_path) for r in rows)
    for r in rows:
        verdict = ("ALIGNED" if r.aligned else "WRONG") if r.fits else "UNSATISFIABLE"
        print(f"{r.golden_path:{w}}  {r.preset:15}  {verdict:13}  {r.why}")
    return 1 if any(r.fits and not r.aligned for r in rows) else 0


def _kind_image(args) -> int:
    import subprocess

    from ..backends.bins import ROOT, resolve

    return subprocess.call([str(ROOT / "clusters/kind/node-image.sh"), resolve(args.k8s_version)])


def _capture(args) -> int:
    from ..backends.paths import check_name
    from ..kube import Kube
    from ..repro.capture import capture

    for ns in args.namespace or []:  # before anything is read: each becomes a directory of the bundle
        check_name(ns, "--namespace")
    kubeconfig, cluster = _target(args)
    try:
        kube = Kube(kubeconfig)
    except Exception as e:  # a file that is no kubeconfig
        raise ValueError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({type(e).__name__})") from None
    out = capture(kube, Path(args.out), cluster, args.namespace, args.anonymise,
                  log_dir=(cluster.artifacts / "logs") if cluster else None)
    manifest = json.loads((out / "capture.json").read_text())
    topo = sum(1 for n in manifest["nodes"].values() if n.get("topology"))
    print(f"captured {out}: {len(manifest['order'])} claims/templates/pods in {len(manifest['namespaces'])} namespace(s), "
          f"{len(manifest['nodes'])} node(s) ({topo} with topology), Kubernetes {manifest['server'].get('gitVersion')}"
          f"{', anonymised' if args.anonymise else ''} in {manifest['capture_s']}s")
    return 0


def _repro(args) -> int:
    from ..repro.repro import ReproError, repro

    try:
        out = repro(Path(args.bundle), args.mode, Path(args.artifacts).resolve(), keep=args.keep_cluster)
    except ReproError as e:
        raise ValueError(str(e)) from None
    print(f"{out.line()} [{out.seconds.get('total')}s]")
    return 0 if out.reproduced else 1


def _driver_image(args) -> int:
    from ..backends import binimage

    binary, out = Path(args.binary), Path(args.out)
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ValueError(f"driver-image: {args.binary} is not an executable file")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_.-]{1,128})?", args.tag) or len(args.tag) > 255:
        raise ValueError(f"driver-image: --tag {args.tag[:80]!r} is not an image reference like localhost/my-driver:dev")
    with binary.open("rb") as f:
        head = f.read(4096)
    if head[:4] != b"\x7fELF":
        raise ValueError(f"driver-image: {args.binary} is not an ELF executable (the image has no shell to run a script)")
    if b"/ld-linux" in head or b"/ld-musl" in head:  # PT_INTERP sits in the first page
        raise ValueError(f"driver-image: {args.binary} is dynamically linked and the image has no libc; "
                         "build it static (Go: CGO_ENABLED=0 go build ...)")
    t0 = time.monotonic()
    binimage.write(binary, args.tag if ":" in args.tag.rsplit("/", 1)[-1] else args.tag + ":latest", out)
    print(f"wrote {out} ({out.stat().st_size // 2**20} MiB, {args.tag}) in {time.monotonic() - t0:.1f}s")
    return 0


def _engine(args) -> int:
    from ..backends.kind import engine

    if args.action == "up":
        engine.up()
    elif args.action == "down":
        engine.down()
    else:
        for k, v in engine.status().items():
            print(f"{k}: {v}")
    return 0


def _replay(args) -> int:
    from .replay import generate, replay

    if args.generate:
        return generate(args)
    if not args.trace:
        raise ValueError("replay needs a TRACE file (or --generate KIND)")
    return replay(args)


def _report(args) -> int:
    from ..platform.htmlreport import write

    t0 = time.monotonic()
    out = write(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB in {time.monotonic() - t0:.2f}s)")
    return 0


def _e2e(args) -> int:
    from .e2e import run

    return run(args)


def _conform(args) -> int:
    from .conform import run

    return run(args)
