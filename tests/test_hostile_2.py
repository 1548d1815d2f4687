"""The second probe's hostile inputs (shared/research/reliability-probe-2.md, 132 cases on the
surfaces added after the first probe) as a permanent test: each row names the case it closes.
Same rules as test_hostile.py: the exit code, one line on stderr, no traceback, in time, and
nothing outside the state root changed. Cases that need a running cluster are in test_kit.py
(the admission routes) and test_platform_report.py (replays on a cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, is_root
from .test_hostile import Case, pristine, run_case  # noqa: F401 (pristine is a fixture)

KIT = str(ROOT / "platform/golden-paths.yaml")


def workload(**over: str) -> str:
    """One trace workload line: the defaults with `over` replacing (or adding) fields."""
    fields = {"at": "1", "duration": "10", "team": "inference", "class": "small-inference", "needs": "1", **over}
    return "  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None) + "}\n"


def trace(workloads: str | None = None, **top: str) -> str:
    head = {"name": "t", "kit": KIT, "nodes": "trn1.32xlarge", "duration": "60", **top}
    return "".join(f"{k}: {v}\n" for k, v in head.items()) + "workloads:\n" + (workloads or workload())


def kit(classes: str, teams: str = "  a: {namespaces: [ns-a]}\n  b: {namespaces: [ns-b]}\n") -> str:
    return f"kit: k\nteams:\n{teams}classes:\n{classes}"


ONE_CLASS = "  c: {{requests: [{req}], teams: [a], cost_per_device_hour: 1, priority: 1}}\n"


def profile(extra: str = "", command: str = '["/bin/true", "{node}"]', name: str = "p") -> str:
    return f"name: {name}\ndriver: a.example.com\ncommand: {command}\n{extra}"


UP = ["dra-harness", "up", "--name", "probe2", "--nodes", "trn1.2xlarge", "--k8s-version", "9.99"]
UP_P = UP + ["--driver", "{S}/p.yaml"]


def _shared_dir(s: Path) -> None:
    (s / "shared").mkdir()
    os.chmod(s / "shared", 0o1777)


def _a_file(s: Path) -> None:
    (s / "afile").write_text("x")


def _kind_victim(s: Path) -> None:
    (s / "sbk/.kind/victim").mkdir(parents=True)
    os.chmod(s / "sbk", 0o700)
    (s / "sbk/.kind/victim/notes.txt").write_text("precious")


def _ledger(s: Path, ledger: object, run: dict | None = None) -> None:
    d = s / "r"
    d.mkdir()
    (d / "ledger.json").write_text(ledger if isinstance(ledger, str) else json.dumps(ledger))
    (d / "run.json").write_text(json.dumps(run if run is not None else
                                           {"trace": "t", "kit": KIT, "nodes": "n", "truths": {}, "claims": []}))


def _empty_ledger() -> dict:
    from harness.platform.ledger import Ledger

    return json.loads(Ledger(kit="golden-paths").to_json())


def _mkdir(rel: str):
    return lambda s: (s / rel).mkdir(parents=True)


CASES = [
    # -- profiles (rows 1-19)
    Case("1 {0} placeholder", UP_P, 2, "command: unknown placeholder {0}", files={"p.yaml": profile(command='["/bin/echo", "{0}"]')}),
    Case("3 attribute placeholder", UP_P, 2, "unknown placeholder {node.__class__.__mro__}",
         files={"p.yaml": profile(command='["/bin/echo", "{node.__class__.__mro__}"]')}),
    Case("2 literal braces need doubling", UP_P, 2, "a lone '}'",
         files={"p.yaml": profile(command='["/bin/echo", "--config=}"]')}),
    Case("4 env name", UP_P, 2, "env: 'A=B' is not a variable name", files={"p.yaml": profile('env: {"A=B": x}\n')}),
    Case("4 empty env name", UP_P, 2, "env: '' is not a variable name", files={"p.yaml": profile('env: {"": y}\n')}),
    Case("5 env placeholder", UP_P, 2, "env.X: unknown placeholder {0}", files={"p.yaml": profile('env: {X: "{0}"}\n')}),
    Case("6 env boolean", UP_P, 2, "env.FLAG: must be a string", files={"p.yaml": profile("env: {FLAG: true}\n")}),
    Case("6 env hex", UP_P, 2, "YAML 1.1 number", files={"p.yaml": profile("env: {N: 0x10}\n")}),
    Case("7 bad identity regex", UP_P, 2, "name_pattern: missing )",
         files={"p.yaml": profile('identity: {name_pattern: "neuron-device-(?P<index>\\\\d+"}\n')}),
    Case("8 device_classes not YAML of classes", UP_P, 2, "not a resource.k8s.io DeviceClass",
         files={"p.yaml": profile("device_classes: /etc/passwd\n")}),
    Case("9 device_classes missing, relative to the profile", UP_P, 2, "no such file",
         files={"p.yaml": profile("device_classes: nonexistent/x.yaml\n")}),
    Case("10 device_classes with a ClusterRoleBinding", UP_P, 2, "document 2 is a 'ClusterRoleBinding'",
         files={"p.yaml": profile("device_classes: evil.yaml\n"),
                "evil.yaml": "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: x}\n---\n"
                             "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: evil}\n"
                             "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
                             "subjects: [{kind: Group, name: 'dra-harness:drivers'}]\n"}),
    Case("11 duplicate key", UP_P, 2, "key 'name' appears twice",
         files={"p.yaml": profile() + "name: refdriver-neuron\n"}),
    Case("11 a built-in's name", UP_P, 2, "is a built-in profile's name", files={"p.yaml": profile(name="refdriver-neuron")}),
    Case("12 two profiles, one driver", UP + ["--driver", "refdriver-neuron", "--driver", "{S}/p.yaml"], 2,
         "both serve driver neuron.aws.com",
         files={"p.yaml": profile(command='["/bin/true"]').replace("a.example.com", "neuron.aws.com")}),
    Case("13 one profile twice", UP + ["--driver", "refdriver-neuron", "--driver", "refdriver-neuron"], 2,
         "both serve driver neuron.aws.com"),
    Case("19 --driver-arg for no profile", UP + ["--driver-arg", "nosuch=--x"], 2, "'nosuch'=...: no such profile"),
    Case("19 --driver-arg for the empty name", UP + ["--driver-arg", "=--y"], 2, "--driver-arg ''=...: no such profile"),
    # -- issue 21: profiles for kind need no command, each backend names what it needs
    Case("21 a chart-only profile on the local backend", UP_P, 2, "the local backend runs the driver's command per node, "
         "and the profile has no `command`", files={"p.yaml": "name: p\ndriver: a.example.com\nkind_chart: ./chart\n"}),
    Case("21 a command-only profile on kind", UP_P + ["--backend", "kind"], 2, "has no `kind_chart`",
         files={"p.yaml": profile()}),
    Case("21 neither command nor chart", UP_P, 2, "needs name, driver, and command (local backend) or kind_chart",
         files={"p.yaml": "name: p\ndriver: a.example.com\n"}),
    Case("21 a per-node placeholder in kind_values", UP_P + ["--backend", "kind"], 2, "{node} is a per-node placeholder",
         files={"p.yaml": "name: p\ndriver: a.example.com\nkind_chart: ./c\nkind_values: {args: ['--n={node}']}\n"}),
    Case("21 kind_images not a list", UP_P + ["--backend", "kind"], 2, "kind_images: must be a list",
         files={"p.yaml": "name: p\ndriver: a.example.com\nkind_chart: ./c\nkind_images: img:1\n"}),
    # -- kits (rows 23-35)
    Case("23 class defined twice", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "key 'c' appears twice",
         files={"k.yaml": kit(ONE_CLASS.format(req="{name: d, device: neuron, count: 1}") * 2)}),
    Case("24 all: \"no\"", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "only `all: true`",
         files={"k.yaml": kit(ONE_CLASS.format(req='{name: d, device: neuron, all: "no"}'))}),
    Case("25 request named twice", ["dra-harness", "kit", "check", "{S}/k.yaml"], 2, "request name 'd' is used twice",
         files={"k.yaml": kit(ONE_CLASS.format(req="{name: d, device: neuron, count: 1}, {name: d, device: neuron, count: 1}"))}),
    Case("26 logical_neuron_core: true", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "logical_neuron_core: 1 or 2",
         files={"k.yaml": kit(ONE_CLASS.format(req="{name: d, device: neuron, count: 1, logical_neuron_core: true}"))}),
    Case("27 octal count", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "'010' is a YAML 1.1 number",
         files={"k.yaml": kit(ONE_CLASS.format(req="{name: d, device: neuron, count: 010}"))}),
    Case("27 base-60 priority", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "'1:30' is a YAML 1.1 number",
         files={"k.yaml": kit(ONE_CLASS.format(req="{name: d, device: neuron, count: 1}").replace("priority: 1", "priority: 1:30"))}),
    Case("28 a namespace of two teams", ["dra-harness", "kit", "check", "{S}/k.yaml"], 2,
         "namespace 'shared' is already team 'a'",
         files={"k.yaml": kit(ONE_CLASS.format(req="{name: d, device: neuron, count: 1}"),
                              teams="  a: {namespaces: [shared]}\n  b: {namespaces: [shared]}\n")}),
    Case("31 classes x namespaces", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "class x namespace pairs",
         files={"k.yaml": kit("".join(f"  c{i}: {{requests: [{{name: a, device: neuron, count: 1}}], teams: [t], "
                                      f"cost_per_device_hour: 1, priority: 1}}\n" for i in range(50)),
                              teams="  t: {namespaces: [%s]}\n" % ", ".join(f"n{i}" for i in range(1000)))},
         seconds=10, memory_mb=900),
    Case("31 too many namespaces", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "at most 1000",
         files={"k.yaml": kit(ONE_CLASS.format(req="{name: d, device: neuron, count: 1}"),
                              teams="  a: {namespaces: [%s]}\n" % ", ".join(f"n{i}" for i in range(20000)))},
         seconds=10, memory_mb=900),
    # -- traces and replay (rows 36-55): refused at load, before any cluster starts
    Case("36 needs: .inf", ["dra-harness", "replay", "{S}/t.yaml"], 2, "workloads[0].needs",
         files={"t.yaml": trace(workload(needs=".inf"))}),
    Case("37 duration: [1]", ["dra-harness", "replay", "{S}/t.yaml"], 2, "workloads[0].duration: a finite number",
         files={"t.yaml": trace(workload(duration="[1]"))}),
    Case("38 duration: abc", ["dra-harness", "replay", "{S}/t.yaml"], 2, "duration: a finite number",
         files={"t.yaml": trace(duration="abc")}),
    Case("39 at: .nan", ["dra-harness", "replay", "{S}/t.yaml"], 2, "workloads[0].at: a finite number",
         files={"t.yaml": trace(workload(at=".nan"))}),
    Case("40 trace duration .inf", ["dra-harness", "replay", "{S}/t.yaml"], 2, "duration: a finite number",
         files={"t.yaml": trace(duration=".inf")}),
    *[Case(f"41 --speed {v}", ["dra-harness", "replay", "{S}/t.yaml", "--speed", v], 2, f"--speed {v}",
           files={"t.yaml": trace()}) for v in ("0", "-5", "nan", "inf")],
    Case("42 unknown class", ["dra-harness", "replay", "{S}/t.yaml"], 2, "'no-such-class' is not a class of kit",
         files={"t.yaml": trace(workload(**{"class": "no-such-class"}))}),
    Case("43 evict_after: soon", ["dra-harness", "replay", "{S}/t.yaml"], 2, "evict_after: a finite number",
         files={"t.yaml": trace(evict_after="soon")}),
    Case("44 unknown team", ["dra-harness", "replay", "{S}/t.yaml"], 2, "'nobody' is not a team of kit",
         files={"t.yaml": trace(workload(team="nobody"))}),
    Case("45 misspelt key", ["dra-harness", "replay", "{S}/t.yaml"], 2, "evict_afer: unknown key",
         files={"t.yaml": trace(evict_afer="900")}),
    Case("45 misspelt workload key", ["dra-harness", "replay", "{S}/t.yaml"], 2, "unknown key neds",
         files={"t.yaml": trace(workload(needs=None, neds="1"))}),
    Case("46 a name that is a path", ["dra-harness", "replay", "{S}/t.yaml"], 2, "name: a DNS label",
         files={"t.yaml": trace(name='"x/../../../../../../../..{S}/escaped"')}),
    Case("46 --out a symlink", ["dra-harness", "replay", "{S}/t.yaml", "--out", "{S}/link"], 2, "is a symbolic link",
         files={"t.yaml": trace()}, setup=lambda s: (s / "link").symlink_to(s / "victim")),
    Case("46 --out a directory of other files", ["dra-harness", "replay", "{S}/t.yaml", "--out", "{S}/victim"], 2,
         "holds files a replay did not write", files={"t.yaml": trace()}),
    Case("47 negative at", ["dra-harness", "replay", "{S}/t.yaml"], 2, "workloads[0].at",
         files={"t.yaml": trace(workload(at="-100"))}),
    Case("47 negative needs", ["dra-harness", "replay", "{S}/t.yaml"], 2, "workloads[0].needs",
         files={"t.yaml": trace(workload(needs="-5"))}),
    Case("47 negative trace duration", ["dra-harness", "replay", "{S}/t.yaml"], 2, "duration: a finite number",
         files={"t.yaml": trace(duration="-5")}),
    Case("50 --count beyond what a trace holds", ["dra-harness", "replay", "--generate", "healthy", "--count", "30000"],
         2, "--count 30000"),
    Case("51 --duration 0", ["dra-harness", "replay", "--generate", "healthy", "--duration", "0", "--count", "5"], 2,
         "--duration 0"),
    Case("53 --duration nan", ["dra-harness", "replay", "--generate", "healthy", "--duration", "nan"], 2, "--duration nan"),
    Case("53 --duration -100", ["dra-harness", "replay", "--generate", "healthy", "--duration", "-100"], 2,
         "--duration -100"),
    Case("54 --count 10^8", ["dra-harness", "replay", "--generate", "healthy", "--count", "100000000"], 2, "--count"),
    Case("52 --out a directory", ["dra-harness", "replay", "--generate", "healthy", "--count", "5", "--out", "{S}/victim"],
         2, "is a directory"),
    Case("52 --out in a missing directory", ["dra-harness", "replay", "--generate", "healthy", "--count", "5", "--out",
                                              "{S}/nope/x.yaml"], 2, "does not exist"),
    # -- report (rows 57-66)
    Case("58 a kit naming /etc/shadow", ["dra-harness", "report", "{S}/r"], 2, "is not a golden-path kit",
         setup=lambda s: _ledger(s, _empty_ledger(), {"trace": "t", "kit": "/etc/shadow", "truths": {}, "claims": []})),
    Case("59 ledger a list", ["dra-harness", "report", "{S}/r"], 2, "not a JSON object", setup=lambda s: _ledger(s, [])),
    Case("59 ledger without claims", ["dra-harness", "report", "{S}/r"], 2, "ledger.json is not what",
         setup=lambda s: _ledger(s, {"kit": "x"})),
    Case("60 ledger not JSON", ["dra-harness", "report", "{S}/r"], 2, "ledger.json: not what", setup=lambda s: _ledger(s, "{not json")),
    Case("61 a truth without its fields", ["dra-harness", "report", "{S}/r"], 2, "run.json is not what",
         setup=lambda s: _ledger(s, _empty_ledger(), {"trace": "t", "kit": KIT, "truths": {"n": {}}, "claims": []})),
    Case("63 NaN in the ledger", ["dra-harness", "report", "{S}/r"], 2, "NaN is not a number",
         setup=lambda s: _ledger(s, json.dumps(_empty_ledger()).replace('"end": 0.0', '"end": NaN'))),
    Case("66 --out a directory", ["dra-harness", "report", "{S}/r", "--out", "{S}/victim"], 2, "is a directory",
         setup=lambda s: _ledger(s, _empty_ledger())),
    Case("66 --out in a missing directory", ["dra-harness", "report", "{S}/r", "--out", "{S}/nope/x.html"], 2,
         "does not exist", setup=lambda s: _ledger(s, _empty_ledger())),
    # -- specs (rows 96-104)
    Case("96 octal index", ["fakedev", "validate", "{S}/s.yaml"], 2, "'010' is a YAML 1.1 number",
         files={"s.yaml": "preset: trn1.32xlarge\nneuron_devices:\n  - {index: 010, numa_node: -1}\n"}),
    Case("96 hex memory", ["fakedev", "validate", "{S}/s.yaml"], 2, "'0x10' is a YAML 1.1 number",
         files={"s.yaml": "preset: trn1.32xlarge\nmemory_gib: 0x10\n"}),
    Case("96 base-60 memory", ["fakedev", "validate", "{S}/s.yaml"], 2, "'1:30' is a YAML 1.1 number",
         files={"s.yaml": "preset: trn1.32xlarge\nmemory_gib: 1:30\n"}),
    Case("97 preset twice", ["fakedev", "validate", "{S}/s.yaml"], 2, "key 'preset' appears twice",
         files={"s.yaml": "preset: trn1.32xlarge\npreset: trn2.48xlarge\n"}),
    Case("104 unquoted BDF", ["fakedev", "validate", "{S}/s.yaml"], 2, "'0000:10:10.0' is a YAML 1.1 number",
         files={"s.yaml": 'preset: trn1.2xlarge\nefa_devices:\n  - {bdf: 0000:10:10.0, parent: "pci0000:10"}\n'}),
    # -- the state root (rows 105-119)
    Case("105 a shared directory is never chmod-ed (status)", ["dra-harness", "status", "--backend", "kind", "--name",
                                                               "probe9"], 2, "will not change a directory",
         setup=_shared_dir, env={"DRA_HARNESS_STATE": "{S}/shared"}),
    Case("106 a shared directory is never chmod-ed (up)", ["dra-harness", "up", "--name", "probe5", "--nodes",
                                                           "trn1.2xlarge"], 2, "will not change a directory",
         setup=_shared_dir, env={"DRA_HARNESS_STATE": "{S}/shared"}),
    Case("107 a file (up)", ["dra-harness", "up", "--name", "p3", "--nodes", "trn1.2xlarge"], 2, "is not a directory",
         setup=_a_file, env={"DRA_HARNESS_STATE": "{S}/afile"}),
    Case("107 a file (kind status)", ["dra-harness", "status", "--backend", "kind", "--name", "p3"], 2,
         "is not a directory", setup=_a_file, env={"DRA_HARNESS_STATE": "{S}/afile"}),
    Case("108 under /proc", ["dra-harness", "up", "--name", "p3", "--nodes", "trn1.2xlarge"], 2, "cannot create it",
         env={"DRA_HARNESS_STATE": "/proc/dra-harness-probe"}),
    Case("108 under /sys", ["dra-harness", "up", "--name", "p3", "--nodes", "trn1.2xlarge"], 2, "cannot create it",
         env={"DRA_HARNESS_STATE": "/sys/dra-harness-probe"}),
    Case("113 kind down without the marker", ["dra-harness", "down", "--backend", "kind", "--name", "victim"], 0,
         "not a dra-harness cluster's state", setup=_kind_victim, env={"DRA_HARNESS_STATE": "{S}/sbk"}),
    # -- counter faults (issue 22): every argument of ecc / efa-fail / heal, and the saved counters
    Case("ecc memory", ["fakedev", "mutate", "{T}", "ecc", "neuron0", "l3"], 2, "unknown ECC memory 'l3'"),
    Case("ecc count not a number", ["fakedev", "mutate", "{T}", "ecc", "neuron0", "mem", "1e3"], 2,
         "error count must be a whole number"),
    Case("ecc count zero", ["fakedev", "mutate", "{T}", "ecc", "neuron0", "mem", "0"], 2, "error count must be 1..4294967295"),
    Case("ecc count over %u", ["fakedev", "mutate", "{T}", "ecc", "neuron0", "mem", str(2**32)], 2,
         "error count must be 1..4294967295"),
    Case("ecc on an EFA", ["fakedev", "mutate", "{T}", "ecc", "0000:10:1a.0"], 2, "is not a Neuron device"),
    Case("efa-fail on a Neuron device", ["fakedev", "mutate", "{T}", "efa-fail", "neuron0"], 2, "neuron0 is not an EFA"),
    Case("heal a healthy device", ["fakedev", "mutate", "{T}", "heal", "neuron0"], 2, "neuron0 has no errors counted"),
    Case("ecc too many arguments", ["fakedev", "mutate", "{T}", "ecc", "neuron0", "mem", "1", "2"], 2,
         "`ecc` takes 1 argument(s), got 4"),
    Case("saved counters negative", ["fakedev", "mutate", "{T}", "remove", "neuron1"], 2, "state.json",
         setup=lambda s: (s / "T/fakedev/state.json").write_text('{"counters": {"neuron0": {"mem_ecc_uncorrected": -1}}}')),
    Case("refdriver health interval", ["refdriver", "neuron", "--sysfs-root", "{T}", "--dry-run", "--health-interval", "0"],
         2, "--health-interval must be above 0"),
    Case("refdriver repairable threshold", ["refdriver", "neuron", "--sysfs-root", "{T}", "--dry-run",
                                            "--repairable-ecc-threshold", "0"], 2, "--repairable-ecc-threshold at least 1"),
    Case("drain node name", ["dra-harness", "drain", "a,b=c"], 2, "node name 'a,b=c' is not a DNS-1123 subdomain"),
    Case("drain device", ["dra-harness", "drain", "n1", "--device", "x/../y"], 2, "device 'x/../y' is not a DNS-1123 label"),
    Case("drain wait", ["dra-harness", "drain", "n1", "--wait", "nan"], 2, "--wait must be 0..3600 seconds"),
    Case("drain key", ["dra-harness", "drain", "n1", "--key", "a b"], 2, "taint key 'a b' is not a qualified name"),
    Case("drain without a cluster", ["dra-harness", "drain", "n1", "--name", "nosuch"], 2,
         "no cluster 'nosuch' running", env={"DRA_HARNESS_STATE": "{S}/st", "KUBECONFIG": ""}),
    # -- EFA sharing (issue 23): the driver's share policy, the kit's sharing rule, a spec's port rate
    Case("efa share default off the step", ["refdriver", "efa", "--sysfs-root", "{T}", "--dry-run", "--share-efa",
                                            "--efa-share-default", "12"], 2, "must be --efa-share-min (5) plus a multiple"),
    Case("efa share step zero", ["refdriver", "efa", "--sysfs-root", "{T}", "--dry-run", "--share-efa",
                                 "--efa-share-step", "0"], 2, "must be at least 1 (Gbit/s)"),
    Case("efa share default without sharing", ["refdriver", "efa", "--sysfs-root", "{T}", "--dry-run",
                                               "--efa-share-default", "25"], 2, "--efa-share-default needs --share-efa"),
    Case("kit sharing not mutual", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "does not name 'c' back",
         files={"k.yaml": kit(ONE_CLASS.replace("priority: 1}", "priority: 1, share_efa_with: [d], efa_share_gbps: 5}").format(
             req="{name: e, device: efa, count: 1}") + ONE_CLASS.replace("  c:", "  d:").format(
             req="{name: e, device: efa, count: 1}"))}),
    Case("kit share bandwidth a string", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "an integer in 1..3200",
         files={"k.yaml": kit(ONE_CLASS.replace("priority: 1}", 'priority: 1, share_efa_with: [c], efa_share_gbps: "50G"}').format(
             req="{name: e, device: efa, count: 1}"))}),
    Case("spec EFA rate not ib_sysfs's", ["fakedev", "generate", "--spec", "{S}/n.yaml", "--out", "{S}/o"], 2,
         "is not ib_sysfs's format", files={"n.yaml": 'preset: trn1.32xlarge\nefa_devices:\n'
                                          '  - {bdf: "0000:10:19.0", rate: "99999999999999999999 Gb/sec"}\n'}),
    Case("114 DRA_HARNESS_WIPING_DELAY", ["dra-harness", "up", "--name", "p2", "--nodes", "trn1.2xlarge"], 2,
         "DRA_HARNESS_WIPING_DELAY='abc'", env={"DRA_HARNESS_WIPING_DELAY": "abc"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_2(case: Case, tmp_path: Path, pristine: Path):  # noqa: F811
    run_case(case, tmp_path, pristine)


def _report(run: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run), *extra], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


@pytest.fixture()
def run_dir(tmp_path: Path, tree: Path) -> Path:
    """A real (small) run directory: an empty ledger and the truth of a rendered tree."""
    import fakedev

    _ledger(tmp_path, _empty_ledger(), {"trace": "t", "kit": KIT, "nodes": "n", "claims": [],
                                         "truths": {"n0": fakedev.truth_of(tree).to_dict()}})
    return tmp_path / "r"


def test_57_report_replaces_a_planted_symlink_never_its_target(run_dir: Path, tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run_dir / "report.html").symlink_to(victim)
    r = _report(run_dir)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious"
    assert not (run_dir / "report.html").is_symlink() and "<html" in (run_dir / "report.html").read_text()[:200].lower()


def test_58_a_kit_error_never_prints_the_named_file(run_dir: Path, tmp_path: Path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("root:*:20228:0:99999:7:::\n")
    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "kit": str(secret)}))
    r = _report(run_dir)
    assert r.returncode == 2 and "root:*" not in r.stderr + r.stdout and "not a golden-path kit" in r.stderr, r.stderr


def test_62_torus_coordinates_out_of_range_are_refused(run_dir: Path):
    run = json.loads((run_dir / "run.json").read_text())
    dev = next(d for d in run["truths"]["n0"]["devices"] if d.get("torus"))
    dev["torus"] = [1_000_000_000, 1_000_000_000]
    (run_dir / "run.json").write_text(json.dumps(run))
    r = _report(run_dir)
    assert r.returncode == 2 and "torus coordinates" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (run_dir / "report.html").exists()


def test_the_report_of_a_real_run_directory_is_written(run_dir: Path):
    """The control of the refusals above: the same directory, untouched, is reported."""
    r = _report(run_dir)
    assert r.returncode == 0 and (run_dir / "report.html").stat().st_size > 1000, r.stderr


def test_48_49_a_replay_labels_its_pods_and_the_recorder_counts_only_its_own():
    """Offline half of rows 48-49 (the live half is in test_platform_report.py): pods of
    another run are not this run's, whatever their names."""
    from harness.platform import kit as kitmod
    from harness.platform.recorder import RUN_LABEL, Recorder
    from harness.platform.replay import workload_pod
    from harness.platform.trace import Workload

    k = kitmod.load(KIT)
    rec = Recorder(None, k, {}, lambda: 1.0, run="abc123")
    w = Workload(0, 10, "inference", "small-inference", 1)
    ns = k.teams["inference"][0]
    mine, theirs = workload_pod(w, ns, "w1", "abc123"), workload_pod(w, ns, "w2", "ffffff")
    assert mine["metadata"]["labels"][RUN_LABEL] == "abc123"
    rec._pod("ADDED", mine)
    rec._pod("ADDED", theirs)
    assert set(rec.ledger.claims) == {f"{ns}/w1"}


def test_29_rendered_names_survive_a_yaml_1_1_reader(tmp_path: Path):
    """kubectl reads YAML 1.1: a team `n` or namespace `y` written plain would become false/true."""
    (tmp_path / "k.yaml").write_text("kit: k\nteams:\n  n: {namespaces: [y]}\nclasses:\n"
                                     "  c: {requests: [{name: y, device: neuron, count: 1}], teams: [n], "
                                     "cost_per_device_hour: 1, priority: 1, quota: {n: 2}}\n")
    r = subprocess.run([sys.executable, "-m", "harness.cli", "kit", "render", str(tmp_path / "k.yaml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    import yaml

    class Yaml11(yaml.SafeLoader):  # go-yaml v2's booleans: y, n and their capitals as well
        pass

    import re

    Yaml11.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))
    docs = list(yaml.load_all(r.stdout, Loader=Yaml11))
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"]["name"] == "y" and ns["metadata"]["labels"]["dra-harness.io/team"] == "n"
    tmpl = next(d for d in docs if d["kind"] == "ResourceClaimTemplate")
    assert tmpl["metadata"]["namespace"] == "y"
    assert "'y'" in r.stdout and "'n'" in r.stdout


@pytest.mark.skipif(not is_root, reason="a read-only state root needs a mount namespace")
def test_109_a_read_only_state_root_is_one_line(tmp_path: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} && "
              f"DRA_HARNESS_STATE={ro}/state {sys.executable} -m harness.cli up --name p3 --nodes trn1.2xlarge; "
              f"echo rc=$?")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert "rc=2" in r.stdout and "Traceback" not in r.stderr and "Read-only file system" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


# -- fakedev record (rows 80-88): sysfs read bounded, never blocking, every bad file named

def _tree_file(rel: str, text: str | None = None, link: str | None = None, fifo: bool = False):
    def setup(s: Path) -> None:
        p = s / "T" / rel
        if p.is_symlink() or p.exists():
            p.unlink()
        if link is not None:
            p.symlink_to(link)
        elif fifo:
            os.mkfifo(p)
        else:
            p.write_text(text or "")
    return setup


def _neuron0(rel: str, text: str):
    def setup(s: Path) -> None:
        d = (s / "T/sys/class/neuron_device/neuron0").resolve()
        (d / rel).write_text(text)
    return setup


def _loop(s: Path) -> None:
    p = s / "T/sys/class/neuron_device/neuron0"
    p.unlink()
    p.symlink_to("neuron0")


REC = ["fakedev", "record", "--root", "{T}", "--out", "-"]
PRODUCT = "sys/devices/virtual/dmi/id/product_name"
CASES_RECORD = [
    Case("80 product_name is /dev/zero", REC, 2, "no DMI product_name", setup=_tree_file(PRODUCT, link="/dev/zero"),
         seconds=20, memory_mb=900),
    Case("81 product_name is a FIFO", REC, 2, "no DMI product_name", setup=_tree_file(PRODUCT, fifo=True), seconds=20),
    Case("80 an attribute larger than a page", REC, 2, "larger than 64 KiB",
         setup=_tree_file(PRODUCT, "trn1.32xlarge" + " " * (70 << 10))),
    Case("82 cpulist 0-99999999", REC, 2, "goes beyond the 4096 CPUs",
         setup=_tree_file("sys/devices/system/node/node0/cpulist", "0-99999999\n"), seconds=10, memory_mb=900),
    Case("83 physical_package_id garbage", REC, 2, "physical_package_id: 'garbage' is not a number",
         setup=_tree_file("sys/devices/system/cpu/cpu0/topology/physical_package_id", "garbage\n")),
    Case("83 connected_devices not numbers", REC, 2, "connected_devices: 'a' is not a number",
         setup=_neuron0("connected_devices", "a, b\n")),
    Case("83 neuron dev not MAJOR:MINOR", REC, 2, "neuron0/dev: 'x:y' is not MAJOR:MINOR", setup=_neuron0("dev", "x:y\n")),
    Case("84 a symlink loop", REC, 2, "a symbolic link loop", setup=_loop),
    Case("87 --out a directory", ["fakedev", "record", "--root", "{T}", "--out", "{S}/victim"], 2, "is a directory"),
    Case("98 cpus 0-99999999 in a spec", ["fakedev", "validate", "{S}/s.yaml"], 2, "beyond the 4096 CPUs",
         files={"s.yaml": 'preset: trn1.32xlarge\nnuma_nodes:\n  - {id: 0, cpus: "0-99999999"}\n'}, seconds=10, memory_mb=900),
    Case("98 cpus 0-99999999 through up", ["dra-harness", "up", "--nodes", "{S}/s.yaml", "--k8s-version", "9.99"], 2,
         "beyond the 4096 CPUs",
         files={"s.yaml": 'preset: trn1.32xlarge\nnuma_nodes:\n  - {id: 0, cpus: "0-99999999"}\n'}, seconds=10, memory_mb=900),
]


@pytest.mark.parametrize("case", CASES_RECORD, ids=[c.id for c in CASES_RECORD])
def test_hostile_record(case: Case, tmp_path: Path, pristine: Path):  # noqa: F811
    run_case(case, tmp_path, pristine)


def _record(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fakedev.cli", "record", "--root", str(tree), "--out", "-"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_83_85_odd_entries_and_garbage_vendor_answers_warn_and_go_on(tree: Path):
    (tree / "sys/devices/system/node/node1x").mkdir()
    (tree / "etc/aws-neuron/connected-device-map.json").write_text("{garbage")
    r = _record(tree)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "connected-device-map.json: not a connected-device map" in r.stderr
    assert "neuron_devices" in r.stdout and " efa: " not in r.stdout


def test_88_a_recorded_tree_after_a_removal_is_a_spec_its_loader_takes(tree: Path, tmp_path: Path):
    import fakedev

    fakedev.Tree(tree).remove("neuron3")
    r = _record(tree)
    assert r.returncode == 0, r.stderr
    assert "neighbour(s) 3 not recorded; link(s) dropped" in r.stderr
    (tmp_path / "rt.yaml").write_text(r.stdout)
    v = subprocess.run([sys.executable, "-m", "fakedev.cli", "validate", str(tmp_path / "rt.yaml")], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert v.returncode == 0, v.stderr


# -- explain (rows 67-72)
KC_DEAD = ("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
           "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {token: x}}]\n")
EXPLAIN = ["dra-harness", "explain", "--name", "nosuch", "--kubeconfig", "{S}/kc.yaml"]
CASES_EXPLAIN = [
    Case("67 '=' in a claim name", EXPLAIN + ["default/ex-fa?watch=true"], 2, "is not a DNS-1123 subdomain",
         files={"kc.yaml": KC_DEAD}),
    Case("67 ',' in a claim name", EXPLAIN + ["default/a,metadata.namespace=x"], 2, "is not a DNS-1123 subdomain",
         files={"kc.yaml": KC_DEAD}),
    Case("68 an empty namespace", EXPLAIN + ["/ex-fa"], 2, "claim namespace '' is not a DNS-1123 label",
         files={"kc.yaml": KC_DEAD}),
    Case("70 a 5000-character namespace", EXPLAIN + ["a" * 5000 + "/x"], 2, "is not a DNS-1123 label",
         files={"kc.yaml": KC_DEAD}),
    Case("71 --kubeconfig /etc/passwd", ["dra-harness", "explain", "--name", "nosuch", "--kubeconfig", "/etc/passwd",
                                         "default/x"], 2, "not a usable kubeconfig"),
    Case("72 --kubeconfig missing", ["dra-harness", "explain", "--name", "nosuch", "--kubeconfig", "{S}/nope",
                                     "default/x"], 2, "not a usable kubeconfig"),
    Case("72 a server that does not answer", EXPLAIN + ["default/x"], 2, "cannot reach the API server",
         files={"kc.yaml": KC_DEAD}),
]


JUDGE = ["dra-harness", "judge", "--name", "nosuch", "--kubeconfig", "{S}/kc.yaml"]
CASES_EXPLAIN += [
    Case("judge: '=' in a claim name", JUDGE + ["default/ex-fa?watch=true"], 2, "is not a DNS-1123 subdomain",
         files={"kc.yaml": KC_DEAD}),
    Case("judge: neither a claim nor --all", JUDGE, 2, "name one claim (NAMESPACE/NAME) or give --all",
         files={"kc.yaml": KC_DEAD}),
    Case("judge: a claim and --all", JUDGE + ["default/x", "--all"], 2, "name one claim (NAMESPACE/NAME) or give --all",
         files={"kc.yaml": KC_DEAD}),
    Case("judge: a cluster whose truth is unknown", JUDGE + ["--all"], 2, "ground truth of this cluster is not known",
         files={"kc.yaml": KC_DEAD}),
]


@pytest.mark.parametrize("case", CASES_EXPLAIN, ids=[c.id for c in CASES_EXPLAIN])
def test_hostile_explain(case: Case, tmp_path: Path, pristine: Path):  # noqa: F811
    run_case(case, tmp_path, pristine)


# -- fakedev run --bind, mutate (rows 74-79, 90, 94)

def _bind_dir(s: Path) -> None:
    (s / "bd").mkdir()
    (s / "bd/file").write_text("not a program")


RUN = ["fakedev", "run", "--tree", "{T}"]
CASES_RUN = [
    Case("74 a new entry in /", RUN + ["--bind", "{S}/bd:/newdir", "--", "true"], 2, "cannot be made in /",
         setup=_bind_dir),
    Case("75 over /", RUN + ["--bind", "{S}/bd:/", "--", "true"], 2, "cannot bind over /", setup=_bind_dir),
    Case("76 onto what the tree provides", RUN + ["--bind", "{S}/bd:/sys/bus/pci", "--", "true"], 2,
         "which the fake tree provides", setup=_bind_dir),
    Case("76 above what the tree provides", RUN + ["--bind", "{S}/bd:/sys", "--", "true"], 2,
         "which the fake tree provides", setup=_bind_dir),
    Case("79 a command that does not exist", RUN + ["--", "/nonexistent/cmd"], 127, "/nonexistent/cmd: No such file"),
    Case("79 a file that is not a program", RUN + ["--", "{S}/bd/file"], 126, "bd/file: Permission denied",
         setup=_bind_dir),
]


@pytest.mark.skipif(not is_root, reason="fakedev run needs a mount namespace")
@pytest.mark.parametrize("case", CASES_RUN, ids=[c.id for c in CASES_RUN])
def test_hostile_run(case: Case, tmp_path: Path, pristine: Path):  # noqa: F811
    run_case(case, tmp_path, pristine)


def test_90_a_value_that_is_not_utf8_is_written_as_given(tree: Path):
    r = subprocess.run([sys.executable, "-m", "fakedev.cli", "mutate", str(tree), "corrupt-attr", "neuron0", "core_count",
                        os.fsdecode(b"\xff\xfe")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tree / "sys/class/neuron_device/neuron0/core_count").read_bytes() == b"\xff\xfe"


@pytest.mark.skipif(not is_root, reason="a read-only tree needs a mount namespace")
def test_94_a_read_only_tree_is_one_line(tree: Path, tmp_path: Path):
    script = (f"mount --bind {tree} {tree} && mount -o remount,ro,bind {tree} && "
              f"{sys.executable} -m fakedev.cli mutate {tree} remove neuron3; echo rc=$?; "
              f"{sys.executable} -m fakedev.cli generate --preset trn1.2xlarge --out {tree}/T2; echo rc=$?")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.stdout.split() == ["rc=2", "rc=2"], r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr and r.stderr.count("Read-only") == 2, r.stderr


# -- Kubernetes versions (rows 115-116): refused before a build, naming the value and its source
CASES_VERSION = [
    Case("115 K8S_VERSION=banana", ["dra-harness", "up", "--name", "p2", "--nodes", "trn1.2xlarge"], 2,
         "'banana' (from $K8S_VERSION)", env={"K8S_VERSION": "banana"}),
    Case("116 a patch of no supported minor", ["dra-harness", "up", "--name", "p2", "--nodes", "trn1.2xlarge",
                                               "--k8s-version", "1.99.0"], 2, "unsupported Kubernetes version '1.99.0'",
         env={"DRA_HARNESS_CACHE": "{S}/cache"}),
    Case("116 not a version", ["dra-harness", "up", "--name", "p2", "--nodes", "trn1.2xlarge", "--k8s-version",
                               "1.40/x.y"], 2, "unsupported Kubernetes version '1.40/x.y'",
         env={"DRA_HARNESS_CACHE": "{S}/cache"}),
]


@pytest.mark.parametrize("case", CASES_VERSION, ids=[c.id for c in CASES_VERSION])
def test_hostile_versions(case: Case, tmp_path: Path, pristine: Path):  # noqa: F811
    run_case(case, tmp_path, pristine)  # the sandbox check proves no cache directory was made


# -- the inputs added with partitions, legacy requests, driver images, capture and repro ----------
MANIFEST = {"format": 1, "server": {"gitVersion": "v1.37.2"}, "namespaces": ["ns-1"],
            "nodes": {"node-1": {"labels": {}, "topology": None}}, "cluster": {}, "order": []}


def manifest(**over) -> str:
    return json.dumps({**MANIFEST, **over})


CASES_NEW_INPUTS = [
    Case("legacy_name not a string", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2, "legacy_name: one of",
         files={"k.yaml": kit("  c: {requests: [{name: d, device: neuron, count: 1}], teams: [a], "
                              "cost_per_device_hour: 1, priority: 1, legacy_name: [1, 2]}\n")}),
    Case("legacy_name of no device plugin", ["dra-harness", "kit", "render", "{S}/k.yaml"], 2,
         "one of aws.amazon.com/neuron, vpc.amazonaws.com/efa",
         files={"k.yaml": kit("  c: {requests: [{name: d, device: neuron, count: 1}], teams: [a], "
                              "cost_per_device_hour: 1, priority: 1, legacy_name: ../../etc/passwd}\n")}),
    Case("driver-image of a file that is no program", ["dra-harness", "driver-image", "{S}/victim/data", "--tag",
                                                       "localhost/x:1", "-o", "{S}/x.tar"], 2, "is not an executable file"),
    Case("driver-image with a tag that is a path", ["dra-harness", "driver-image", "/bin/true", "--tag", "../../x",
                                                    "-o", "{S}/x.tar"], 2, "is not an image reference"),
    Case("capture --namespace that is a path", ["dra-harness", "capture", "{S}/b", "--name", "nosuch", "--namespace",
                                                "../victim"], 2, "--namespace"),
    Case("repro of a directory with no manifest", ["dra-harness", "repro", "{S}/victim"], 2,
         "not a bundle `dra-harness capture` wrote"),
    Case("repro of a manifest that is a list", ["dra-harness", "repro", "{S}"], 2, "not a bundle's manifest",
         files={"capture.json": "[1, 2]"}),
    Case("repro: a namespace that is a path", ["dra-harness", "repro", "{S}"], 2, "namespace",
         files={"capture.json": manifest(namespaces=["../victim"])}),
    Case("repro: a node name that is a path", ["dra-harness", "repro", "{S}"], 2, "is not a DNS-1123 subdomain",
         files={"capture.json": manifest(nodes={"../x": {"topology": None}})}),
    Case("repro: a topology outside the bundle", ["dra-harness", "repro", "{S}"], 2, "is not a file inside the bundle",
         files={"capture.json": manifest(nodes={"node-1": {"topology": "../../../../../../etc/passwd"}})}),
    Case("repro: an order entry of another kind", ["dra-harness", "repro", "{S}"], 2, "is not one of",
         files={"capture.json": manifest(order=[{"kind": "Secret", "namespace": "ns-1", "name": "s"}])}),
    Case("conform of an unknown check", ["dra-harness", "conform", "--driver", "refdriver-neuron", "--check",
                                         "../x"], 2, "unknown check"),
    Case("conform on a spec that is not one", ["dra-harness", "conform", "--driver", "refdriver-neuron", "--nodes",
                                               "{S}/victim/data"], 2, "expected a mapping"),
    Case("conform on two nodes", ["dra-harness", "conform", "--driver", "refdriver-neuron", "--nodes",
                                  "trn1.2xlarge,trn1.2xlarge"], 2, "about one node"),
    Case("conform with artifacts under a file", ["dra-harness", "conform", "--driver", "refdriver-neuron",
                                                 "--artifacts", "{S}/victim/data/x"], 2, "--artifacts"),
    Case("refdriver --partition-lnc without --partition-cores", ["refdriver", "neuron", "--sysfs-root", "{T}",
                                                                "--dry-run", "--partition-lnc", "2"], 2,
         "need --partition-cores"),
]


@pytest.mark.parametrize("case", CASES_NEW_INPUTS, ids=lambda c: c.id)
def test_hostile_new_inputs(case: Case, tmp_path: Path, pristine: Path):  # noqa: F811
    run_case(case, tmp_path, pristine)
