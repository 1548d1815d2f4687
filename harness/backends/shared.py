"""Clusters shared by the workers of one test run (pytest-xdist): the first worker to ask brings
the cluster up, each worker takes a reference, and the last one to let go brings it down. The
lock and the count are files in the state root, so this works across processes and for every
backend alike."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .base import Backend
from .handle import Cluster
from .paths import check_name, ensure_root, state_root
from .spec import ClusterSpec


class _Refs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        try:
            return int(self.path.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def write(self, n: int) -> None:
        self.path.write_text(str(n))


@contextmanager
def _locked(name: str) -> Iterator[_Refs]:
    lock = ensure_root() / f"{check_name(name, 'cluster name')}.lock"
    with open(lock, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield _Refs(lock.with_suffix(".refs"))
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def acquire(backend: Backend, spec: ClusterSpec, artifacts: Path, owner_pid: int | None, timeout: float = 300) -> Cluster:
    """The running cluster `spec.name`, brought up by this call if nobody has yet."""
    try:
        with _locked(spec.name) as refs:
            cluster = backend.find(spec.name)
            if cluster is None:
                cluster = backend.up(spec, artifacts, timeout=timeout, owner_pid=owner_pid)
            refs.write(refs.read() + 1)
    except BaseException:
        if not refs.read():  # nobody holds the cluster: a failed start leaves no sharing files behind
            forget(spec.name)
        raise
    return cluster


def release(backend: Backend, cluster: Cluster, keep: bool = False, export_logs_to: Path | None = None,
            name: str | None = None) -> bool:
    """Drop one reference; the last one brings the cluster down (unless `keep`). True if it did.
    `name`: the name it was acquired under, when the backend's cluster has another (existing)."""
    name = name or cluster.name
    with _locked(name) as refs:
        n = refs.read() - 1
        refs.write(max(n, 0))
        last = n <= 0
        if last:
            if not keep:
                backend.down(cluster.name, export_logs_to=export_logs_to)
            refs.path.unlink(missing_ok=True)
    if last:
        forget(name)
    return last


def forget(name: str) -> None:
    """Remove the sharing files of a cluster (also after an interrupted run)."""
    root = state_root()
    if not root.is_dir():
        return
    for suffix in (".lock", ".refs"):
        (root / f"{check_name(name, 'cluster name')}{suffix}").unlink(missing_ok=True)
