"""`dra-harness report`: one self-contained HTML page for a replay's run directory, the page a
platform team reads. No scripts, no fonts, no network fetches: inline CSS and SVG only.

Sections: the five metrics at a glance; their course over time (pending workloads, Neuron
devices held, stranded capacity per class shape, the cost of waiting); tables per team and per
class; the workloads still pending with explain's answer and what their wait cost; the manual
interventions and denials; each node's topology with the claims it holds at the end coloured."""

from __future__ import annotations

import html
import json
from pathlib import Path

from fakedev import Truth
from fakedev.picture import PALETTE

from ..judge.files import write_file
from ..judge.report import svg
from . import kit as kitmod
from .ledger import Ledger
from .metrics import Row, compute, wait_of, waiting_cost

CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ccc;border-radius:8px;padding:10px 14px;min-width:190px}
.card b{display:block;font-size:22px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}pre{background:#f8f8f8;padding:8px;white-space:pre-wrap;text-align:left;margin:0}
.plots{display:flex;flex-wrap:wrap;gap:16px}.nodes{display:flex;flex-wrap:wrap;gap:16px}.bad{color:#b00}"""


def _e(x: object) -> str:
    return html.escape(str(x))


def line_plot(title: str, xs: list[float], series: dict[str, list[float]], unit: str = "") -> str:
    """A small SVG line chart: one polyline per series, axes with the extremes labelled."""
    w, h, l, b = 420, 200, 44, 26
    ymax = max([v for ys in series.values() for v in ys] + [1e-9])
    xmax = max(xs + [1e-9])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 20 + 16 * len(series)}" '
           f'font-family="sans-serif" font-size="11"><text x="4" y="14" font-weight="bold">{_e(title)}</text>',
           f'<line x1="{l}" y1="{h - b}" x2="{w - 8}" y2="{h - b}" stroke="#888"/>'
           f'<line x1="{l}" y1="24" x2="{l}" y2="{h - b}" stroke="#888"/>',
           f'<text x="{l - 4}" y="30" text-anchor="end">{ymax:.4g}{_e(unit)}</text>'
           f'<text x="{l - 4}" y="{h - b}" text-anchor="end">0</text>'
           f'<text x="{w - 8}" y="{h - b + 14}" text-anchor="end">{xmax:.0f} s</text>'
           f'<text x="{l}" y="{h - b + 14}">0</text>']
    for i, (name, ys) in enumerate(series.items()):
        col = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{l + (x / xmax) * (w - 8 - l):.1f},{(h - b) - (y / ymax) * (h - b - 24):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline fill="none" stroke="{col}" stroke-width="1.6" points="{pts}"/>')
        out.append(f'<rect x="{l}" y="{h + 4 + 16 * i}" width="10" height="10" fill="{col}"/>'
                   f'<text x="{l + 16}" y="{h + 13 + 16 * i}">{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(rows: dict[str, Row], label: str) -> str:
    head = ("workloads", "pending p50 s", "p95 s", "max s", "still pending", "cost of waiting $", "wrong class",
            "of which denied", "quota denials", "manual interventions", "topology mean", "topology < 0.9")
    out = [f"<table><tr><th>{_e(label)}</th>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for name, r in sorted(rows.items()):
        topo = f"{r.topology_mean:.2f}" if r.topology_mean is not None else "–"
        cells = (r.workloads, f"{r.pending_p50:.0f}", f"{r.pending_p95:.0f}", f"{r.pending_max:.0f}", r.still_pending,
                 f"{r.pending_cost:.2f}", r.wrong_class, r.denied_access, r.denied_quota, r.interventions, topo, r.topology_slow)
        out.append(f"<tr><td>{_e(name)}</td>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def render(ledger: Ledger, kit: kitmod.Kit, truths: dict[str, Truth], claims: list[dict], title: str) -> str:
    m = compute(ledger, kit)
    allrow = m["all"].get("all", Row())
    s = ledger.samples
    xs = [x.t for x in s]
    worst_n = {k: max(x.stranded_neuron.get(k, 0) for x in s) for k in (s[-1].stranded_neuron if s else {})}
    slow = [r for r in ledger.claims.values() if r.topology_fraction is not None and r.topology_fraction < 0.9]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>",
             f"<p>Golden-path kit <b>{_e(kit.name)}</b>; {len(ledger.claims)} workloads over {ledger.end:.0f} s of trace "
             f"on {len(truths)} nodes. Definitions of the metrics: README, “Platform metrics”.</p>",
             "<div class='cards'>",
             f"<div class='card'><span>pending time p50 / p95 / max</span><b>{allrow.pending_p50:.0f} / "
             f"{allrow.pending_p95:.0f} / {allrow.pending_max:.0f} s</b><span>cost of waiting ${allrow.pending_cost:.2f}</span></div>",
             f"<div class='card'><span>wrong-class requests</span><b>{allrow.wrong_class}</b><span>{allrow.denied_access} denied "
             f"at admission, {allrow.wrong_shape} shape contradicts class</span></div>",
             f"<div class='card'><span>stranded Neuron devices (worst class, worst moment)</span>"
             f"<b>{max(worst_n.values(), default=0)}</b><span>{_e(', '.join(f'{k} {v}' for k, v in sorted(worst_n.items())))}</span></div>",
             f"<div class='card'><span>manual interventions</span><b>{len(ledger.interventions)}</b><span>{allrow.interventions} "
             f"workloads progressed only after one</span></div>",
             f"<div class='card'><span>topology effect (mean fraction of best)</span><b>{allrow.topology_mean if allrow.topology_mean is not None else '–'}</b>"
             f"<span>{len(slow)} allocations below 0.9: green but slow</span></div></div>",
             "<h2>Over time</h2><div class='plots'>",
             line_plot("pending workloads", xs, {"pending": [x.pending for x in s], "running": [x.running for x in s]}),
             line_plot("Neuron devices held", xs, {"held": [x.neuron_held for x in s], "total": [x.neuron_total for x in s]}),
             line_plot("stranded Neuron devices per class shape", xs,
                       {k: [x.stranded_neuron.get(k, 0) for x in s] for k in sorted(worst_n)}),
             line_plot("cost of waiting (cumulative)", xs, {"$": [x.pending_cost for x in s]}, " $"),
             "</div>",
             "<h2>Per team</h2>", _table(m["team"], "team"), "<h2>Per class</h2>", _table(m["class"], "class")]
    pending = [r for r in ledger.claims.values() if r.allocated is None and r.released is None]
    parts.append(f"<h2>Still pending at the end ({len(pending)})</h2>")
    if pending:
        parts.append("<table><tr><th>workload</th><th>team</th><th>class</th><th>waiting s</th><th>cost $</th><th>why</th></tr>")
        for r in sorted(pending, key=lambda r: r.created)[:200]:
            w = wait_of(r, ledger.end)
            cost = waiting_cost(r, w, kit)
            why = ledger.explanations.get(r.key, "(not explained: its claim was never created, e.g. over quota)")
            parts.append(f"<tr><td>{_e(r.key)}</td><td>{_e(r.team)}</td><td>{_e(r.klass)}</td><td>{w:.0f}</td>"
                         f"<td>{cost:.2f}</td><td><pre>{_e(why)}</pre></td></tr>")
        parts.append("</table>")
    if slow:
        parts.append(f"<h2>Topology-incorrect but green ({len(slow)})</h2><table><tr><th>workload</th><th>class</th>"
                     "<th>node</th><th>fraction of best</th><th>Neuron devices</th><th>EFAs</th></tr>")
        for r in sorted(slow, key=lambda r: r.topology_fraction)[:100]:
            parts.append(f"<tr><td>{_e(r.key)}</td><td>{_e(r.klass)}</td><td>{_e(r.node)}</td><td class='bad'>{r.topology_fraction:.2f}</td>"
                         f"<td>{_e(' '.join(r.neuron))}</td><td>{_e(' '.join(r.efa))}</td></tr>")
        parts.append("</table>")
    parts.append(f"<h2>Manual interventions ({len(ledger.interventions)}) and denials ({len(ledger.denials)})</h2><table>"
                 "<tr><th>t s</th><th>who / team</th><th>what</th><th>target / class</th><th>why</th></tr>")
    for i in ledger.interventions[:200]:
        parts.append(f"<tr><td>{i.t:.0f}</td><td>{_e(i.actor)}</td><td>{_e(i.action)}</td><td>{_e(i.target)}</td><td>{_e(i.why)}</td></tr>")
    for d in ledger.denials[:200]:
        parts.append(f"<tr><td>{d.t:.0f}</td><td>{_e(d.team)}</td><td>denied ({_e(d.reason)})</td><td>{_e(d.klass)}</td>"
                     f"<td>{_e(d.message)}</td></tr>")
    parts.append("</table><h2>Nodes at the end, claims coloured</h2><div class='nodes'>")
    for node, truth in sorted(truths.items()):
        parts.append(f"<div>{svg(node, truth, claims)}</div>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


MAX_TORUS = 64  # a torus coordinate beyond this is no Trainium topology (and an SVG kilometres wide)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a number a replay writes")


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(), parse_constant=_no_constants)  # NaN or Infinity: refused (row 63)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not what `dra-harness replay` writes ({str(e)[:80]})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not what `dra-harness replay` writes (not a JSON object)")
    return d


def write(run_dir: Path, out: Path | None = None) -> Path:
    if not (run_dir / "ledger.json").is_file() or not (run_dir / "run.json").is_file():
        raise ValueError(f"{run_dir} is not a replay's run directory (no ledger.json and run.json; "
                         "`dra-harness replay TRACE --out DIR` makes one)")
    out = out or run_dir / "report.html"
    if out.is_dir() and not out.is_symlink():  # checked before minutes of rendering
        raise ValueError(f"{out} is a directory; give a file name with --out")
    ledger_d, run = _read_json(run_dir / "ledger.json"), _read_json(run_dir / "run.json")
    kit_path = run.get("kit")
    try:
        kit = kitmod.load(str(kit_path))
    except (kitmod.KitError, ValueError, TypeError):  # never the named file's content (row 58)
        raise ValueError(f"{run_dir / 'run.json'}: its kit {str(kit_path)[:200]!r} is not a golden-path kit that "
                         "can be read") from None
    stage = "ledger.json"
    try:
        ledger = Ledger.from_dict(ledger_d)
        stage = "run.json"
        truths = {str(n): Truth.from_dict(d) for n, d in run["truths"].items()}
        for n, t in truths.items():
            for dev in t.devices:
                if dev.torus is not None and not all(isinstance(c, int) and 0 <= c < MAX_TORUS for c in dev.torus):
                    raise ValueError(f"torus coordinates of {dev.id} on {n} are not in 0..{MAX_TORUS - 1}")
        stage = "the ledger and run"
        page = render(ledger, kit, truths, list(run["claims"]), f"dra-harness replay: {run['trace']}")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as e:
        why = str(e)[:120] if isinstance(e, ValueError) else type(e).__name__
        raise ValueError(f"{run_dir}: {stage} is not what `dra-harness replay` writes ({why})") from None
    write_file(out, page)
    return out
