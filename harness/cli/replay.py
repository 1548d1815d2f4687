"""`dra-harness replay`: a local cluster for the trace's nodes (or a running one), the replay,
the metrics over time, and the run directory `dra-harness report` turns into a page."""

from __future__ import annotations

import math
import sys
import time
import uuid
from pathlib import Path

import yaml

from ..judge.files import check_target, write_file

MAX_SPEED = 10_000.0
RUN_FILES = {"ledger.json", "run.json", "metrics.txt", "report.html", "cluster"}


def run_dir(out: Path) -> Path:
    """The replay's run directory: new, empty, or an earlier run's (whose files it replaces);
    never a symlink, a file, or a directory holding anything else (row 46)."""
    if out.is_symlink():
        raise ValueError(f"--out {out} is a symbolic link; give the real directory")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if out.is_dir():
        other = sorted(e.name for e in out.iterdir() if e.name not in RUN_FILES and not e.name.startswith("."))
        if other:
            raise ValueError(f"--out {out} holds files a replay did not write ({other[0][:60]!r}, ...); "
                             "give a new or empty directory")
    return out.resolve()


def generate(args) -> int:
    from ..platform import kit as kitmod
    from ..platform.trace import generate as gen

    import os

    k = kitmod.load(args.kit)
    if args.out:
        check_target(args.out)  # before the trace is generated
    kit_ref = os.path.relpath(args.kit, Path(args.out).resolve().parent) if args.out else args.kit  # relative to the trace
    t = gen(args.generate, k, kit_ref, seed=args.seed, count=args.count, duration=args.duration, nodes=args.nodes)
    text = yaml.safe_dump(t.to_dict(), sort_keys=False, width=200)
    if args.out:
        write_file(args.out, f"# generated: dra-harness replay --generate {args.generate} --seed {args.seed} "
                                  f"--count {args.count} --kit {args.kit}\n" + text)
        print(f"wrote {args.out}: {len(t.workloads)} workloads over {t.duration:.0f}s", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def replay(args) -> int:
    from ..backends import get
    from ..backends.spec import ClusterSpec, parse_nodes
    from ..kube import Kube
    from ..platform import kit as kitmod
    from ..platform import trace as tracemod
    from ..platform.metrics import compute
    from ..platform.replay import Replay, write_run

    if not (math.isfinite(args.speed) and 0 < args.speed <= MAX_SPEED):  # 0, negative or NaN never ends (row 41)
        raise ValueError(f"--speed {args.speed}: want trace seconds per real second, > 0 and <= {MAX_SPEED}")
    trace = tracemod.load(args.trace)
    kit = kitmod.load(trace.kit)
    tracemod.check_against(trace, kit, args.trace)
    out = run_dir(Path(args.out or f"artifacts/replay-{trace.name}"))
    local = get("local")
    started = None
    t0 = time.monotonic()
    if args.cluster:
        cluster = local.find(args.cluster)
        if cluster is None:
            raise ValueError(f"no running local cluster named {args.cluster!r} (dra-harness status lists them)")
    else:
        spec = ClusterSpec(name=f"replay-{uuid.uuid4().hex[:6]}", nodes=parse_nodes(trace.nodes), netns=False)
        print(f"replay: starting a local cluster of {len(spec.nodes)} nodes ({trace.nodes})", file=sys.stderr)
        cluster = started = local.up(spec, out / "cluster", attached=True)
        print(f"replay: cluster up in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    try:
        kube = Kube(str(cluster.kubeconfig))
        truths = cluster.truths()
        r = Replay(kube, trace, kit, truths, args.speed, progress=lambda s: print(f"replay: {s}", file=sys.stderr))
        t1 = time.monotonic()
        ledger = r.run()
        took = time.monotonic() - t1
        claims, _ = kube.list("ResourceClaimAll")
        write_run(out, ledger, trace, kit, truths, claims)
    finally:
        if started is not None:
            local.down(started.name)
    text = render_metrics(compute(ledger, kit), ledger)
    write_file(out / "metrics.txt", text)
    print(text)
    print(f"replay: {len(trace.workloads)} workloads, {trace.duration:.0f}s of trace in {took:.1f}s "
          f"(x{trace.duration / took:.1f}); run directory {out}; `dra-harness report {out}` draws it", file=sys.stderr)
    return 0


def render_metrics(m, ledger) -> str:
    lines = []
    for group in ("all", "team", "class"):
        lines.append(f"{'per ' + group if group != 'all' else 'all workloads'}:")
        lines.append(f"  {'':24} {'n':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'cost $':>8} {'wrong':>5} "
                     f"{'quota':>5} {'manual':>6} {'topo':>5} {'slow':>4}")
        for name, r in sorted(m[group].items()):
            topo = f"{r.topology_mean:.2f}" if r.topology_mean is not None else "-"
            lines.append(f"  {name:24} {r.workloads:4} {r.pending_p50:7.0f} {r.pending_p95:7.0f} {r.pending_max:7.0f} "
                         f"{r.pending_cost:8.2f} {r.wrong_class:5} {r.denied_quota:5} {r.interventions:6} {topo:>5} "
                         f"{r.topology_slow:4}")
    if ledger.samples:
        last = ledger.samples[-1]
        worst = {k: max(s.stranded_neuron.get(k, 0) for s in ledger.samples) for k in last.stranded_neuron}
        lines.append("stranded Neuron devices per class shape (end / worst): " +
                     ", ".join(f"{k} {last.stranded_neuron[k]}/{worst[k]}" for k in sorted(worst)))
        if last.stranded_efa:
            worst_e = {k: max(s.stranded_efa.get(k, 0) for s in ledger.samples) for k in last.stranded_efa}
            lines.append("stranded EFAs per class shape (end / worst): " +
                         ", ".join(f"{k} {last.stranded_efa[k]}/{worst_e[k]}" for k in sorted(worst_e)))
    lines.append(f"manual interventions: {len(ledger.interventions)}")
    return "\n".join(lines) + "\n"
