"""Workload traces for `dra-harness replay`: a list of workloads (arrival, duration, team,
class, the devices the job really uses), read with the bounded loader, and a seeded generator
of synthetic ones."""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fakedev import safeyaml

from .kit import Kit, KitError


@dataclass
class Workload:
    at: float  # arrival, seconds from the start of the trace
    duration: float  # seconds it runs once it has its devices
    team: str
    klass: str
    needs: int  # Neuron devices the job really uses (wrong-class when it contradicts the class)


@dataclass
class Trace:
    name: str
    kit: str  # path of the golden-path kit
    nodes: str  # as --nodes: presets, comma-separated
    duration: float
    workloads: list[Workload] = field(default_factory=list)
    evict_after: float | None = None  # an on-call admin evicts lower-priority work for a workload pending this long

    def to_dict(self) -> dict:
        d = asdict(self)
        d["workloads"] = [{"at": w.at, "duration": w.duration, "team": w.team, "class": w.klass, "needs": w.needs}
                          for w in self.workloads]
        return d


NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_WORKLOADS = 10_000  # what fits in the loader's 1 MiB (about 85 bytes a workload)
MAX_SECONDS = 7 * 86400.0  # a week of trace: arrivals, durations and evict_after
TRACE_KEYS = {"name", "kit", "nodes", "duration", "workloads", "evict_after"}
WORKLOAD_KEYS = {"at", "duration", "team", "class", "needs"}


def seconds(v: object, where: str, src: str, lo: float = 0.0, lo_open: bool = False) -> float:
    """A finite number of trace seconds in [lo, MAX_SECONDS]: a NaN or infinite time would make
    the replay wait forever (reliability-probe-2.md rows 36-41, 47)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo or (lo_open and v == lo) or v > MAX_SECONDS:
        bound = f"{'>' if lo_open else '>='} {lo:g}"
        raise KitError(src, where, f"a finite number of seconds {bound} and <= {MAX_SECONDS:.0f} is required, got {v!r:.40}")
    return float(v)


def _text(v: object, where: str, src: str) -> str:
    if not isinstance(v, str) or not v:
        raise KitError(src, where, f"a string is required, got {v!r:.40}")
    return v


def load(path: str | Path, kit: Kit | None = None) -> Trace:
    """A trace, every field checked before anything starts; with `kit`, its teams and classes
    must be the kit's (a workload of an unknown team or class would be skipped or crash mid-run)."""
    src = str(path)
    try:
        d = safeyaml.load_file(path)
    except safeyaml.YamlLimitError as e:
        raise ValueError(str(e)) from None
    if not isinstance(d, dict) or not {"name", "kit", "nodes", "duration", "workloads"} <= set(d):
        raise KitError(src, "trace", "needs name, kit, nodes, duration, workloads")
    unknown = sorted(map(str, set(d) - TRACE_KEYS))
    if unknown:
        raise KitError(src, unknown[0][:40], f"unknown key (known: {', '.join(sorted(TRACE_KEYS))})")
    name = d["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # it names the run directory (row 46)
        raise KitError(src, "name", "a DNS label (lower-case letters, digits, '-'; at most 63 characters) is required")
    duration = seconds(d["duration"], "duration", src, lo_open=True)
    evict = None if d.get("evict_after") is None else seconds(d["evict_after"], "evict_after", src, lo_open=True)
    if not isinstance(d["workloads"], list) or len(d["workloads"]) > MAX_WORKLOADS:
        raise KitError(src, "workloads", f"a list of at most {MAX_WORKLOADS} workloads is required")
    ws = []
    for i, w in enumerate(d["workloads"]):
        at = f"workloads[{i}]"
        if not isinstance(w, dict) or set(w) != WORKLOAD_KEYS:
            extra = sorted(map(str, set(w) - WORKLOAD_KEYS)) if isinstance(w, dict) else []
            raise KitError(src, at, f"needs at, duration, team, class, needs" + (f" (unknown key {extra[0][:40]})" if extra else ""))
        needs = w["needs"]
        if isinstance(needs, bool) or not isinstance(needs, int) or not 1 <= needs <= 1024:
            raise KitError(src, f"{at}.needs", f"a whole number of devices from 1 to 1024 is required, got {needs!r:.40}")
        ws.append(Workload(seconds(w["at"], f"{at}.at", src), seconds(w["duration"], f"{at}.duration", src, lo_open=True),
                           _text(w["team"], f"{at}.team", src), _text(w["class"], f"{at}.class", src), needs))
    kit_path = _text(d["kit"], "kit", src)
    nodes = _text(d["nodes"], "nodes", src)
    if not Path(kit_path).is_absolute():
        rel = Path(path).parent / kit_path
        kit_path = str(rel.resolve()) if rel.exists() else kit_path
    t = Trace(name, kit_path, nodes, duration, sorted(ws, key=lambda w: w.at), evict)
    if kit is not None:
        check_against(t, kit, src)
    return t


def check_against(t: Trace, kit: Kit, src: str) -> None:
    """Every workload's team and class exist in the kit (a team outside the class is fine: that
    is a wrong-class request, and the replay counts its denial)."""
    for i, w in enumerate(t.workloads):
        if w.team not in kit.teams:
            raise KitError(src, f"workloads[{i}].team", f"{w.team!r:.40} is not a team of kit {kit.name} "
                                                         f"(teams: {', '.join(sorted(kit.teams))})")
        if w.klass not in kit.classes:
            raise KitError(src, f"workloads[{i}].class", f"{w.klass!r:.40} is not a class of kit {kit.name} "
                                                          f"(classes: {', '.join(sorted(kit.classes))})")


# Per trace kind: (class, share of arrivals, typical duration s, how `needs` is drawn)
MIXES = {
    # about 60 % of 8 trn1.32xlarge nodes' Neuron devices busy on average
    "healthy": [("small-inference", 0.40, 90), ("batch-inference", 0.25, 150), ("interactive-experiment", 0.20, 120),
                ("distributed-training", 0.12, 240), ("large-reserved-training", 0.03, 300)],
    # about 80 %, most of it in three-device jobs that leave every row they touch one device short
    "stranding": [("trio-inference", 0.55, 150), ("batch-inference", 0.25, 120), ("distributed-training", 0.20, 120)],
}


def generate(kind: str, kit: Kit, kit_path: str, seed: int = 1, count: int = 500, duration: float = 3600,
             nodes: str = ",".join(["trn1.32xlarge"] * 8), wrong_team: float = 0.03, wrong_shape: float = 0.05) -> Trace:
    """A seeded synthetic trace: Poisson arrivals over `duration`, classes by the kind's mix,
    teams among the class's teams (a few from outside it), `needs` equal to the class's size
    (a few contradicting it)."""
    if kind not in MIXES:
        raise ValueError(f"unknown trace kind {kind!r} (known: {', '.join(MIXES)})")
    if isinstance(count, bool) or not 0 <= count <= MAX_WORKLOADS:
        raise ValueError(f"--count {count}: want 0 to {MAX_WORKLOADS} workloads (what a trace file may hold)")
    if not (math.isfinite(duration) and 0 < duration <= MAX_SECONDS):
        raise ValueError(f"--duration {duration}: want a finite number of seconds > 0 and <= {MAX_SECONDS:.0f}")
    rng = random.Random(seed)
    mix = [(c, share, dur) for c, share, dur in MIXES[kind] if c in kit.classes]
    if not mix:
        raise ValueError(f"the kit {kit.name} has none of the classes of the {kind} mix")
    ws = []
    t = 0.0
    rate = count / duration
    for _ in range(count):
        t += rng.expovariate(rate)
        klass = rng.choices([c for c, _, _ in mix], weights=[s for _, s, _ in mix])[0]
        g = kit.classes[klass]
        team = rng.choice(g.teams)
        if rng.random() < wrong_team:
            team = rng.choice([x for x in kit.teams if x not in g.teams] or [team])
        size = g.neuron_devices(whole_node=16)
        needs = size if rng.random() >= wrong_shape else max(1, size // 4)
        mean = dict((c, d) for c, _, d in mix)[klass]
        dur = max(20.0, rng.gauss(mean, mean / 4))
        ws.append(Workload(round(min(t, duration), 1), round(dur, 1), team, klass, needs))
    return Trace(f"{kind}-seed{seed}", kit_path, nodes, duration, ws, evict_after=900 if kind == "healthy" else None)
