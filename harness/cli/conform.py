"""`dra-harness conform --driver PROFILE`: boot a cluster whose node runs that one driver, run the
report card's checks (harness/conform/suite.py) under pytest with the harness plugin, and print
the card. Exit 1 when a check fails, 0 when every applicable check passes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from fakedev import SpecError

from ..backends.bins import ROOT
from ..backends.profiles import ProfileError, check_set, parse_driver_args
from ..backends.spec import ClusterSpecError, parse_nodes
from ..conform import BY_NAME, SUITE
from ..conform.card import outcomes, render


def run(args) -> int:
    try:
        (prof,) = check_set([args.driver], parse_driver_args(args.driver_arg), args.backend)
    except ProfileError as e:
        print(f"dra-harness conform: {e}", file=sys.stderr)
        return 2
    unknown = [c for c in args.check if c not in BY_NAME]
    if unknown:
        print(f"dra-harness conform: unknown check {unknown[0]!r} (checks: {', '.join(BY_NAME)})", file=sys.stderr)
        return 2
    if "=" not in args.nodes and "," not in args.nodes:  # a spec file's long path makes no node name
        base = Path(args.nodes).stem if args.nodes.endswith((".yaml", ".yml")) else args.nodes
        stem = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:30] or "node"
        args.nodes = f"{stem}-0={args.nodes}"
    try:
        nodes = parse_nodes(args.nodes)
    except ClusterSpecError as e:
        print(f"dra-harness conform: --nodes: {e}", file=sys.stderr)
        return 2
    if len(nodes) != 1:
        print(f"dra-harness conform: a report card is about one node; --nodes names {len(nodes)}", file=sys.stderr)
        return 2
    try:
        nodes[0].load_topology()
    except (SpecError, OSError) as e:
        print(f"dra-harness conform: --nodes: {str(e)[:300]}", file=sys.stderr)
        return 2
    artifacts = Path(args.artifacts or f"artifacts/conform-{Path(prof.name).stem}").resolve()
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"dra-harness conform: --artifacts {args.artifacts}: {e.strerror}", file=sys.stderr)
        return 2
    junit = artifacts / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", str(SUITE), "-p", "no:cacheprovider", "-q", "-rN", "--no-header",
           "--backend", args.backend, "--nodes", args.nodes, "--driver", args.driver, "--artifacts", str(artifacts),
           "--junitxml", str(junit), "-o", "junit_family=xunit2", "-o", "junit_suite_name=dra-harness-conform"]
    if args.k8s_version:
        cmd += ["--k8s-version", args.k8s_version]
    if args.device_class:
        cmd += ["--device-class", args.device_class]
    for a in args.driver_arg:
        cmd += ["--driver-arg", a]
    if args.check:
        cmd += ["-k", " or ".join(f"test_{c}" for c in args.check)]
    t0 = time.monotonic()
    rc = subprocess.call(cmd, cwd=ROOT, stdout=None if args.verbose else subprocess.DEVNULL)
    took = time.monotonic() - t0
    if not junit.exists():
        print(f"dra-harness conform: the checks did not run (pytest exited {rc}); run with --verbose", file=sys.stderr)
        return 2
    card = render(prof.driver, prof.name, f"{args.backend} ({args.nodes.partition('=')[2]})", outcomes(junit))
    (artifacts / "card.txt").write_text(card)
    print(card + f"({took:.0f} s; JUnit: {junit}; card: {artifacts / 'card.txt'})")
    return 0 if rc in (0, 5) and "FAILS" not in card.splitlines()[-1] else 1
