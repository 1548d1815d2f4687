"""ResourceSlices of one driver on one node: build them, and publish them through the official
kubernetes client's connection (rest.py; pool = node name, generation bumped on every change, at
most 128 devices per slice, stale slices removed). dra-api.md §1.6."""

from __future__ import annotations

import logging
import re

from kubernetes.client.rest import ApiException

from . import taints as taintsmod
from .rest import Rest

MAX_DEVICES = 128  # ResourceSliceMaxDevices
COUNTER_SETS_PER_SLICE = 8  # ResourceSliceMaxCounterSets (1.35+)
log = logging.getLogger("refdriver.slices")


def slice_name(node: str, driver: str, i: int) -> str:
    base = re.sub(r"[^a-z0-9.-]", "-", f"{node}-{driver}".lower())
    return f"{base[:240]}-{i}"


def bodies(devices: list[dict], per_slice: int = MAX_DEVICES, counter_sets: list[dict] | None = None,
           split: bool = True) -> list[dict]:
    """What each of the pool's slices holds. Counter sets (partitions.py) sit in slices of their
    own from 1.35 (`split`), 8 to a slice, ahead of the devices; in 1.34 in the one slice of the
    devices that consume them (dra-features.md §1.2)."""
    if counter_sets and not split:
        return [{"devices": devices, "sharedCounters": counter_sets}]
    sets = counter_sets or []
    specs = [{"sharedCounters": sets[i:i + COUNTER_SETS_PER_SLICE]} for i in range(0, len(sets), COUNTER_SETS_PER_SLICE)]
    specs += [{"devices": devices[i:i + per_slice]} for i in range(0, len(devices), per_slice)]
    return specs if devices else specs + [{"devices": []}]


def build(node: str, driver: str, devices: list[dict], generation: int, owner: dict | None = None,
          per_slice: int = MAX_DEVICES, counter_sets: list[dict] | None = None, split: bool = True) -> list[dict]:
    """The pool's slices (bodies() says what each holds)."""
    specs = bodies(devices, per_slice, counter_sets, split)
    out = []
    for i, body in enumerate(specs):
        meta: dict = {"name": slice_name(node, driver, i)}
        if owner:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": owner["name"],
                                        "uid": owner["uid"], "controller": True}]
        out.append({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": meta,
            "spec": {"driver": driver, "nodeName": node,
                     "pool": {"name": node, "generation": generation, "resourceSliceCount": len(specs)},
                     **body},
        })
    return out


class Publisher:
    """Keeps the API server's slices of (driver, node) equal to the discovered devices."""

    def __init__(self, api, node: str, driver: str, keep_taint_times: bool = True) -> None:
        self.rest = Rest(api)  # over a kubernetes.client.ApiClient
        self.node, self.driver = node, driver
        self.published: list[dict] | None = None
        self.generation = 0
        self._owner: dict | None = None
        self.caps: taintsmod.Caps | None = None
        self.keep_taint_times = keep_taint_times
        self.given: list[dict] | None = None  # the devices of the last successful publish, as given
        self.counter_sets: list[dict] = []  # the counter sets published with them

    def _existing(self) -> list[dict]:
        return self.rest.list_slices(f"spec.driver={self.driver},spec.nodeName={self.node}")

    def _owner_ref(self) -> dict | None:
        if self._owner is None:
            try:
                n = self.rest.read_node(self.node)
                self._owner = {"name": self.node, "uid": n["metadata"]["uid"]}
            except ApiException as e:
                if e.status != 404:
                    raise
                log.warning("node %s does not exist; slices get no owner reference", self.node)
        return self._owner

    def publish(self, devices: list[dict], counter_sets: list[dict] | None = None) -> bool:
        """Create/update/delete slices so the pool holds `devices` (and the `counter_sets` they
        consume, partitions.py); returns True if anything changed. Taints are fitted to the
        server's version and get their timeAdded (taints.py), and so is the slice shape."""
        if self.caps is None:
            self.caps = taintsmod.Caps.of_server(self.rest)
        given, devices = devices, taintsmod.fit(devices, self.caps)
        counter_sets = counter_sets or []
        per_slice = self.caps.max_devices(any(d.get("taints") or d.get("consumesCounters") for d in devices))
        split = self.caps.split_counters
        existing = {s["metadata"]["name"]: s for s in self._existing()}
        if self.published is None:  # first publish after (re)start: continue the pool's generation
            self.generation = max((s["spec"]["pool"]["generation"] for s in existing.values()), default=0)
            ordered = sorted(existing.values(), key=lambda s: s["metadata"]["name"])
            current = [d for s in ordered for d in s["spec"].get("devices") or []]
            current_sets = [c for s in ordered for c in s["spec"].get("sharedCounters") or []]
            taintsmod.stamp(devices, current if self.keep_taint_times else [])
            if current == devices and current_sets == counter_sets and existing:
                self.published, self.given, self.counter_sets = devices, given, counter_sets
                return False
        else:
            taintsmod.stamp(devices, self.published)
            if devices == self.published and counter_sets == self.counter_sets and \
                    len(existing) == len(bodies(devices, per_slice, counter_sets, split)):
                self.given = given
                return False
        self.generation += 1
        wanted = build(self.node, self.driver, devices, self.generation, self._owner_ref(), per_slice, counter_sets, split)
        for s in wanted:
            name = s["metadata"]["name"]
            if name in existing:
                s["metadata"]["resourceVersion"] = existing[name]["metadata"]["resourceVersion"]
                self.rest.replace_slice(name, s)
            else:
                self.rest.create_slice(s)
        for name in existing.keys() - {s["metadata"]["name"] for s in wanted}:
            try:
                self.rest.delete_slice(name)
            except ApiException as e:
                if e.status != 404:
                    raise
        self.published, self.given, self.counter_sets = devices, given, counter_sets
        log.info("published", extra={"fields": {"slices": len(wanted), "devices": len(devices),
                                                  "generation": self.generation}})
        return True

    def withdraw(self) -> None:
        """Delete this driver's slices on this node (driver shutdown with --cleanup)."""
        for s in self._existing():
            try:
                self.rest.delete_slice(s["metadata"]["name"])
            except ApiException as e:
                if e.status != 404:
                    raise
