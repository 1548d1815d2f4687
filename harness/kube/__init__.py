"""Kubernetes helpers on the official client: apply/delete plain dicts, and watch-based waits
with a deadline whose failures say what was awaited and what was last seen."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient


class RawWatch(watch.Watch):
    """Watch events as plain dicts. The client looks up a model class per list function and
    misses V1ResourceClaim (its model is ResourceV1ResourceClaim); we use raw objects anyway."""

    def get_return_type(self, func):  # noqa: D102
        return None


class WaitTimeout(AssertionError):
    """A wait that ran out of time; an AssertionError so pytest shows the message plainly."""


class ClusterFailed(AssertionError):
    """The cluster said it cannot go on (a component no restart can help): a wait ends at once."""


def poll_until(cond: Callable[[], bool], what: str, timeout: float, every: float = 0.05) -> None:
    """For state with no API to watch (in-process ledgers, files): poll `cond` until it holds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


HEALTH_EVERY = 5.0  # seconds: how often a wait asks whether the cluster has failed


@dataclass(frozen=True)
class Kind:
    list_fn: str  # method on the API class
    api: str  # "core" | "res"
    namespaced: bool


KINDS = {
    "Pod": Kind("list_namespaced_pod", "core", True),
    "PodAll": Kind("list_pod_for_all_namespaces", "core", False),
    "Node": Kind("list_node", "core", False),
    "Event": Kind("list_namespaced_event", "core", True),
    "EventAll": Kind("list_event_for_all_namespaces", "core", False),
    "ResourceClaimAll": Kind("list_resource_claim_for_all_namespaces", "res", False),
    "ServiceAccount": Kind("list_namespaced_service_account", "core", True),
    "ResourceSlice": Kind("list_resource_slice", "res", False),
    "ResourceClaim": Kind("list_namespaced_resource_claim", "res", True),
    "DeviceClass": Kind("list_device_class", "res", False),
    "DaemonSet": Kind("list_namespaced_daemon_set", "apps", True),
}


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.res = client.ResourceV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self._dyn: DynamicClient | None = None
        # why the cluster cannot go on, or None (harness.backends.Cluster.failure): waits ask it
        self.health: Callable[[], str | None] | None = None

    @property
    def dyn(self) -> DynamicClient:
        if self._dyn is None:
            self._dyn = DynamicClient(self.api)
        return self._dyn

    def raw(self, path: str) -> bytes:
        """A GET of a non-resource path (/metrics, /version) through the client's connection, its
        TLS and credentials; a status that is not 2xx raises ApiException."""
        method, url, headers, _, _ = self.api.param_serialize("GET", path, auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers)
        resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp)
        return resp.data

    # -- objects as dicts ------------------------------------------------------------------------
    def apply(self, obj: dict) -> dict:
        """Create, or replace when it exists (last writer wins: these are the harness's objects)."""
        r = self.dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns = obj["metadata"].get("namespace")
        try:
            return r.create(body=obj, namespace=ns).to_dict()
        except ApiException as e:
            if e.status != 409:
                raise
            cur = r.get(name=obj["metadata"]["name"], namespace=ns)
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": cur.metadata.resourceVersion}}
            return r.replace(body=obj, namespace=ns).to_dict()

    def delete(self, obj: dict, wait: bool = False, timeout: float = 60) -> None:
        r = self.dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
        try:
            r.delete(name=name, namespace=ns)
        except ApiException as e:
            if e.status != 404:
                raise
            return
        if wait:
            self.wait(obj["kind"], lambda o: o is None, namespace=ns, name=name, timeout=timeout,
                      what=f"{obj['kind']} {ns + '/' if ns else ''}{name} to be deleted")

    # -- DeviceTaintRules: served as v1 from 1.37, v1beta2 in 1.36 (with its gate), v1alpha3 from
    # 1.33 (dra-features.md §1.1); the newest the server offers is the one to use
    TAINT_RULE_VERSIONS = ("v1", "v1beta2", "v1alpha3")

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the server serves `kind` in `api_version` (discovery; runtime-config decides)."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            self.dyn.resources.get(api_version=api_version, kind=kind)
            return True
        except ResourceNotFoundError:
            return False

    def taint_rule_api(self) -> str | None:
        """"resource.k8s.io/VERSION" of the DeviceTaintRules this server serves, or None."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        if not hasattr(self, "_taint_rule_api"):
            self._taint_rule_api = None
            for v in self.TAINT_RULE_VERSIONS:
                try:
                    self.dyn.resources.get(api_version=f"resource.k8s.io/{v}", kind="DeviceTaintRule")
                except ResourceNotFoundError:
                    continue
                self._taint_rule_api = f"resource.k8s.io/{v}"
                break
        return self._taint_rule_api

    def taint_rules(self) -> list[dict]:
        """Every DeviceTaintRule (none where the server serves no version of them)."""
        api = self.taint_rule_api()
        if api is None:
            return []
        return self.dyn.resources.get(api_version=api, kind="DeviceTaintRule").get().to_dict()["items"]

    def create_namespace(self, name: str, labels: dict | None = None, timeout: float = 30) -> None:
        """Create a namespace and wait until pods can be created in it (its default ServiceAccount)."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
        self.wait("ServiceAccount", lambda o: o is not None, namespace=name, name="default", timeout=timeout,
                  what=f"the default ServiceAccount of namespace {name}")

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        items, _ = self.list(kind, namespace=namespace, field_selector=f"metadata.name={name}")
        return items[0] if items else None

    def list(self, kind: str, namespace: str | None = None, **kw) -> tuple[list[dict], str]:
        k = KINDS[kind]
        fn = getattr(getattr(self, k.api), k.list_fn)
        args = (namespace,) if k.namespaced else ()
        data = json.loads(fn(*args, _preload_content=False, **kw).data)
        return data["items"], data["metadata"]["resourceVersion"]

    def stream(self, kind: str, namespace: str | None, rv: str, timeout: float, **kw) -> Iterator[tuple[str, dict]]:
        k = KINDS[kind]
        fn = getattr(getattr(self, k.api), k.list_fn)
        args = (namespace,) if k.namespaced else ()
        w = RawWatch()
        try:
            for ev in w.stream(fn, *args, resource_version=rv, timeout_seconds=max(1, int(timeout + 0.999)),
                               allow_watch_bookmarks=False, **kw):
                yield ev["type"], ev["raw_object"]
        finally:
            w.stop()

    # -- waits -----------------------------------------------------------------------------------
    def wait(self, kind: str, predicate: Callable[[dict | None], bool], *, what: str, timeout: float,
             namespace: str | None = None, name: str | None = None, label_selector: str | None = None,
             describe: Callable[[dict | None], str] | None = None) -> dict | None:
        """Wait until `predicate(obj)` holds for the named object (None = absent), or, without
        a name, for the list of matching objects passed as {"items": [...]}. Watch-based."""
        describe = describe or _describe
        deadline = time.monotonic() + timeout
        kw = {}
        if name:
            kw["field_selector"] = f"metadata.name={name}"
        if label_selector:
            kw["label_selector"] = label_selector
        state: dict[str, dict] = {}
        rv: str | None = None

        def current():
            if name:
                return next(iter(state.values()), None)
            return {"items": list(state.values())}

        while True:
            self._check_health()
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {describe(current())}")
            try:
                if rv is None:
                    items, rv = self.list(kind, namespace=namespace, **kw)
                    state = {i["metadata"]["name"] + "/" + (i["metadata"].get("namespace") or ""): i for i in items}
                    if predicate(current()):
                        return current()
                # in slices of at most HEALTH_EVERY seconds, so a failed cluster is noticed soon
                for typ, obj in self.stream(kind, namespace, rv, min(left, HEALTH_EVERY), **kw):
                    if typ == "ERROR":  # e.g. 410 Gone: relist
                        raise _Relist()
                    key = obj["metadata"]["name"] + "/" + (obj["metadata"].get("namespace") or "")
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if typ == "DELETED":
                        state.pop(key, None)
                    else:
                        state[key] = obj
                    if predicate(current()):
                        return current()
                    if time.monotonic() >= deadline:
                        break
            except _Relist:
                rv = None
            except ApiException as e:
                if e.status != 410 and not transient(e):
                    raise
                rv = None
                if e.status != 410:
                    time.sleep(0.5)
            except Exception as e:  # no connection: an API server restarting is waited for, a failed cluster is not
                if not transient(e):
                    raise
                self._check_health()
                rv = None
                time.sleep(0.5)

    def _check_health(self) -> None:
        failure = self.health() if self.health else None
        if failure:
            raise ClusterFailed(f"the cluster failed: {failure}")

    def stays(self, kind: str, predicate: Callable[[dict | None], bool], *, what: str, seconds: float,
              namespace: str | None = None, name: str | None = None, describe=None) -> dict | None:
        """Assert `predicate` holds for `seconds` (e.g. a claim stays pending): watch until the
        deadline and fail at the first event that breaks it."""
        describe = describe or _describe
        try:
            obj = self.wait(kind, lambda o: not predicate(o), what="(holding)", timeout=seconds,
                            namespace=namespace, name=name)
        except WaitTimeout:
            items, _ = self.list(kind, namespace=namespace, field_selector=f"metadata.name={name}" if name else None)
            return items[0] if (name and items) else None
        raise WaitTimeout(f"expected {what} for {seconds:.0f}s, but it changed: {describe(obj)}")


class _Relist(Exception):
    pass


def _describe(obj: dict | None) -> str:
    if obj is None:
        return "absent"
    if "items" in obj and "metadata" not in obj:
        return f"{len(obj['items'])} object(s): " + ", ".join(i["metadata"]["name"] for i in obj["items"][:10])
    status = obj.get("status") or {}
    return json.dumps({"name": obj["metadata"]["name"], "status": status}, default=str)[:1500]


TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def transient(e: Exception) -> bool:
    """An API error worth retrying: throttling, a server error, no connection (an API server
    restarting), or a 409 from the quota admission's own optimistic update ("Operation cannot
    be fulfilled on resourcequotas"), which the API server returns to the creating client."""
    if isinstance(e, ApiException):
        if e.status in TRANSIENT_STATUS or not e.status:
            return True
        return e.status == 409 and "resourcequotas" in (e.body or "") + str(e.reason)
    import urllib3.exceptions

    return isinstance(e, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def retrying(fn: Callable, *args, attempts: int = 6, first: float = 0.2, **kw):
    """Call `fn`, retrying transient API errors with exponential back-off (0.2 s doubling, six
    tries: about 6 s in all); any other error, or the last transient one, is raised."""
    delay = first
    for i in range(attempts):
        try:
            return fn(*args, **kw)
        except Exception as e:
            if i == attempts - 1 or not transient(e):
                raise
            time.sleep(delay)
            delay *= 2
