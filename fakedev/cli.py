"""`fakedev`: render, inspect, mutate, record and serve fake Neuron/EFA hardware trees."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from . import presets, safeyaml
from . import spec as specmod
from . import tree as treemod
from .mutate import MutationError, Tree
from .nsrun import NsError
from .read import ReadError
from .record import RecordError

EPILOG = """\
examples:
  fakedev presets                                   list the EC2 presets
  fakedev generate --preset trn2.48xlarge --out /tmp/node1
  fakedev generate --spec my-node.yaml --out /tmp/node1
  fakedev show /tmp/node1                           summary table of the tree
  fakedev truth /tmp/node1 | jq .devices[0]         ground truth (what is really aligned)
  fakedev mutate /tmp/node1 remove neuron3          hot-unplug a device
  fakedev mutate /tmp/node1 numa-none 0000:10:1a.0  firmware reports numa_node = -1
  fakedev run --tree /tmp/node1 -- lspci -t         run a program that sees the fake hardware
  fakedev record --root / --out my-node.yaml        capture a real node for a bug report

A spec is YAML: `preset: NAME` plus overrides, or a full topology (see README, "Topology specs").
Errors print one line naming the field and exit with status 2.
"""

MUTATIONS = """\
operations (DEVICE is neuronN, a PCI address, or an RDMA name like rdmap16s26):
  remove DEVICE                 hot-unplug the device (its sysfs, class and /dev entries vanish)
  add DEVICE                    plug a removed device back in
  add-neuron YAML | add-efa YAML   hotplug a new device, e.g. '{index: 16, bdf: "0000:10:10.0", parent: "pci0000:10"}'
  unbind DEVICE | bind DEVICE   unbind from / rebind to its kernel driver
  numa-none DEVICE              numa_node reads -1 (local_cpulist: all CPUs)
  dup-routing-id neuronN        the driver refuses the device as a duplicate routing id
  drop-attr DEVICE ATTR         delete an attribute file (ATTR relative to the class device, pci/ATTR for the PCI function)
  corrupt-attr DEVICE ATTR [VALUE]   overwrite an attribute with VALUE (default: garbage)
  ecc neuronN [sram|mem|repairable] [COUNT]   count ECC errors (sram/mem: uncorrected, the device
                                is failed; repairable: fixed by a reset, degraded); default mem 1
  efa-fail DEVICE [COUNT]       the EFA stops answering: hw_counters/no_completion_cmds counts up
                                (its port stays ACTIVE, as the efa driver always reports it)
  heal DEVICE                   clear a device's error counters (a device reset)
  instance-type TYPE            DMI product_name reads TYPE
  reset                         undo every mutation
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fakedev", description="Fake sysfs/devfs trees of AWS Neuron (Trainium, "
                                "Inferentia) and EFA nodes, faithful enough for unmodified discovery code.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("presets", help="list presets, or print one as YAML")
    s.add_argument("name", nargs="?", help="print this preset's spec")

    s = sub.add_parser("validate", help="check a spec file without rendering it")
    s.add_argument("spec")

    s = sub.add_parser("generate", help="render a tree from a preset or spec")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help=f"one of: {', '.join(presets.names())}")
    src.add_argument("--spec", help="YAML spec file (preset plus overrides, or a full topology)")
    s.add_argument("--out", required=True, help="directory to create (or a tree fakedev created before)")
    s.add_argument("--devnodes", choices=["char", "file"],
                   help="device nodes as harmless character devices (default as root) or regular files")

    s = sub.add_parser("truth", help="print the ground truth of a tree as JSON")
    s.add_argument("tree")

    s = sub.add_parser("show", help="print a summary table of a tree (--svg: its topology picture)")
    s.add_argument("tree")
    s.add_argument("--svg", metavar="FILE", default=None,
                   help="also draw the tree as lstopo nests it (NUMA -> root complex -> switch -> device) with "
                        "the Neuron<->EFA pairing and torus links (Graphviz)")

    s = sub.add_parser("mutate", help="change a tree at runtime (hotplug, faults)", epilog=MUTATIONS,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("tree")
    s.add_argument("op", help="operation (see below)")
    s.add_argument("args", nargs="*")

    s = sub.add_parser("record", help="read a machine's (or tree's) sysfs back into a spec")
    s.add_argument("--root", default="/", help="directory holding sys/ (default: this machine)")
    s.add_argument("--out", default="-", help="spec file to write (default: stdout)")

    s = sub.add_parser("run", help="run a command in a private mount namespace that shows the tree",
                       description="Bind-mounts the tree over the real paths in a private mount namespace "
                       "(root required) and executes CMD there; the host is never changed.")
    s.add_argument("--tree", required=True)
    s.add_argument("--no-libudev-shim", action="store_true",
                   help="do not preload umockdev for libudev consumers (systemd's libudev checks that "
                   "devices live on a real sysfs; the shim answers that check from the same tree)")
    s.add_argument("--bind", action="append", default=[], metavar="DIR:PATH",
                   help="also show host directory DIR at PATH inside (repeatable), e.g. a node's NRI "
                   "socket directory at /var/run/nri")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except (specmod.SpecError, treemod.TreeError, MutationError, NsError, RecordError, ReadError) as e:
        print(f"fakedev: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug in fakedev itself: one line, traceback on request
        if os.environ.get("FAKEDEV_DEBUG"):
            raise
        print(f"fakedev: internal error: {type(e).__name__}: {e} (set FAKEDEV_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def _presets(a: argparse.Namespace) -> int:
    if a.name:
        if a.name not in presets.names():
            raise specmod.SpecError("preset", f"unknown preset {a.name!r} (known: {', '.join(presets.names())})")
        sys.stdout.write(presets.text(a.name))
        return 0
    for n in presets.names():
        t = specmod.load_preset(n)
        print(f"{n:16} {len(t.neuron):2} x {t.generation or '-':5} {len(t.efa):2} EFA  "
              f"{len(t.numa_nodes)} NUMA  {len(t.roots)} roots  {len(t.switches)} switches")
    return 0


def _validate(a: argparse.Namespace) -> int:
    t = specmod.load_file(a.spec)
    print(f"{a.spec}: ok ({t.instance_type}: {len(t.neuron)} Neuron, {len(t.efa)} EFA)")
    return 0


def _generate(a: argparse.Namespace) -> int:
    topo = specmod.load_preset(a.preset) if a.preset else specmod.load_file(a.spec)
    t0 = time.perf_counter()
    r = treemod.generate(topo, a.out, a.devnodes)
    ms = (time.perf_counter() - t0) * 1000
    kind = "character devices (harmless numbers)" if r.devnodes == "char" else "regular files (not root)"
    print(f"rendered {topo.instance_type} into {r.path}: {r.files} entries in {ms:.0f} ms; device nodes: {kind}")
    for f in r.fallbacks:
        print(f"warning: {f}: written as a regular file", file=sys.stderr)
    return 0


def _truth(a: argparse.Namespace) -> int:
    from .truth import truth

    topo, state = treemod.load(a.tree)
    json.dump(truth(topo, state).to_dict(), sys.stdout, indent=2)
    print()
    return 0


def _show(a: argparse.Namespace) -> int:
    from .show import summary

    sys.stdout.write(summary(a.tree))
    if a.svg:
        from . import truth_of
        from .picture import svg

        t = truth_of(a.tree)
        Path(a.svg).write_text(svg(t, f"{Path(a.tree).name} - {t.instance_type}"))
        print(f"picture: {a.svg}")
    return 0


def _mutate(a: argparse.Namespace) -> int:
    t = Tree(a.tree)
    op, args = a.op, a.args
    need = {"remove": 1, "add": 1, "add-neuron": 1, "add-efa": 1, "unbind": 1, "bind": 1, "numa-none": 1,
            "dup-routing-id": 1, "drop-attr": 2, "corrupt-attr": 2, "instance-type": 1, "reset": 0,
            "ecc": 1, "efa-fail": 1, "heal": 1}
    optional = {"corrupt-attr": 1, "ecc": 2, "efa-fail": 1}
    if op not in need:
        raise MutationError(f"unknown operation {op!r}; see `fakedev mutate --help`")
    if not need[op] <= len(args) <= need[op] + optional.get(op, 0):
        raise MutationError(f"`{op}` takes {need[op]} argument(s), got {len(args)}; see `fakedev mutate --help`")
    if op in ("add-neuron", "add-efa"):
        try:
            entry = safeyaml.loads(args[0], op)
        except safeyaml.YamlLimitError as e:
            raise MutationError(str(e)) from None
        what = t.add_new(op[4:], entry)
    else:
        fn = {"remove": t.remove, "add": t.add, "unbind": t.unbind, "bind": t.bind, "numa-none": t.set_numa_none,
              "dup-routing-id": t.duplicate_routing_id, "instance-type": t.set_instance_type, "reset": t.reset,
              "ecc": t.ecc, "efa-fail": t.efa_fail, "heal": t.heal,
              "drop-attr": lambda d, at: t.attr(d, at, "drop"),
              "corrupt-attr": lambda d, at, v="\x00garbage\xff": t.attr(d, at, "corrupt", v)}[op]
        what = fn(*args)
    print(f"{a.tree}: {what}")
    return 0


def _record(a: argparse.Namespace) -> int:
    from .record import record

    if a.out != "-" and os.path.isdir(a.out):
        raise RecordError(f"--out {a.out} is a directory; give the spec's file name")
    if a.out != "-" and not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
        raise RecordError(f"--out {a.out}: the directory {os.path.dirname(os.path.abspath(a.out))} does not exist")
    try:
        spec, warnings = record(a.root)
    except ReadError as e:
        raise RecordError(str(e)) from None
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    text = f"# recorded by fakedev from {os.path.abspath(a.root)}\n" + yaml.safe_dump(spec, sort_keys=False)
    try:  # what record writes, its own loader reads: a spec that fails later is worse than an error now
        specmod.load_text(text, "<recorded spec>")
    except specmod.SpecError as e:
        raise RecordError(f"{a.root}: the tree records as a spec fakedev would refuse ({e})") from None
    if a.out == "-":
        sys.stdout.write(text)
    else:
        tmp = f"{a.out}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.out)  # never through a planted symlink, never half a file
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


def _run(a: argparse.Namespace) -> int:
    from .nsrun import run

    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        raise NsError("no command given: fakedev run --tree DIR -- CMD [ARGS...]")
    treemod.load(a.tree)  # refuse directories that are not trees, with the usual message
    binds = []
    for b in a.bind:
        src, sep, dst = b.partition(":")
        if not sep or not src or not dst.startswith("/"):
            raise NsError(f"--bind wants DIR:/ABSOLUTE/PATH, got {b[:200]!r}")
        binds.append((src, dst))
    run(a.tree, cmd, libudev_shim=not a.no_libudev_shim, binds=binds)
    return 127  # not reached: run() execs


COMMANDS = {"presets": _presets, "validate": _validate, "generate": _generate, "truth": _truth, "show": _show,
            "mutate": _mutate, "record": _record, "run": _run}

if __name__ == "__main__":
    sys.exit(main())
