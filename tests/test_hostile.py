"""Hostile and careless input, table-driven (shared/research/reliability-probe.md re-run as a
permanent test): every case asserts its exit code, a one-line message (no traceback), and that
nothing outside its sandbox changed. Each row names the probe case it closes."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

import fakedev

from .conftest import ROOT, is_root

BOMB = ("preset: trn1.2xlarge\nmemory_gib:\n  - &a [l,l,l,l,l,l,l,l,l]\n  - &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "  - &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  - &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  - &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "  - &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n  - &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n  - &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "  - &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n")
EXE = {"fakedev": "fakedev.cli", "refdriver": "refdriver.cli", "dra-harness": "harness.cli"}


def efas(n: int) -> str:
    rows = "\n".join(f'  - {{bdf: "0000:{0x10 + i // 32:02x}:{i % 32:02x}.0", parent: "pci0000:10"}}' for i in range(n))
    return f"preset: trn1.2xlarge\nefa_devices:\n{rows}\n"


@dataclass
class Case:
    id: str  # the reliability-probe case(s) it closes
    argv: list[str]  # {S} is the sandbox, {T} a rendered trn1.32xlarge tree in it
    rc: int
    says: str  # the one line (stderr) contains this
    files: dict[str, str | bytes] = field(default_factory=dict)  # written into the sandbox first
    setup: Callable[[Path], None] | None = None
    seconds: float = 30.0
    memory_mb: int | None = None  # address-space limit for the run
    env: dict[str, str] = field(default_factory=dict)  # more environment ({S} substituted)


def _corrupt_state(s: Path) -> None:
    (s / "T/fakedev/state.json").write_text('{"removed": 5}')


def _corrupt_model(s: Path) -> None:
    (s / "T/fakedev/topology.yaml").write_text("instance_type: [")


def _foreign_cluster_dir(s: Path) -> None:
    (s / "state/mine").mkdir(parents=True)
    (s / "state/mine/precious").write_text("keep me")


def _corrupt_cluster_state(s: Path) -> None:
    d = s / "state/broken"
    d.mkdir(parents=True)
    (d / ".dra-harness-cluster").write_text("broken\n")
    (d / "state.json").write_text("{not json")


def _symlink_out(s: Path) -> None:
    (s / "empty").mkdir()
    (s / "link").symlink_to(s / "empty")


CASES = [
    # 1. names that become paths
    Case("E8 ../victim", ["dra-harness", "down", "--name", "../victim"], 2, "not a DNS-1123 label"),
    Case("E8 empty", ["dra-harness", "down", "--name", ""], 2, "not a DNS-1123 label"),
    Case("E8 dot", ["dra-harness", "down", "--name", "."], 2, "not a DNS-1123 label"),
    Case("E8 absolute", ["dra-harness", "down", "--name", "{S}/victim"], 2, "not a DNS-1123 label"),
    Case("E8 newline", ["dra-harness", "down", "--name", "a\nb"], 2, "not a DNS-1123 label"),
    Case("E9 up ../victim", ["dra-harness", "up", "--name", "../victim", "--nodes", "trn1.2xlarge", "--k8s-version", "9.99"],
         2, "not a DNS-1123 label"),
    Case("E9 status", ["dra-harness", "status", "--name", "../victim"], 2, "not a DNS-1123 label"),
    Case("E3 explain name", ["dra-harness", "explain", "--name", "../victim", "ns/c"], 2, "not a DNS-1123 label"),
    Case("node name", ["dra-harness", "up", "--nodes", "../evil=trn1.2xlarge", "--k8s-version", "9.99"], 2, "node name"),
    Case("foreign state dir", ["dra-harness", "down", "--name", "mine"], 2, "not made by dra-harness",
         setup=_foreign_cluster_dir),
    Case("profile name", ["dra-harness", "up", "--driver", "{S}/p.yaml", "--nodes", "trn1.2xlarge"], 2, "profile name",
         files={"p.yaml": "name: ../x\ndriver: a.example.com\ncommand: [true]\n"}),
    Case("profile identity", ["dra-harness", "up", "--driver", "{S}/p.yaml", "--nodes", "trn1.2xlarge"], 2, "identity",
         files={"p.yaml": "name: x\ndriver: a.example.com\ncommand: [/bin/true]\nidentity: {name_pattern: 1, pci_attribute: 2}\n"}),
    Case("ENA ifname newline", ["fakedev", "validate", "{S}/e.yaml"], 2, "interface name",
         files={"e.yaml": 'preset: trn1.32xlarge\nena_devices:\n  - {bdf: "0000:10:02.0", ifname: "ens5\\nx"}\n'}),
    Case("kit unknown key", ["dra-harness", "kit", "check", "{S}/k.yaml"], 2, "unknown key",
         files={"k.yaml": "kit: k\nteams: {}\nclasses: {}\nextra: 1\n"}),
    Case("kit bomb", ["dra-harness", "kit", "render", "{S}/bomb.yaml"], 2, "alias",
         files={"bomb.yaml": BOMB.replace("preset: trn1.2xlarge\nmemory_gib:", "kit:")}, seconds=10, memory_mb=900),
    Case("kit unknown preset", ["dra-harness", "kit", "check", str(ROOT / "platform/golden-paths.yaml"), "--presets",
                                "../../etc"], 2, "unknown preset"),
    Case("profile nri not a bool", ["dra-harness", "up", "--driver", "{S}/p.yaml", "--nodes", "trn1.2xlarge"], 2,
         "nri: must be true or false", files={"p.yaml": "name: x\ndriver: a.example.com\ncommand: [/bin/true]\nnri: yes please\n"}),
    Case("trace missing fields", ["dra-harness", "replay", "{S}/t.yaml"], 2, "trace: needs name",
         files={"t.yaml": "name: x\n"}),
    Case("trace bad workload", ["dra-harness", "replay", "{S}/t.yaml"], 2, "workloads[0]: needs at",
         files={"t.yaml": "name: x\nkit: k\nnodes: n\nduration: 1\nworkloads: [{at: 0}]\n"}),
    Case("trace bomb", ["dra-harness", "replay", "{S}/bomb.yaml"], 2, "alias",
         files={"bomb.yaml": BOMB}, seconds=10, memory_mb=900),
    Case("report not a run dir", ["dra-harness", "report", "/etc"], 2, "not a replay's run directory"),
    # 2. one bounded YAML loader
    Case("A10 alias bomb", ["fakedev", "validate", "{S}/bomb.yaml"], 2, "alias", files={"bomb.yaml": BOMB},
         seconds=5, memory_mb=600),
    Case("A10 generate bomb", ["fakedev", "generate", "--spec", "{S}/bomb.yaml", "--out", "{S}/out"], 2, "alias",
         files={"bomb.yaml": BOMB}, seconds=5, memory_mb=600),
    Case("C2 add-neuron bomb", ["fakedev", "mutate", "{T}", "add-neuron", BOMB.replace("preset: trn1.2xlarge\n", "")], 2,
         "alias", seconds=5, memory_mb=600),
    Case("profile bomb", ["dra-harness", "up", "--driver", "{S}/bomb.yaml", "--nodes", "trn1.2xlarge"], 2, "alias",
         files={"bomb.yaml": BOMB}, seconds=10, memory_mb=900),
    Case("nodes bomb", ["dra-harness", "up", "--nodes", "{S}/bomb.yaml"], 2, "alias", files={"bomb.yaml": BOMB},
         seconds=10, memory_mb=900),
    Case("A11 not UTF-8", ["fakedev", "validate", "{S}/latin1.yaml"], 2, "not UTF-8",
         files={"latin1.yaml": b"preset: trn1.2xlarge # caf\xe9\n"}),
    Case("huge file", ["fakedev", "validate", "{S}/big.yaml"], 2, "larger than",
         files={"big.yaml": "preset: trn1.2xlarge\n" + "#" * (2 << 20) + "\n"}),
    # 3. limits
    Case("A4 65536 EFAs", ["fakedev", "validate", "{S}/many.yaml"], 2, "larger than", files={"many.yaml": efas(65536)},
         seconds=10),
    Case("A4 5000 EFAs", ["fakedev", "validate", "{S}/5k.yaml"], 2, "at most 64", files={"5k.yaml": efas(5000)}),
    Case("A5 300 EFAs", ["fakedev", "validate", "{S}/300.yaml"], 2, "at most 64", files={"300.yaml": efas(300)}),
    Case("A3 100k Neuron", ["fakedev", "validate", "{S}/n.yaml"], 2, "larger than", seconds=10,
         files={"n.yaml": "preset: trn1.2xlarge\nneuron_devices:\n" + "  - {index: 1}\n" * 100_000}),
    Case("A3 5000 Neuron", ["fakedev", "validate", "{S}/n.yaml"], 2, "at most 64", seconds=10,
         files={"n.yaml": "preset: trn1.2xlarge\nneuron_devices:\n" + "  - {index: 1}\n" * 5000}),
    # 4. strings: whole-string matches, no control characters
    Case("A14 serial newline", ["fakedev", "validate", "{S}/s.yaml"], 2, "16 hex digits",
         files={"s.yaml": 'preset: trn1.2xlarge\nneuron_devices:\n  - {index: 0, serial: "0123456789abcdef\\n"}\n'}),
    Case("A14 instance newline", ["fakedev", "validate", "{S}/i.yaml"], 2, "instance type",
         files={"i.yaml": 'preset: trn1.2xlarge\ninstance_type: "trn1.2xlarge\\n"\n'}),
    Case("C5 instance-type newline", ["fakedev", "mutate", "{T}", "instance-type", "x\nY"], 2, "not an EC2 instance type"),
    # 6. symlinked --out, system directories
    Case("B3 symlink out", ["fakedev", "generate", "--preset", "inf2.xlarge", "--out", "{S}/link"], 2, "symbolic link",
         setup=_symlink_out),
    Case("B4 under /etc", ["fakedev", "generate", "--preset", "inf2.xlarge", "--out", "/etc/dra-harness-probe"], 2,
         "system directory"),
    Case("B4 under /usr/lib", ["fakedev", "generate", "--preset", "inf2.xlarge", "--out", "/usr/lib/dra-harness-probe"], 2,
         "system directory"),
    # 10. corrupted state
    Case("C3 tree state", ["fakedev", "truth", "{T}"], 2, "state.json", setup=_corrupt_state),
    Case("C3 tree model", ["fakedev", "mutate", "{T}", "remove", "neuron1"], 2, "topology.yaml", setup=_corrupt_model),
    Case("cluster state", ["dra-harness", "status", "--name", "broken"], 2, "state.json", setup=_corrupt_cluster_state),
]


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                             os.readlink(p) if p.is_symlink() else None)
    return out


def _limit(mb: int | None):
    if mb is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pristine")
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), base / "T")
    return base / "T"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, pristine: Path):
    run_case(case, tmp_path, pristine)


def run_case(case: Case, tmp_path: Path, pristine: Path) -> None:
    """Run one case in a fresh sandbox: its exit code, one line on stderr, no traceback, in time,
    and nothing outside the state root changed (the table-driven suites share this)."""
    s = tmp_path / "sandbox"
    s.mkdir()
    (s / "victim").mkdir()
    (s / "victim/data").write_text("must survive")
    if "{T}" in " ".join(case.argv) or case.setup in (_corrupt_state, _corrupt_model):
        subprocess.run(["cp", "-a", str(pristine), str(s / "T")], check=True)
    for name, data in case.files.items():
        (s / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    if case.setup:
        case.setup(s)
    before = snapshot(s)
    argv = [a.replace("{S}", str(s)).replace("{T}", str(s / "T")) for a in case.argv]
    env = {**os.environ, "DRA_HARNESS_STATE": str(s / "state"), "HOME": str(s / "home"),
           **{k: v.replace("{S}", str(s)) for k, v in case.env.items()}}
    t0 = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", EXE[argv[0]], *argv[1:]], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, preexec_fn=_limit(case.memory_mb),
                          start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=case.seconds + 30)
        except subprocess.TimeoutExpired:  # a case that hangs leaves nothing running: what it started goes too
            os.killpg(p.pid, signal.SIGKILL)  # (a repro once left `make bins` compiling in the sandbox)
            p.communicate()
            raise
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    took = time.monotonic() - t0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == case.rc, f"rc {r.returncode}: {r.stderr[-1500:]}"
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-1500:]
    assert len(lines) == 1 and case.says in lines[0], f"want one line with {case.says!r}, got: {r.stderr[-800:]}"
    assert took < case.seconds, f"took {took:.1f}s"
    after = snapshot(s)
    after.pop("state", None)  # the (empty, private) state root may be created
    assert {k: v for k, v in after.items() if not k.startswith("state")} == \
           {k: v for k, v in before.items() if not k.startswith("state")}, "the sandbox changed"
    assert {k for k in after if k.startswith("state/")} == {k for k in before if k.startswith("state/")}
    assert (s / "victim/data").read_text() == "must survive"
    assert not Path("/etc/dra-harness-probe").exists() and not Path("/usr/lib/dra-harness-probe").exists()


@pytest.mark.skipif(not is_root, reason="system directories are writable only as root")
def test_system_dirs_are_refused_in_process():
    with pytest.raises(fakedev.TreeError, match="system directory"):
        fakedev.generate(fakedev.load_preset("inf2.xlarge"), "/var/lib/dra-harness-probe")


# -- 7. malformed files the drivers read: a warning naming the file, that device's attribute omitted


def _driver(tree: Path, kind: str, *extra: str) -> tuple[dict[str, dict], str]:
    r = subprocess.run([sys.executable, "-m", "refdriver.cli", kind, "--sysfs-root", str(tree), "--dry-run",
                        "--extended-attributes" if kind == "neuron" else "--node-name=n", *extra],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    import json

    devices = {d["name"]: {k: next(iter(v.values())) for k, v in d["attributes"].items()}
               for s in json.loads(r.stdout) for d in s["spec"]["devices"]}
    return devices, r.stderr


DG1 = "resource.aws.com/devicegroup1_id"
NUMA = "resource.kubernetes.io/numaNode"
ROOTATTR = "resource.kubernetes.io/pcieRoot"


@pytest.mark.parametrize("kind", ["neuron", "efa"])
def test_d9_device_map_entry_that_is_not_an_address(tree: Path, kind: str):
    cdm = tree / "etc/aws-neuron/connected-device-map.json"
    import json

    data = json.loads(cdm.read_text())
    data["0"] = {"x": 1}
    cdm.write_text(json.dumps(data))
    devices, err = _driver(tree, kind)
    assert "connected-device-map.json: entry '0' is not index -> EFA PCI address; skipped" in err
    if kind == "neuron":
        assert DG1 not in devices["neuron-device-0"] and DG1 in devices["neuron-device-1"]


def test_d8_neuron_ls_garbage_warns_and_names_the_file(tree: Path):
    (tree / "run/aws-neuron/neuron-ls.json").write_text("garbage")
    devices, err = _driver(tree, "neuron")
    assert "neuron-ls.json: not JSON" in err and "pcieRoot and numaNode omitted for every Neuron device" in err
    assert len(devices) == 16 and all(ROOTATTR not in a for a in devices.values())


def test_d8_one_bad_neuron_ls_entry_costs_one_device(tree: Path):
    import json

    f = tree / "run/aws-neuron/neuron-ls.json"
    rows = json.loads(f.read_text())
    rows[0]["bdf"] = "zz"
    rows[0].pop("domain_bdf", None)
    f.write_text(json.dumps(rows))
    devices, err = _driver(tree, "neuron")
    bad = f"neuron-device-{rows[0]['neuron_device']}"
    assert "entry 0 has no usable neuron_device and PCI address" in err
    assert ROOTATTR not in devices[bad] and sum(ROOTATTR in a for a in devices.values()) == 15


@pytest.mark.parametrize("value", ["99999999999999999999", "garbage", "0x1", "-5"])
def test_d6_d7_numa_node_out_of_range(tree: Path, value: str):
    fakedev.Tree(tree).attr("0000:10:1a.0", "pci/numa_node", "corrupt", value + "\n")
    devices, err = _driver(tree, "efa")
    assert "0000:10:1a.0/numa_node" in err and "numaNode omitted for this device" in err
    assert "dra.net/numaNode" not in devices["pci-0000-10-1a-0"]
    assert sum("dra.net/numaNode" in a for a in devices.values()) == len(devices) - 1


def test_d6_connected_devices_out_of_range(tree: Path):
    fakedev.Tree(tree).attr("neuron0", "connected_devices", "corrupt", "99999, 1, 0\n")
    devices, err = _driver(tree, "neuron")
    assert "neuron0/connected_devices: '99999' is not a neighbour device index; dropped" in err
    assert "'0' is not a neighbour" in err  # itself


# -- fuzzing of CLI arguments that become paths

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

names = st.one_of(st.text(max_size=70), st.sampled_from(["..", ".", "/", "../x", "a/b", "-", "UP", "a" * 64, "ok-name"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=st.sampled_from(["down", "status"]), name=names)
def test_fuzz_cluster_names_never_touch_anything(tmp_path_factory, monkeypatch, capsys, cmd, name):
    from harness import cli as hcli

    s = tmp_path_factory.mktemp("fuzz")
    (s / "state").mkdir()
    (s / "victim").mkdir()
    (s / "victim/data").write_text("x")
    monkeypatch.setenv("DRA_HARNESS_STATE", str(s / "state"))
    before = snapshot(s)
    try:
        rc = hcli.main([cmd, "--name", name])
    except SystemExit as e:  # argparse refusing a value that looks like an option
        rc = e.code
    err = capsys.readouterr().err
    assert rc in (0, 1, 2)
    if rc == 2 and err:
        assert len([x for x in err.splitlines() if x.strip()]) <= 2 and "Traceback" not in err
    assert snapshot(s) == before


segments = st.lists(st.sampled_from(["..", ".", "a", "b", "link", "", "x" * 3]), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=segments)
def test_fuzz_out_paths_stay_inside_or_are_refused(tmp_path_factory, parts):
    s = tmp_path_factory.mktemp("fuzzout")
    base = s / "in/d1/d2/d3"
    base.mkdir(parents=True)
    (base / "link").symlink_to(s / "in")
    out = base / "/".join(parts)
    if not os.path.realpath(out).startswith(str(s) + os.sep):
        return  # a path the user aimed outside on purpose: not this property
    outside_before = {p.name for p in s.iterdir()}
    r = subprocess.run([sys.executable, "-m", "fakedev.cli", "generate", "--preset", "inf2.xlarge", "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode in (0, 2), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 1
    assert {p.name for p in s.iterdir()} - outside_before <= {"in"} or r.returncode == 0
    if r.returncode == 0:
        assert fakedev.is_tree(os.path.realpath(out)) and not Path(out).is_symlink()
        assert (base / "link").is_symlink(), "a symlink was replaced"


def test_state_removal_needs_the_marker_and_removes_it_last(tmp_path):
    from harness.backends.local.layout import MARKER, remove_marked

    mine = tmp_path / "mine"
    (mine / "nodes/n/tree").mkdir(parents=True)
    (mine / MARKER).write_text("mine\n")
    assert remove_marked(mine) and not mine.exists()
    foreign = tmp_path / "foreign"
    (foreign / "data").mkdir(parents=True)
    assert not remove_marked(foreign) and (foreign / "data").exists()


@pytest.mark.parametrize("argv, text, want", [
    (["refdriver.cli", "neuron", "--host-nodes", "{f}"], "", "not a host node list"),
    (["refdriver.cli", "neuron", "--host-nodes", "{f}"], "{", "not a host node list"),
    (["refdriver.cli", "neuron", "--host-nodes", "{f}"], '[{"node_name": "a"}]', "not a host node list"),
    (["refdriver.cli", "neuron", "--host-nodes", "{f}"], "[1]", "not a host node list"),
    (["harness.backends.imds", "--node", "n", "--data", "{f}"], "not json", "no metadata for node n"),
    (["harness.backends.imds", "--node", "x", "--data", "{f}"], '{"n": {}}', "no metadata for node x"),
    (["harness.backends.imds", "--node", "n", "--data", "{f}/missing"], "", "no metadata for node n"),
], ids=["host-nodes-empty", "host-nodes-broken", "host-nodes-missing-fields", "host-nodes-not-objects",
        "imds-data-not-json", "imds-node-absent", "imds-data-missing"])
def test_host_mode_and_imds_inputs_are_one_line_errors(tmp_path: Path, argv: list[str], text: str, want: str):
    """The inputs this work added: a driver host's node list and the kind IMDS pod's data file."""
    f = tmp_path / "input.json"
    f.write_text(text)
    args = [a.replace("{f}", str(f)) for a in argv]
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and want in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5", "1e9"])
def test_the_soak_is_bounded_before_anything_starts(value):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "harness.bench", "--only", "soak", "--soak-seconds", value],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--soak-seconds" in r.stderr and "Traceback" not in r.stderr, r.stderr
