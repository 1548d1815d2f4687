"""The kind path, checked as far as this machine allows (kind cannot run here: no container
engine for privileged nodes). Configs decode strictly with kind's own v1alpha4 types; the Helm
chart renders and every object validates against the OpenAPI schema of each supported
Kubernetes version; the GitHub workflow passes actionlint. Each checker is shown to fail on a
broken input, so a pass means something."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.backends.kind import backend as kindbackend
from harness.backends.kind import config as kindcfg
from harness.backends.spec import ClusterSpec, parse_nodes

from .conftest import ROOT
from .openapi_strict import validate

pytestmark = pytest.mark.slow
K8S = {"1.34": "v1.34.4", "1.35": "v1.35.4", "1.36": "v1.36.3", "1.37": "v1.37.2"}
CHART = ROOT / "deploy/chart/dra-harness-refdriver"


@pytest.fixture(scope="module")
def tools() -> Path:
    r = subprocess.run([str(ROOT / "clusters/kind/tools.sh"), "all"], capture_output=True, text=True, timeout=3000)
    if r.returncode != 0:
        pytest.fail(f"building the kind-path tools failed:\n{r.stderr[-3000:]}")
    return Path(r.stdout.strip())


def _tool(tools: Path, name: str) -> str:
    return str(sorted(tools.glob(f"{name}-*"))[-1])


def test_checked_in_configs_are_current(tmp_path):
    written = kindcfg.generate_all(tmp_path)
    assert len(written) == 12  # 4 versions x 3 topology sets
    for p in written:
        rel = p.relative_to(tmp_path)
        assert filecmp.cmp(p, ROOT / "clusters/kind" / rel, shallow=False), f"clusters/kind/{rel} is stale: make kind-configs"


def test_kind_configs_decode_strictly_with_kinds_types(tools, tmp_path):
    files = sorted((ROOT / "clusters/kind").glob("1.*/*.yaml"))
    r = subprocess.run([_tool(tools, "kindcheck"), *map(str, files)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": ok") == len(files) == 12
    bad = tmp_path / "bad.yaml"
    cfg = yaml.safe_load(files[0].read_text())
    cfg["nodes"][1]["extraMount"] = cfg["nodes"][1].pop("extraMounts")  # a typo kind would reject
    bad.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([_tool(tools, "kindcheck"), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "extraMount" in r.stderr


def test_config_details():
    spec = ClusterSpec(name="x", nodes=parse_nodes("trn1.32xlarge,trn2.48xlarge"), k8s_version="1.35")
    cfg = kindcfg.render(spec, {n.name: Path(f"/t/{n.name}") for n in spec.nodes}, "1.35")
    workers = [n for n in cfg["nodes"] if n["role"] == "worker"]
    assert [w["extraMounts"][0]["hostPath"] for w in workers] == ["/t/trn1-32xlarge-0", "/t/trn2-48xlarge-1"]
    assert all(w["extraMounts"][0]["containerPath"] == kindcfg.TREE_IN_NODE for w in workers)
    import ipaddress

    from harness.backends.kind import engine

    for key in ("podSubnet", "serviceSubnet"):  # allowed, and clear of docker's pool, the kind network, the node veths
        net = ipaddress.ip_network(cfg["networking"][key])
        assert net.subnet_of(engine.ALLOWED) and not any(net.overlaps(ipaddress.ip_network(o)) for o in (
            engine.POOL, engine.KIND_SUBNET, engine.BIP.replace(".1/", ".0/"), str(engine.NODE_VETHS))), net
    assert cfg["networking"]["disableDefaultCNI"] and cfg["networking"]["kubeProxyMode"] == "none"
    assert any("failCgroupV1: false" in p for p in cfg["kubeadmConfigPatches"])
    assert any("SystemVerification" in p for p in cfg["nodes"][0]["kubeadmConfigPatches"])
    assert any("io.containerd.nri.v1.nri" in p for p in cfg["containerdConfigPatches"])
    assert kindcfg.node_image("1.35").startswith("kindest/node:v1.35.8@sha256:")
    with pytest.raises(ValueError, match="not supported"):
        kindcfg.render(spec, {}, "1.33")


def _helm_template(tools: Path, *sets: str) -> list[dict]:
    r = subprocess.run([_tool(tools, "helm"), "template", "dra-harness", str(CHART), "--namespace", "dra-harness",
                        "--kube-version", "1.36.0", *sets], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


@pytest.mark.parametrize("minor", sorted(K8S))
def test_chart_renders_and_validates_against_openapi(tools, minor):
    objs = _helm_template(tools, "--set", "efa.args={--inject-bug=efa-shift}")
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(["ServiceAccount"] * 2 + ["ClusterRole"] * 2 + ["ClusterRoleBinding"] * 2 +
                           ["DaemonSet"] * 2 + ["DeviceClass"] * 2 + ["ValidatingAdmissionPolicy"] * 2 +
                           ["ValidatingAdmissionPolicyBinding"] * 2)
    for o in objs:
        assert validate(o, K8S[minor]) == [], o["metadata"]["name"]
    ds = next(o for o in objs if o["kind"] == "DaemonSet" and o["metadata"]["name"].endswith("-efa"))
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:2] == ["efa", "--sysfs-root=/fakedev/tree"] and "--inject-bug=efa-shift" in c["args"]
    assert c["securityContext"]["privileged"] is False
    role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-neuron"))
    driver_rule = next(r for r in role["rules"] if r["resources"] == ["resourceclaims/driver"])
    assert driver_rule["resourceNames"] == ["neuron.aws.com"]
    vap = next(o for o in objs if o["kind"] == "ValidatingAdmissionPolicy" and o["metadata"]["name"].endswith("-neuron-slices"))
    rules = " ".join(v["expression"] for v in vap["spec"]["validations"])
    assert "authentication.kubernetes.io/node-name" in vap["spec"]["variables"][0]["expression"]
    assert '"neuron.aws.com"' in rules and "nodeName" in rules


def test_openapi_validation_can_fail(tools):
    objs = _helm_template(tools)
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    ds["spec"]["selectr"] = {}
    errs = validate(ds, K8S["1.36"])
    assert any("imagePullPolicy: want a string" in e for e in errs) and any("selectr: unknown field" in e for e in errs)
    dc = next(o for o in objs if o["kind"] == "DeviceClass")
    dc["spec"]["selectors"][0]["cel"]["expresion"] = "x"
    assert any("expresion: unknown field" in e for e in validate(dc, K8S["1.34"]))


def test_chart_can_disable_a_driver(tools):
    objs = _helm_template(tools, "--set", "efa.enabled=false", "--set", "deviceClasses=false")
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "DaemonSet"} == {"dra-harness-neuron"}
    assert not [o for o in objs if o["kind"] == "DeviceClass"]


def test_workflow_passes_actionlint(tools, tmp_path):
    wf = ROOT / ".github/workflows/e2e.yml"
    r = subprocess.run([_tool(tools, "actionlint"), "-no-color", str(wf)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    broken = tmp_path / ".github/workflows/x.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(wf.read_text().replace("runs-on:", "runs_on:", 1))
    r = subprocess.run([_tool(tools, "actionlint"), "-no-color", str(broken)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1


def test_helm_releases_from_driver_profiles(tmp_path):
    prof = tmp_path / "other.yaml"
    prof.write_text(yaml.safe_dump({"name": "other-gpu", "driver": "gpu.example.com", "command": ["x"],
                                    "kind_chart": "oci://registry.example/charts/gpu-driver",
                                    "kind_values": {"kubeletPlugin": {"enabled": True}}}))
    rel = kindbackend.helm_releases(["refdriver-neuron", str(prof)], {})
    assert [(r, c.split("/")[-1]) for r, c, _ in rel] == [("dra-harness", "dra-harness-refdriver"), ("other-gpu", "gpu-driver")]
    assert rel[0][2]["neuron"]["enabled"] and not rel[0][2]["efa"]["enabled"]
    assert rel[1][2] == {"kubeletPlugin": {"enabled": True}}
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"name": "bare", "driver": "x.example.com", "command": ["x"]}))
    with pytest.raises(kindbackend.KindError, match="no kind_chart"):
        kindbackend.helm_releases([str(bare)], {})


def test_mknod_script_and_helm_values(trees):
    import fakedev

    script = kindbackend.mknod_script(fakedev.truth_of(trees["trn1.32xlarge"]))
    assert "mknod -m 0666 /dev/neuron15 c 240 15" in script and "uverbs7 c 231 199" in script and "rdma_cm c 10 58" in script
    v = kindbackend.helm_values(["refdriver-neuron", "refdriver-efa"], {"refdriver-neuron": ["--inject-bug=swapped-numa"]})
    assert v["neuron"]["enabled"] and v["efa"]["enabled"]
    assert v["neuron"]["args"] == ["--extended-attributes", "--inject-bug=swapped-numa"]


def test_chart_with_partition_cores_renders_the_classes_that_tell_partitions_apart(tools):
    """As refdriver/manifests/deviceclasses-partitioned.yaml: neuron.aws.com takes whole devices,
    neuroncores.aws.com the core partitions; without the flag, AWS's class alone."""
    from harness.backends.kind.backend import helm_values

    import yaml as _yaml

    vals = helm_values(["refdriver-neuron-partitioned", "refdriver-efa"], {})
    assert "--partition-cores" in vals["neuron"]["args"]  # the profile's own argument reaches the chart
    objs = _helm_template(tools, "--set", "neuron.args={--extended-attributes,--partition-cores}")
    classes = {o["metadata"]["name"]: o["spec"]["selectors"][0]["cel"]["expression"]
               for o in objs if o["kind"] == "DeviceClass"}
    want = {d["metadata"]["name"]: d["spec"]["selectors"][0]["cel"]["expression"] for d in _yaml.safe_load_all(
        (ROOT / "refdriver/manifests/deviceclasses-partitioned.yaml").read_text()) if d}
    assert classes == want
    for o in objs:
        if o["kind"] == "DeviceClass":
            assert validate(o, K8S["1.34"]) == []
    plain = {o["metadata"]["name"] for o in _helm_template(tools) if o["kind"] == "DeviceClass"}
    assert plain == {"neuron.aws.com", "efa.networking.k8s.aws"}
