"""The topology picture (fakedev/picture.py) held to the truth and to lstopo of the same tree.

For each preset: every PCI function of the truth is drawn exactly once, inside the box of its
root complex and of that root's NUMA node; lstopo (`HWLOC_FSROOT`, `--whole-io`) places every one
under the host bridge of the same root and the package of the same NUMA node; and headless
chromium renders the two side by side (artifacts/pictures/, for the eye). The reader of the
picture is shown to catch a device drawn twice or not at all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import fakedev
from fakedev.picture import placements, svg

from .conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is needed (apt install graphviz)")
PRESETS = ["trn1.32xlarge", "trn2.48xlarge", "inf2.48xlarge"]


@pytest.fixture(scope="module", params=PRESETS)
def tree(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param.replace(".", "-")) / "tree"
    fakedev.generate(fakedev.load_preset(request.param), out)
    return out


def _pci(truth) -> list:
    return [d for d in truth.devices if d.kind in ("neuron", "efa", "ena")]


def _problems(truth, drawn: dict[str, list[dict]]) -> list[str]:
    """Where the picture disagrees with the truth (empty: it agrees)."""
    numa_of_root = {r.name: r.numa_node for r in truth.roots}
    out = []
    for d in _pci(truth):
        boxes = drawn.get(d.id, [])
        if len(boxes) != 1:
            out.append(f"{d.id} drawn {len(boxes)} times")
            continue
        inside = boxes[0]["clusters"]
        if f"cluster_root_{d.root}" not in inside or f"cluster_numa{numa_of_root.get(d.root, d.numa_node)}" not in inside:
            out.append(f"{d.id} drawn inside {inside}, not root {d.root} on NUMA {numa_of_root.get(d.root)}")
    extra = set(drawn) - {d.id for d in _pci(truth)}
    out += [f"{x} drawn, but the truth has no such device" for x in sorted(extra)]
    return out


def test_every_pci_device_is_drawn_once_under_its_root_and_numa_node(tree):
    truth = fakedev.truth_of(tree)
    picture = svg(truth, "t", owners={_pci(truth)[0].id: "ns/a"})
    assert _problems(truth, placements(picture)) == []
    assert "claim ns/a" in picture and "legend" in picture  # a claim coloured, and named in the legend
    if any(d.efa for d in _pci(truth)):
        assert "paired EFA" in picture  # what lstopo cannot draw
    if any(d.connected for d in _pci(truth)):
        assert 'stroke-dasharray="1,5"' in picture  # the torus links, dotted


def _lstopo(tree: Path) -> dict[str, tuple[str, set[int]]]:
    """PCI address -> (the host bridge's bus range, the NUMA nodes of its CPU-side parent)."""
    env = {**os.environ, "HWLOC_FSROOT": str(tree), "HWLOC_COMPONENTS": "-x86"}
    r = subprocess.run(["lstopo", "--whole-io", "--of", "xml", "-"], capture_output=True, text=True, env=env, check=True)
    out = {}

    def walk(obj, nodes: set[int], bridge: str | None) -> None:
        t = obj.get("type")
        if t in ("Package", "Group", "Machine") and obj.get("nodeset"):
            mask = int(obj.get("nodeset").replace(",", "").replace("0x", "") or "0", 16)
            nodes = {i for i in range(64) if mask >> i & 1}
        if t == "Bridge" and obj.get("depth") == "0":
            bridge = obj.get("bridge_pci")
        if t == "PCIDev":
            out[obj.get("pci_busid")] = (bridge, nodes)
        for child in obj.findall("object"):
            walk(child, nodes, bridge)

    walk(ET.fromstring(r.stdout).find("object"), set(), None)
    return out


@pytest.mark.skipif(shutil.which("lstopo") is None, reason="hwloc's lstopo is needed (apt install hwloc)")
def test_lstopo_places_every_device_where_the_picture_does(tree):
    truth = fakedev.truth_of(tree)
    numa_of_root = {r.name: r.numa_node for r in truth.roots}
    seen = _lstopo(tree)
    for d in _pci(truth):
        bridge, nodes = seen[d.bdf]
        bus = int(d.root.split(":")[1], 16)
        lo, hi = (int(x, 16) for x in re.search(r"\[([0-9a-f]+)-([0-9a-f]+)\]", bridge).groups())
        assert lo <= bus <= hi, (d.id, bridge, d.root)
        assert numa_of_root[d.root] in nodes, (d.id, nodes)


@pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("lstopo") is None,
                    reason="headless chromium and lstopo are needed")
def test_chromium_renders_the_picture_beside_lstopo(tree):
    out = ROOT / "artifacts" / "pictures"
    out.mkdir(parents=True, exist_ok=True)
    name = fakedev.truth_of(tree).instance_type
    (out / f"{name}.svg").write_text(svg(fakedev.truth_of(tree), name))
    env = {**os.environ, "HWLOC_FSROOT": str(tree), "HWLOC_COMPONENTS": "-x86"}
    subprocess.run(["lstopo", "--whole-io", "-f", "--of", "png", str(out / f"{name}.lstopo.png")], env=env, check=True,
                   capture_output=True)
    page = out / f"{name}.html"
    page.write_text(f"<html><body style='margin:0'><h3>dra-harness</h3><img src='{name}.svg'>"
                    f"<h3>lstopo</h3><img src='{name}.lstopo.png'></body></html>")
    shot = out / f"{name}.side-by-side.png"
    shot.unlink(missing_ok=True)
    subprocess.run(["chromium", "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={shot}",
                    "--window-size=2000,2400", f"file://{page}"], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_the_reader_catches_a_device_drawn_twice_or_not_at_all(tmp_path):
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), tmp_path / "t")
    truth = fakedev.truth_of(tmp_path / "t")
    picture = svg(truth, "t")
    first = re.search(r'<g id="node\d+" class="node">.*?</g>\n</g>', picture, re.S)
    assert first, "a node group in the SVG"
    twice = picture.replace(first.group(0), first.group(0) * 2, 1)
    never = picture.replace(first.group(0), "", 1)
    assert any("drawn 2 times" in p for p in _problems(truth, placements(twice)))
    assert any("drawn 0 times" in p for p in _problems(truth, placements(never)))
