"""pytest plugin of dra-harness (entry point `pytest11`, loaded wherever the package is installed).

Options: --backend, --k8s-version, --nodes, --keep-cluster, --artifacts, --driver-arg.
Markers: @pytest.mark.topology("trn2.48xlarge", nodes=2, driver_args={...}), @pytest.mark.k8s(min="1.35"),
@pytest.mark.upstream_bug("kubernetes#134434", fixed_in="1.35", why="...").
Fixtures: dra_cluster, dra_kube, dra_truth, dra (a namespace per test + the harness API).
Tests that need the same topology share one cluster, each isolated in its own namespace; a test
whose driver_args differ gets the same cluster with its drivers restarted on those arguments
(`Cluster.reconfigure`), and the tests are ordered so that happens as seldom as possible. Under
pytest-xdist the workers of a run share clusters too (a lock and a reference count); there, other
driver arguments mean another cluster, since a restart would pull the drivers from under a test
of another worker. While one cluster's tests run, the next cluster boots in the background,
and a cluster whose last test has run goes down in the background too (the run waits for both).
On failure, a bundle (objects, events, truths, pictures, logs) lands in the artifacts directory;
at the end, the summary lists each judged claim and what the run recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from ..backends import NAMES as BACKENDS, Cluster, get as get_backend, shared
from ..backends.spec import DEFAULT_NODES
from ..judge.record import RunRecord

SESSION = pytest.StashKey["DraSession"]()
RUN_UID = pytest.StashKey[str]()
CLUSTER_KEY = pytest.StashKey[str]()  # on items: which cluster the test needs
API = pytest.StashKey["object"]()  # on items: the test's Dra API, for the report hook


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("dra-harness", "DRA driver end-to-end harness")
    g.addoption("--backend", default="local", choices=list(BACKENDS),
                help="cluster backend for tests using the dra fixtures (default: local)")
    g.addoption("--k8s-version", default=None, help="Kubernetes version, e.g. 1.36 (default: the pinned default)")
    g.addoption("--nodes", default=None, help=f"comma-separated presets or spec files, one per node (default: {DEFAULT_NODES})")
    g.addoption("--keep-cluster", action="store_true", help="leave the clusters running after the session")
    g.addoption("--artifacts", default=None, help="directory for logs, failure bundles and the summary (default: ./artifacts)")
    g.addoption("--beta-dra-apis", choices=["auto", "on", "off"], default="auto",
                help="serve resource.k8s.io/v1beta1 and v1beta2 beside v1 (auto: on, as EKS does)")
    g.addoption("--driver-arg", action="append", default=[], metavar="PROFILE=ARG",  # noqa: E501
                help="extra driver argument for every cluster, e.g. refdriver-neuron=--extended-attributes")
    g.addoption("--driver", action="append", default=[], metavar="PROFILE",
                help="driver profile every node of every cluster runs (built-in name or YAML file; repeatable; "
                     "default: refdriver-neuron and refdriver-efa)")
    g.addoption("--device-class", default=None, metavar="NAME",
                help="the DeviceClass a conformance run (dra-harness conform) allocates from (default: the first "
                     "DeviceClass whose selectors name the driver)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(*topologies, nodes=1, driver_args=None, exclusive=False|NAME, gates=None): "
                            "the cluster this test needs (presets or spec files, each repeated `nodes` times; exclusive: a "
                            "private cluster for the module's tests that fill or mutate nodes; a NAME: one private cluster "
                            "for every module giving it; gates: more feature gates, {name: bool}, on every component)")
    config.addinivalue_line("markers", "k8s(min=None, max=None): Kubernetes versions this test applies to")
    config.addinivalue_line("markers", "upstream_bug(issue, fixed_in, why, since=None): on a cluster where the bug is "
                            "open (from since, older than fixed_in: a release, a list of first fixed patches per minor, "
                            "or None: open everywhere) the test must fail (strict xfail naming the issue); where fixed it must pass")
    if not hasattr(config, "workerinput"):
        config.stash[RUN_UID] = uuid.uuid4().hex[:8]


# -- the session: clusters keyed by topology -------------------------------------------------------


class DraSession:
    """The clusters of one test run, keyed by what they are made of; shared across xdist workers
    through the backend layer (harness.backends.shared)."""

    def __init__(self, config: pytest.Config) -> None:
        from ..backends.profiles import ProfileError, parse_driver_args

        self.config = config
        self.backend = get_backend(config.getoption("--backend"))
        self.version = config.getoption("--k8s-version")
        self.beta_apis = {"auto": None, "on": True, "off": False}[config.getoption("--beta-dra-apis")]
        self.keep = config.getoption("--keep-cluster")
        self.artifacts = Path(config.getoption("--artifacts") or "artifacts").resolve()
        self.default_nodes = config.getoption("--nodes") or DEFAULT_NODES
        self.drivers: list[str] | None = config.getoption("--driver") or None  # None: the default profiles
        try:
            self.driver_args = parse_driver_args(config.getoption("--driver-arg"))
        except ProfileError as e:
            raise pytest.UsageError(str(e)) from None
        wi = getattr(config, "workerinput", None)
        self.runuid = wi["testrunuid"][:8] if wi else config.stash[RUN_UID]
        self.owner_pid = os.getppid() if wi else os.getpid()  # the run's controlling process
        self.clusters: dict[str, Cluster] = {}
        self.names: dict[str, str] = {}  # key -> the name the cluster was acquired under
        self.record = RunRecord()
        self.remaining: dict[str, int] = {}
        self.failed = False  # a test failed: backends export their logs on the way down
        self.kubes: dict[str, object] = {}
        self.args_now: dict[str, dict] = {}  # key -> the driver arguments its cluster runs with now
        self.acquired = 0  # clusters this process acquired
        self.reconfigured = 0  # how often a cluster's drivers were restarted on other arguments
        self.shared_workers = wi is not None  # pytest-xdist: clusters are shared with other workers
        # the clusters in the order their tests run, each with what its first test wants: the next
        # one is booted in the background while the tests of the one before it run
        self.plan: list[tuple[str, dict]] = []
        self.booting: dict[str, Future] = {}
        self.boot_errors: dict[str, str] = {}  # key -> why its cluster could not start
        self._booter: ThreadPoolExecutor | None = None
        self._downer: ThreadPoolExecutor | None = None

    def key(self, marker: pytest.Mark | None, test: str = "") -> tuple[str, dict]:
        """Which cluster a test runs on (nodes, private group; and driver arguments under xdist)
        and what it wants of it: {"nodes", "args", "gates"}. Feature gates are fixed at boot: other
        gates mean another cluster."""
        nodes, args, gates = self.default_nodes, dict(self.driver_args), {}
        # a private cluster per module, or per group name shared by the modules that give it
        excl = marker.kwargs.get("exclusive") if marker else None
        private = excl if isinstance(excl, str) else test.split("::")[0] if excl else ""
        if marker:
            n = marker.kwargs.get("nodes", 1)
            nodes = ",".join(t for t in marker.args for _ in range(n))
            for prof, a in (marker.kwargs.get("driver_args") or {}).items():
                args[prof] = args.get(prof, []) + list(a)
            gates = dict(marker.kwargs.get("gates") or {})
        by_args = sorted(args.items()) if self.shared_workers else None
        key = [nodes, by_args, private] + ([sorted(gates.items())] if gates else [])
        return json.dumps(key), {"nodes": nodes, "args": args, "gates": gates}

    def cluster(self, marker: pytest.Mark | None, test: str = "") -> Cluster:
        """The test's cluster, its drivers running with the arguments the test asks for."""
        from ..backends import BackendError

        key, want = self.key(marker, test)
        if key in self.boot_errors:  # one failed start per cluster, not one per test (a missing engine)
            raise BackendError(f"this test's cluster failed to start for an earlier test: {self.boot_errors[key]}")
        if key not in self.clusters:
            booting = self.booting.pop(key, None)
            try:
                self.clusters[key], self.args_now[key] = booting.result() if booting else self._acquire(key, want)
            except Exception as e:
                self.boot_errors[key] = f"{type(e).__name__}: {str(e)[:1000]}"
                raise
            self.acquired += 1
            self._boot_next(key)
        if self.args_now[key] != want["args"]:
            try:
                self.clusters[key].reconfigure(want["args"])
            except BackendError as e:
                pytest.skip(f"needs the drivers run with {want['args']}: {e}")
            self.args_now[key] = want["args"]
            self.reconfigured += 1
        return self.clusters[key]

    def _boot_next(self, key: str) -> None:
        """Start the cluster whose tests come after `key`'s (not under xdist: another worker may
        be the one to need it, and a reference held here would keep it up to the run's end)."""
        keys = [k for k, _ in self.plan]
        if self.shared_workers or key not in keys or keys.index(key) + 1 == len(keys):
            return
        nxt, want = self.plan[keys.index(key) + 1]
        if nxt in self.clusters or nxt in self.booting or not self.remaining.get(nxt):
            return
        if self._booter is None:
            self._booter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dra-boot")
        self.booting[nxt] = self._booter.submit(self._acquire, nxt, want)

    def _acquire(self, key: str, want: dict) -> tuple[Cluster, dict]:
        from ..backends.spec import ClusterSpec, ClusterSpecError, parse_nodes

        name = f"pt-{self.runuid}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"  # same in every worker
        try:
            spec = ClusterSpec(name=name, nodes=parse_nodes(want["nodes"], drivers=self.drivers, driver_args=want["args"]),
                               k8s_version=self.version, beta_apis=self.beta_apis, feature_gates=want.get("gates") or {})
        except ClusterSpecError as e:
            raise pytest.UsageError(str(e)) from None
        self.names[key] = name
        return shared.acquire(self.backend, spec, self.artifacts / name, self.owner_pid), want["args"]

    def release(self) -> None:
        """Every cluster this process holds goes, those still booting too (once they are up)."""
        for key, booting in list(self.booting.items()):
            del self.booting[key]
            try:
                self.clusters[key] = booting.result()[0]
            except Exception:  # a boot that failed left nothing to release (up cleans up after itself)
                continue
        if self._booter is not None:
            self._booter.shutdown(wait=True)
            self._booter = None
        for key in list(self.clusters):
            self.release_one(key)
        if self._downer is not None:  # what went down in the background is gone before the run ends
            self._downer.shutdown(wait=True)
            self._downer = None

    def release_soon(self, key: str) -> None:
        """release_one in the background: the next cluster's tests need not wait for this one's
        processes to stop. Any error is printed (the session's end waits for it)."""
        if self._downer is None:
            self._downer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dra-down")
        c, name = self.clusters.pop(key), self.names.pop(key, None)

        def down() -> None:
            try:
                self._release(c, name)
            except Exception as e:  # nothing to raise into; the cluster's name says what to clean up
                print(f"dra-harness: bringing cluster {c.name} down failed: {e} (dra-harness down --name {c.name})")

        self._downer.submit(down)

    def release_one(self, key: str) -> None:
        """Drop this session's use of a cluster; the last user (across xdist workers) stops it."""
        self._release(self.clusters.pop(key), self.names.pop(key, None))

    def _release(self, c: Cluster, name: str | None) -> None:
        shared.release(self.backend, c, keep=self.keep, export_logs_to=c.artifacts if self.failed else None, name=name)


def _session(config: pytest.Config) -> DraSession:
    if SESSION not in config.stash:
        config.stash[SESSION] = DraSession(config)
    return config.stash[SESSION]


def pytest_collection_modifyitems(session, config, items):
    """Run the tests of one cluster together (the default cluster first), and remember how many
    each cluster has, so it can be stopped right after its last test instead of at the end."""
    s = _session(config)
    keyed = []
    args_of: dict[int, str] = {}  # id(item) -> its driver arguments, to group tests of one configuration
    for i, item in enumerate(items):
        if "dra_cluster" in getattr(item, "fixturenames", ()):
            key, want = s.key(item.get_closest_marker("topology"), item.nodeid)
            item.stash[CLUSTER_KEY] = key
            keyed.append(key)
            args_of[id(item)] = json.dumps(sorted(want["args"].items()))
    # the default cluster first, then the larger clusters: each boots in the background while the
    # tests before it run, and a large one's boot hides best behind the default cluster's many tests
    size = {k: len(json.loads(k)[0].split(",")) for k in keyed}
    order = {k: n for n, k in enumerate(dict.fromkeys(sorted(keyed, key=lambda k: (k != s.key(None)[0], -size[k]))))}
    base = json.dumps(sorted(s.driver_args.items()))  # a cluster's plain configuration comes first
    items.sort(key=lambda it: (order.get(it.stash.get(CLUSTER_KEY, None), -1),
                               args_of.get(id(it), base) != base, args_of.get(id(it), base)))
    s.remaining = {k: keyed.count(k) for k in order}
    firsts: dict[str, dict] = {}
    for item in items:
        key = item.stash.get(CLUSTER_KEY, None)
        if key is not None and key not in firsts:
            firsts[key] = s.key(item.get_closest_marker("topology"), item.nodeid)[1]
    s.plan = list(firsts.items())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    s = item.config.stash.get(SESSION, None)
    key = item.stash.get(CLUSTER_KEY, None)
    if s is None or key is None or key not in s.remaining:
        return
    s.remaining[key] -= 1
    if s.remaining[key] == 0 and key in s.clusters:
        s.release_soon(key)


@pytest.fixture(scope="session")
def dra_session(pytestconfig):
    s = _session(pytestconfig)
    yield s
    s.release()


@pytest.fixture
def dra_cluster(request, dra_session):
    cluster = dra_session.cluster(request.node.get_closest_marker("topology"), request.node.nodeid)
    k8s = request.node.get_closest_marker("k8s")
    if k8s and cluster.k8s_version:
        have = _minor(cluster.k8s_version)
        if k8s.kwargs.get("min") and have < _minor(k8s.kwargs["min"]):
            pytest.skip(f"needs Kubernetes >= {k8s.kwargs['min']} (cluster: {cluster.k8s_version})")
        if k8s.kwargs.get("max") and have > _minor(k8s.kwargs["max"]):
            pytest.skip(f"needs Kubernetes <= {k8s.kwargs['max']} (cluster: {cluster.k8s_version})")
    for bug in request.node.iter_markers("upstream_bug"):
        # an upstream bug the scenario reproduces: where it is open the test must fail, and a
        # pass there (the bug fixed in a patch release) fails the run, so the suite notices
        fixed_in = bug.kwargs.get("fixed_in")
        if cluster.k8s_version and bug_open_in(cluster.k8s_version, fixed_in, bug.kwargs.get("since")):
            where = f"fixed in {', '.join(_fixes(fixed_in))}" if fixed_in else "open upstream"
            request.applymarker(pytest.mark.xfail(strict=True, reason=f"{bug.args[0]} is open in "
                                                  f"{cluster.k8s_version} ({where}): {bug.kwargs.get('why', '')}"))
    return cluster


def _minor(v: str) -> tuple[int, int]:
    return _version(v)[:2]


def _version(v: str) -> tuple[int, int, int]:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", v)
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else (0, 0, 0)


def _fixes(fixed_in: str | list[str]) -> list[str]:
    return [fixed_in] if isinstance(fixed_in, str) else list(fixed_in)


def bug_open_in(version: str, fixed_in: str | list[str] | None, since: str | None = None) -> bool:
    """Whether an upstream bug is open in `version`. `fixed_in`: None (open everywhere), a
    release ("1.35": every 1.35 and later has the fix), or the first fixed patch of each
    minor it was cherry-picked to (["1.35.5", "1.36.1", "1.37.0"]): a minor listed is fixed
    from its patch on, a later minor than any listed is fixed, an earlier one is open.
    `since`: the first release with the bug (older ones never had it, so the test must pass)."""
    have = _version(version)
    if since and have < _version(since):
        return False
    if fixed_in is None:
        return True
    fixes = [_version(f) for f in _fixes(fixed_in)]
    same = [f for f in fixes if f[:2] == have[:2]]
    return have < same[0] if same else have[:2] < min(f[:2] for f in fixes)


@pytest.fixture
def dra_kube(dra_cluster, dra_session):
    """One client per cluster for the session (its API discovery is not free)."""
    from ..kube import Kube

    key = str(dra_cluster.kubeconfig)
    if key not in dra_session.kubes:
        kube = dra_session.kubes[key] = Kube(key)
        kube.health = dra_cluster.failure  # a failed cluster ends every wait at once, with its reason
    return dra_session.kubes[key]


@pytest.fixture
def dra_truth(dra_cluster) -> dict:
    return dra_cluster.truths()


@pytest.fixture
def dra(request, dra_cluster, dra_kube, dra_session):
    """A fresh namespace (deleted after the test) and the harness API bound to it."""
    from .api import Dra

    ns = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:5]
    dra_kube.create_namespace(ns, labels={"dra-harness.io/test": "true"})
    api = Dra(dra_cluster, ns, dra_kube, dra_session.record, request.node.nodeid)
    request.node.stash[API] = api
    yield api
    try:
        release_namespace(dra_kube, ns)
    except Exception as e:  # cleanup must not hide the test's own result
        print(f"dra-harness: cleanup of namespace {ns}: {e}")
    try:
        api.cleanup()
    except Exception as e:
        print(f"dra-harness: cleanup of taint rules and broken devices: {e}")


@pytest.fixture
def dra_platform(dra, dra_kube):
    """Apply a golden-path kit for this test (`dra_platform(path)`): team namespaces unique to the
    test, workloads, admin actions and the five metrics (harness.testing.platform.Platform)."""
    from .platform import Platform

    made = []

    def make(kit_path) -> Platform:
        p = Platform(dra_kube, kit_path, dra.ns[:40], dra.truths())
        made.append(p)
        dra.namespaces += [ns for nss in p.kit.teams.values() for ns in nss]
        dra.ledgers[p.kit.name] = p.ledger_json
        return p

    yield make
    for p in made:
        try:
            p.close()
        except Exception as e:  # cleanup must not hide the test's own result
            print(f"dra-harness: platform cleanup: {e}")


def release_namespace(kube, ns: str, timeout: float = 60) -> None:
    """Give the test's devices back before the next test starts: pods, then claims, must be
    gone (the controller deallocates a claim once no pod reserves it); the namespace itself is
    then deleted in the background."""
    kube.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
    kube.wait("Pod", lambda lst: not lst["items"], namespace=ns, timeout=timeout, what=f"the pods of {ns} to be gone")
    kube.res.delete_collection_namespaced_resource_claim(ns)
    kube.wait("ResourceClaim", lambda lst: not lst["items"], namespace=ns, timeout=timeout,
              what=f"the claims of {ns} to be deleted (devices released)")
    kube.core.delete_namespace(ns)


# -- reports -----------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    api = item.stash.get(API, None)
    if api is None or rep.when != "call":
        return
    if api.verdicts:
        rep.sections.append(("dra-harness verdicts", "\n".join(str(v) for v in api.verdicts)))
    if rep.failed:
        import shutil

        from ..repro.capture import capture

        sess = _session(item.config)
        sess.failed = True  # backends export their logs on the way down
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[-120:]
        notes = [str(v) for v in api.verdicts]
        try:
            claims, _ = api.kube.list("ResourceClaim", namespace=api.ns)
            notes += [str(api.explain(c["metadata"]["name"])) for c in claims if not (c.get("status") or {}).get("allocation")]
            ledgers = {}
            for name, get in api.ledgers.items():
                try:
                    ledgers[name] = get()
                except Exception as e:  # a ledger that cannot be read is named, the bundle goes on
                    ledgers[name] = json.dumps({"error": str(e)[:300]})
            out = sess.artifacts / "failures" / safe
            shutil.rmtree(out, ignore_errors=True)  # a bundle of an earlier run of the same test
            capture(api.kube, out, api.cluster, api.namespaces,
                    log_dir=api.cluster.artifacts / "logs" if api.cluster.artifacts else None,
                    notes="\n\n".join(notes), ledgers=ledgers)
            rep.sections.append(("dra-harness", f"failure bundle: {out} (reproduce it: dra-harness repro {out})\n"
                                 + "\n\n".join(notes)))
        except Exception as e:  # the bundle is best effort; the failure itself must stay visible
            rep.sections.append(("dra-harness", f"could not write the failure bundle: {e}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    sess = config.stash.get(SESSION, None)
    if sess is not None and sess.acquired:
        n = sess.reconfigured
        terminalreporter.write_line(f"dra-harness: {sess.acquired} cluster{'s' * (sess.acquired != 1)}, "
                                    f"{n} driver reconfiguration{'s' * (n != 1)}")
    if sess is None or not (sess.record.verdicts or sess.record.pending):
        return
    from ..judge.summary import render, write

    tr = terminalreporter
    tr.section("dra-harness summary")
    for line in render(sess.record, tr.stats):
        tr.write_line(line)
    path = write(sess.record, tr.stats, sess.artifacts)
    tr.write_line(f"(written to {path})")


def pytest_sessionfinish(session, exitstatus):
    sess = session.config.stash.get(SESSION, None)
    if sess is not None and (sess.clusters or sess.booting):
        sess.release()
    if sess is not None and hasattr(session.config, "workeroutput"):  # xdist worker: hand its record over
        session.config.workeroutput["dra_record"] = sess.record.to_json()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: merge a worker's record into the run's summary."""
    data = getattr(node, "workeroutput", {}).get("dra_record")
    if data:
        _session(node.config).record.merge_json(data)

