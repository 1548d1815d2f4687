"""Workload traces for `dra-harness replay`: a list of workloads (arrival, duration, team,
class, the devices the job really uses), read with the bounded loader, and a seeded generator
of synthetic ones."""

from __future__ import annotations

import random
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


def load(path: str | Path) -> Trace:
    src = str(path)
    try:
        d = safeyaml.load_file(path)
    except safeyaml.YamlLimitError as e:
        raise ValueError(str(e)) from None
    if not isinstance(d, dict) or not {"name", "kit", "nodes", "duration", "workloads"} <= set(d):
        raise KitError(src, "trace", "needs name, kit, nodes, duration, workloads")
    if not isinstance(d["workloads"], list) or len(d["workloads"]) > 100_000:
        raise KitError(src, "workloads", "a list of at most 100000 workloads is required")
    ws = []
    for i, w in enumerate(d["workloads"]):
        try:
            ws.append(Workload(float(w["at"]), float(w["duration"]), str(w["team"]), str(w["class"]), int(w["needs"])))
        except (KeyError, TypeError, ValueError) as e:
            raise KitError(src, f"workloads[{i}]", f"needs at, duration, team, class, needs ({e})") from None
    kit = str(d["kit"])
    if not Path(kit).is_absolute():
        kit = str((Path(path).parent / kit).resolve()) if (Path(path).parent / kit).exists() else kit
    return Trace(str(d["name"]), kit, str(d["nodes"]), float(d["duration"]), sorted(ws, key=lambda w: w.at),
                 d.get("evict_after"))


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
