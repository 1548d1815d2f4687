"""Where each golden path fits: every class on every EC2 preset, offline. A class fits when an
allocation exists among the devices the reference drivers publish for the preset, and that
allocation is judged aligned by the oracle; otherwise the explanation says why not."""

from __future__ import annotations

from dataclasses import dataclass

import fakedev
from fakedev.truth import truth as truth_of_model

from ..judge.explain import allocate, candidates, class_selectors, explain, requests_of
from ..judge.oracle import judge
from .kit import GoldenPath, Kit, claim_spec, device_classes


@dataclass
class Placement:
    golden_path: str
    preset: str
    fits: bool
    aligned: bool | None  # the oracle's verdict on the allocation found (None: nothing to judge)
    why: str


def check_one(g: GoldenPath, preset: str) -> Placement:
    truth = truth_of_model(fakedev.load_preset(preset))
    classes = device_classes(g)
    spec = claim_spec(g)
    claim = {"metadata": {"name": g.name, "namespace": "kit-check", "uid": "kit"}, "spec": spec, "status": {}}
    got = allocate(spec["devices"], candidates(preset, truth, None), set(), class_selectors(classes))
    if got is None:
        e = explain(claim, {preset: truth}, [], classes)
        why = next((line.split(": ", 1)[1] for line in e.lines if "cannot fit" in line), e.verdict)
        return Placement(g.name, preset, False, None, why.replace("cannot fit even when empty: ", ""))
    results = []
    for r, c in got:
        res = {"request": r, "driver": c.driver, "pool": preset, "device": c.name}
        req = next(x for alts in requests_of(spec["devices"], class_selectors(classes)) for x in alts if x.name == r)
        if c.bandwidth is not None and g.shares_efa:  # a share, as the scheduler records one (KEP-5075)
            res.update(shareID=f"kit-check-{len(results)}", consumedCapacity={"bandwidth": f"{req.needs(c):g}G"})
        results.append(res)
    claim["status"]["allocation"] = {"devices": {"results": results}}
    v = judge(claim, {preset: truth})
    return Placement(g.name, preset, True, v.ok, "; ".join(v.checks if v.ok else v.reasons)[:300])


def check(kit: Kit, presets: list[str] | None = None) -> list[Placement]:
    return [check_one(g, p) for g in kit.classes.values() for p in presets or fakedev.presets.names()]
