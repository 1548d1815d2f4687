"""`dra-harness`: boot clusters whose DRA drivers see fake Neuron/EFA nodes, explain pending
claims, run the end-to-end suites."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

EPILOG = """\
examples:
  dra-harness up --nodes trn1.32xlarge,trn2.48xlarge        boot a local cluster (prints its kubeconfig)
  dra-harness status                                        components and nodes of the cluster
  dra-harness explain default/my-claim                      why is this claim pending?
  dra-harness down                                          stop everything, leave nothing behind
  dra-harness e2e                                           up + the e2e suites + down (what `make e2e` runs)
"""

DEFAULT_NODES = "trn1.32xlarge,trn2.48xlarge"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dra-harness", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cluster_args(s, nodes=True):
        s.add_argument("--name", default="dra-harness", help="cluster name (default: dra-harness)")
        if nodes:
            s.add_argument("--backend", default="local", choices=["local", "kind", "existing"])
            s.add_argument("--nodes", default=DEFAULT_NODES,
                           help=f"comma-separated presets or spec files, optionally NAME=..., one per node (default: {DEFAULT_NODES})")
            s.add_argument("--k8s-version", default=None, help="1.34, 1.35, 1.36 or 1.37 (default: pinned default)")
            s.add_argument("--driver", action="append", default=None, metavar="PROFILE",
                           help="driver profile per node (built-in: refdriver-neuron, refdriver-efa; or a YAML file); repeatable")
            s.add_argument("--driver-arg", action="append", default=[], metavar="PROFILE=ARG",
                           help="extra argument for a profile, e.g. refdriver-neuron=--inject-bug=efa-shift")
            s.add_argument("--artifacts", default=None, help="logs and reports (default: ./artifacts/NAME)")
            s.add_argument("--timeout", type=float, default=300, help="seconds to wait for the cluster to be ready")

    s = sub.add_parser("up", help="start a cluster and return (it runs until `down`)")
    cluster_args(s)
    s = sub.add_parser("status", help="show a cluster's components and nodes")
    cluster_args(s, nodes=False)
    s = sub.add_parser("down", help="stop a cluster and remove its state")
    cluster_args(s, nodes=False)
    s.add_argument("--backend", default="local", choices=["local", "kind"])
    s = sub.add_parser("explain", help="explain why a claim is pending")
    s.add_argument("claim", help="NAMESPACE/NAME")
    s.add_argument("--name", default="dra-harness")
    s.add_argument("--kubeconfig", default=None, help="(default: the named cluster's)")
    s = sub.add_parser("e2e", help="up, run e2e/ with pytest, down, print the summary")
    cluster_args(s)
    s.add_argument("--keep-cluster", action="store_true")
    s.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- extra pytest arguments")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .cluster.spec import ClusterSpecError
    from .cluster.local.backend import UpError
    from .bins import BinsError

    try:
        return {"up": _up, "status": _status, "down": _down, "explain": _explain, "e2e": _e2e}[args.cmd](args)
    except (ClusterSpecError, UpError, BinsError, ValueError) as e:
        print(f"dra-harness: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dra-harness: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`
        return 0


def _spec(args):
    from .cluster.spec import ClusterSpec, parse_nodes
    from .profiles import parse_driver_args

    extra = parse_driver_args(args.driver_arg)
    return ClusterSpec(name=args.name, nodes=parse_nodes(args.nodes, args.driver, extra), k8s_version=args.k8s_version)


def _up(args) -> int:
    if args.backend != "local":
        from .cluster import backends

        cluster = backends.up(args.backend, _spec(args), Path(args.artifacts or f"artifacts/{args.name}").resolve())
    else:
        from .cluster.local import backend

        t0 = time.monotonic()
        cluster = backend.up(_spec(args), Path(args.artifacts or f"artifacts/{args.name}").resolve(),
                             timeout=args.timeout)
        print(f"cluster {cluster.name} up in {time.monotonic() - t0:.1f}s (Kubernetes {cluster.k8s_version})")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(summary(cluster))
    return 0


def summary(cluster) -> str:
    from .kube import Kube

    kube = Kube(str(cluster.kubeconfig))
    slices, _ = kube.list("ResourceSlice")
    rows = [("NODE", "TOPOLOGY", "NEURON", "EFA", "PUBLISHED (driver: devices)")]
    for name, info in cluster.nodes.items():
        t = info.truth() or {"devices": []}
        pub = {}
        for s in slices:
            if s["spec"].get("nodeName") == name:
                pub[s["spec"]["driver"]] = pub.get(s["spec"]["driver"], 0) + len(s["spec"].get("devices") or [])
        rows.append((name, info.topology, str(sum(d["kind"] == "neuron" for d in t["devices"])),
                     str(sum(d["kind"] == "efa" for d in t["devices"])),
                     ", ".join(f"{d}: {n}" for d, n in sorted(pub.items())) or "-"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in rows)


def _status(args) -> int:
    from .cluster.local import backend

    st = backend.status(args.name)
    print(json.dumps(st, indent=2))
    return 0 if st["state"] == "running" else 1


def _down(args) -> int:
    if args.backend == "kind":
        from .cluster.kind import backend as kind

        kind.down(args.name)
        print(f"kind cluster {args.name} deleted")
        return 0
    from .cluster.local import backend

    killed = backend.down(args.name)
    print(f"cluster {args.name} is down" + (f" (killed leftovers: {', '.join(killed)})" if killed else ""))
    return 0


def _explain(args) -> int:
    from .explain import explain_claim

    kubeconfig = args.kubeconfig
    truths = None
    from .cluster.local import backend
    from .cluster.handle import Cluster

    st = backend.load_state(args.name)
    if st:
        cluster = Cluster.from_state(st)
        kubeconfig = kubeconfig or str(cluster.kubeconfig)
        truths = cluster.truths()
    if not kubeconfig:
        kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        raise ValueError(f"no cluster {args.name!r} running and no --kubeconfig/KUBECONFIG given")
    ns, _, name = args.claim.partition("/")
    if not name:
        raise ValueError("claim must be NAMESPACE/NAME")
    print(explain_claim(kubeconfig, ns, name, truths))
    return 0


def _e2e(args) -> int:
    from .e2e_runner import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
