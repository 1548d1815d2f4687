"""A list-then-watch cache of one kind, with client-go's informer semantics, so that whoever
joins several kinds sees every change of each exactly as the API server ordered it.

Why not a plain watch loop: a watch alone misses what happened before it started and after it
broke. client-go's Reflector lists, watches from the list's resourceVersion, re-watches from
the last resourceVersion it saw when a stream ends, and re-lists when that version is too old
(410 Gone); a re-list is turned into the ADDED/MODIFIED/DELETED events that tell the difference
(DeltaFIFO.Replace). This does the same, on plain dicts.

Handlers are called on the informer's thread, one event at a time, in the order of the stream;
separate informers deliver in no order relative to each other, which is why a joiner must not
depend on it (platform/recorder.py)."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

from kubernetes.client.rest import ApiException

log = logging.getLogger("informer")

Handler = Callable[[str, dict], None]  # ("ADDED" | "MODIFIED" | "DELETED", object)
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0


class Source(Protocol):
    """What an informer needs of a client (harness.kube.Kube has it)."""

    def list(self, kind: str, namespace: str | None = None, **kw) -> tuple[list[dict], str]: ...
    def stream(self, kind: str, namespace: str | None, rv: str, timeout: float, **kw): ...


def key_of(obj: dict) -> str:
    md = obj["metadata"]
    return f"{md.get('namespace') or ''}/{md['name']}"


class Gone(Exception):
    """The watch's resourceVersion is too old: the informer must list again."""


class Informer:
    def __init__(self, source: Source, kind: str, handler: Handler, *, namespace: str | None = None,
                 watch_timeout: float = 30) -> None:
        self.source, self.kind, self.handler, self.namespace = source, kind, handler, namespace
        self.watch_timeout = watch_timeout
        self.lock = threading.Lock()
        self.store: dict[str, dict] = {}
        self.synced = threading.Event()
        # what happened, for logs and tests: lists, re-watches after a stream ended or broke,
        # errors (each followed by a back-off), handler failures
        self.counts = {"lists": 0, "rewatches": 0, "errors": 0, "handler_errors": 0}
        self.last_error = ""

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.store.values())

    def run(self, stop: threading.Event) -> None:
        """List and watch until `stop` is set; API errors back off and retry, never end the loop."""
        rv: str | None = None
        backoff = BACKOFF_FIRST
        while not stop.is_set():
            try:
                if rv is None:
                    items, rv = self.source.list(self.kind, namespace=self.namespace)
                    self.counts["lists"] += 1
                    self._replace(items)
                    self.synced.set()
                for typ, obj in self.source.stream(self.kind, self.namespace, rv, self.watch_timeout):
                    if stop.is_set():
                        return
                    if typ == "ERROR":
                        if (obj or {}).get("code") == 410:
                            raise Gone()
                        raise ApiException(status=(obj or {}).get("code"), reason=(obj or {}).get("message", "watch error"))
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if typ == "BOOKMARK":
                        continue
                    self._deliver(typ, obj)
                    backoff = BACKOFF_FIRST
                self.counts["rewatches"] += 1  # the stream ended (timeout, server closed): watch on from rv
            except Gone:
                log.info("%s: resourceVersion %s is gone, listing again", self.kind, rv)
                rv = None
            except ApiException as e:
                if e.status == 410:
                    log.info("%s: resourceVersion %s is gone, listing again", self.kind, rv)
                    rv = None
                    continue
                backoff = self._failed(stop, f"{e.status} {e.reason}", backoff)
            except Exception as e:  # connection refused or reset (an API server restarting): retry
                backoff = self._failed(stop, f"{type(e).__name__}: {e}", backoff)

    def _failed(self, stop: threading.Event, what: str, backoff: float) -> float:
        self.counts["errors"] += 1
        self.last_error = what[:300]
        if not stop.is_set():
            log.warning("%s watch: %s (retrying in %.1fs)", self.kind, self.last_error, backoff)
            stop.wait(backoff)
        return min(BACKOFF_MAX, backoff * 2)

    def _deliver(self, typ: str, obj: dict) -> None:
        k = key_of(obj)
        with self.lock:
            if typ == "DELETED":
                self.store.pop(k, None)
            else:
                self.store[k] = obj
        self._call(typ, obj)

    def _replace(self, items: list[dict]) -> None:
        """A fresh list: the difference from what was known, as events (deleted ones with their
        last known state, as client-go's DeletedFinalStateUnknown)."""
        fresh = {key_of(o): o for o in items}
        with self.lock:
            old, self.store = self.store, dict(fresh)
        for k, o in old.items():
            if k not in fresh:
                self._call("DELETED", o)
        for k, o in fresh.items():
            before = old.get(k)
            if before is None:
                self._call("ADDED", o)
            elif before["metadata"].get("resourceVersion") != o["metadata"].get("resourceVersion"):
                self._call("MODIFIED", o)

    def _call(self, typ: str, obj: dict) -> None:
        try:
            self.handler(typ, obj)
        except Exception:  # a handler's bug is logged with its traceback and counted, not fatal
            self.counts["handler_errors"] += 1
            log.exception("%s handler failed on %s %s", self.kind, typ, key_of(obj))


def start(informers: list[Informer], stop: threading.Event, sync_timeout: float = 30) -> list[threading.Thread]:
    """Run each informer on a daemon thread and wait until every one has listed once."""
    threads = [threading.Thread(target=i.run, args=(stop,), name=f"informer-{i.kind}", daemon=True) for i in informers]
    for t in threads:
        t.start()
    for i in informers:
        if not i.synced.wait(sync_timeout):
            raise TimeoutError(f"the {i.kind} informer did not list within {sync_timeout:.0f}s: {i.last_error or 'no answer'}")
    return threads
