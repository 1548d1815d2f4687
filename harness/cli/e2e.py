"""`dra-harness e2e` (what `make e2e` runs): the e2e suites under pytest with this plugin, JUnit
XML and the run summary in the artifacts directory. The plugin boots and tears down clusters."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ..backends.bins import ROOT


def run(args) -> int:
    artifacts = Path(args.artifacts or "artifacts/e2e").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    # paths among the pytest arguments (e2e/test_efa_sharing.py, e2e/x.py::test_y) pick the suites;
    # without any, all of e2e/ runs
    picked = any(not a.startswith("-") and (ROOT / a.split("::", 1)[0]).exists() for a in extra)
    cmd = [sys.executable, "-m", "pytest", *([] if picked else [str(ROOT / "e2e")]), "-p", "no:cacheprovider", "-q", "-rfE",
           "--backend", args.backend, "--nodes", args.nodes, "--artifacts", str(artifacts),
           "--junitxml", str(artifacts / "junit.xml"), "-o", "junit_family=xunit2"]
    if args.k8s_version:
        cmd += ["--k8s-version", args.k8s_version]
    if args.keep_cluster:
        cmd.append("--keep-cluster")
    if args.beta_dra_apis != "auto":
        cmd += ["--beta-dra-apis", args.beta_dra_apis]
    for a in args.driver_arg:
        cmd += ["--driver-arg", a]
    t0 = time.monotonic()
    rc = subprocess.call([*cmd, *extra], cwd=ROOT)
    print(f"\ne2e: pytest exited {rc} after {time.monotonic() - t0:.1f}s; JUnit: {artifacts / 'junit.xml'}; "
          f"summary: {artifacts / 'summary.txt'}; failure bundles: {artifacts / 'failures'}")
    return rc
