"""Control-plane binaries of the local backend, built from Go modules into a versioned cache."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (clusters/, deploy/)
BUILD = ROOT / "clusters/local/build-bins.sh"
NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kube-proxy", "test-driver",
         "nri-standin", "nri-test-plugin", "nri-fakesys")


class BinsError(Exception):
    pass


def versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "clusters/local/versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.split("#")[0].strip()
    return out


def resolve(version: str | None) -> str:
    """'1.36', '1.36.3' or 'v1.36.3' (None: $K8S_VERSION, else the default minor) -> 'v1.36.3'."""
    vs = versions()
    raw = version or os.environ.get("K8S_VERSION") or vs["K8S_DEFAULT"]
    given = f"{raw[:40]!r}" + ("" if version else " (from $K8S_VERSION)" if os.environ.get("K8S_VERSION") else "")
    v = raw.lstrip("v")
    m = re.fullmatch(r"(\d{1,3})\.(\d{1,3})(\.\d{1,4})?", v)
    key = f"K8S_{m[1]}_{m[2]}" if m else ""
    if key not in vs:  # checked before a build starts, so nothing is left in the cache (row 116)
        supported = sorted(k[4:].replace("_", ".") for k in vs if k.startswith("K8S_1_"))
        raise BinsError(f"unsupported Kubernetes version {given} (supported: {', '.join(supported)}, "
                        "or a patch release of one, like 1.36.3)")
    return f"v{v}" if m[3] else vs[key]


def cache_root() -> Path:
    return Path(os.environ.get("DRA_HARNESS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dra-harness")


def bin_dir(version: str | None) -> Path:
    return cache_root() / "k8s" / resolve(version) / "bin"


def _nri_current(d: Path) -> bool:
    """The NRI binaries are built from this repository (clusters/nri): stale when it changed."""
    import hashlib

    src = ROOT / "clusters/nri"
    h = hashlib.sha256()
    for p in [src / "go.mod", src / "go.sum", *sorted((src / "cmd").rglob("*.go"))]:
        h.update(p.read_bytes())
    stamp = d / ".nri"
    return stamp.is_file() and stamp.read_text().strip() == h.hexdigest()[:16]


def ensure(version: str | None, build: bool = True) -> Path:
    """The bin directory for `version`, building it (minutes, with progress) when missing."""
    d = bin_dir(version)
    if all((d / n).exists() for n in NAMES) and (d / ".complete").exists() and _nri_current(d):
        return d
    if not build:
        raise BinsError(f"control-plane binaries for {resolve(version)} are not built; run: make bins K8S_VERSION={version or ''}")
    r = subprocess.run([str(BUILD), resolve(version)], env={**os.environ, "DRA_HARNESS_CACHE": str(cache_root())})
    if r.returncode != 0:
        raise BinsError(f"building Kubernetes {resolve(version)} failed (exit {r.returncode}); see the output above")
    return d
