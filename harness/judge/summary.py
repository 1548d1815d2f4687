"""The run summary: each scenario with its verdict, each judged claim, and the metrics platform
teams care about (time claims sat pending, stranded capacity)."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from .record import RunRecord


def _outcomes(stats: dict) -> dict[str, str]:
    out = {}
    for key in ("passed", "failed", "skipped", "error", "xfailed", "xpassed"):
        for rep in stats.get(key, []):
            if getattr(rep, "when", "call") in ("call", "setup") and hasattr(rep, "nodeid"):
                if key == "passed" and rep.when == "setup":
                    continue
                out[rep.nodeid] = key
    return out


def render(m: RunRecord, stats: dict) -> list[str]:
    lines = []
    outcomes = _outcomes(stats)
    if outcomes:
        lines.append("scenario verdicts:")
        for nodeid, res in sorted(outcomes.items()):
            judged = [v for v in m.verdicts if v.test == nodeid]
            bad = sum(not v.ok for v in judged)
            extra = f"  ({len(judged)} claim(s) judged" + (f", {bad} wrong" if bad else "") + ")" if judged else ""
            lines.append(f"  {res.upper():8} {nodeid}{extra}")
    secs = [p.seconds for p in m.pending if p.seconds is not None]
    if secs:
        q = statistics.quantiles(secs, n=20) if len(secs) > 1 else [secs[0]] * 19
        lines.append(f"claim pending time: {len(secs)} claims, median {statistics.median(secs):.3f}s, "
                     f"p95 {q[18]:.3f}s, max {max(secs):.3f}s")
    if m.stranded:
        lines.append("stranded capacity (free Neuron devices no aligned request of 4/8/16 can use):")
        for s in m.stranded:
            st = ", ".join(f"{k}: {v}" for k, v in s.stranded.items() if v is not None)
            lines.append(f"  {s.test.split('::')[-1]} {s.node}: {s.free}/{s.neuron} free; stranded {st}")
    return lines


def write(m: RunRecord, stats: dict, artifacts: Path) -> Path:
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / "summary.json"
    path.write_text(json.dumps({"outcomes": _outcomes(stats), **asdict(m)}, indent=2))
    (artifacts / "summary.txt").write_text("\n".join(render(m, stats)) + "\n")
    return path
