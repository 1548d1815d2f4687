"""The folder table of shared/DESIGN.md, enforced on the import graph (AST-based, as Kubernetes
enforces its import restrictions): each package imports only what its row allows. A reference
driver that shared readers with the generator of the fake could hide the fake's mistakes; a
harness that reached into a driver's internals could not run anybody else's."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from .conftest import ROOT

OURS = ("fakedev", "kubeletapi", "refdriver", "harness", "e2e", "tests")

# package (or harness room) -> the packages of ours it may import, besides itself.
ALLOWED: dict[str, set[str]] = {
    "fakedev": set(),
    "kubeletapi": set(),
    "refdriver": {"kubeletapi"},
    "harness": {"fakedev", "kubeletapi", "harness"},
    "harness.judge": {"fakedev", "harness.judge", "harness.kube"},
    "harness.backends": {"fakedev", "kubeletapi", "harness.backends", "harness.kube"},
    "harness.platform": {"fakedev", "harness.judge", "harness.platform", "harness.kube"},
    "harness.bench": {"fakedev", "harness.backends", "harness.judge", "harness.platform", "harness.kube", "harness.repro"},
    "harness.kube": set(),
    "harness.repro": {"fakedev", "harness.backends", "harness.judge", "harness.kube", "harness.repro"},
    "harness.conform": {"harness.backends", "harness.judge", "harness.kube", "harness.conform"},
    "e2e": {"harness.testing"},
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, relative imports resolved."""
    mod = module_name(root, path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` may name a submodule: judge the most specific name
            out += [(node.lineno, f"{target}.{a.name}" if target else a.name) for a in node.names]
    return out


def rule_for(mod: str) -> str | None:
    """The most specific row of ALLOWED that covers module `mod`."""
    best = None
    for key in ALLOWED:
        if mod == key or mod.startswith(key + "."):
            best = key if best is None or len(key) > len(best) else best
    return best


def violations(root: Path) -> list[str]:
    out = []
    for pkg in OURS:
        for path in sorted((root / pkg).rglob("*.py")) if (root / pkg).is_dir() else []:
            mod = module_name(root, path)
            rule = rule_for(mod)
            if rule is None:  # tests/: anything goes
                continue
            for line, target in imports(root, path):
                if target.split(".")[0] not in OURS:
                    continue
                allowed = ALLOWED[rule] | {rule}
                if not any(target == a or target.startswith(a + ".") for a in allowed):
                    out.append(f"{path.relative_to(root)}:{line}: {mod} imports {target} "
                               f"({rule} may import only {', '.join(sorted(ALLOWED[rule])) or 'nothing of ours'})")
    return out


def test_the_repository_follows_the_table():
    assert violations(ROOT) == []


@pytest.mark.parametrize("where,line,culprit", [
    ("refdriver/sneaky.py", "from fakedev.read import parse_neuron_ls", "refdriver.sneaky imports fakedev.read"),
    ("harness/backends/sneaky.py", "from refdriver import plugin", "harness.backends.sneaky imports refdriver.plugin"),
    ("harness/judge/sneaky.py", "from ..backends import handle", "harness.judge.sneaky imports harness.backends.handle"),
    ("e2e/test_sneaky.py", "import fakedev", "e2e.test_sneaky imports fakedev"),
    ("fakedev/sneaky.py", "from harness import kube", "fakedev.sneaky imports harness.kube"),
])
def test_a_deliberate_bad_import_is_caught(tmp_path, where, line, culprit):
    for pkg in OURS:
        if (ROOT / pkg).is_dir():
            shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "gen"))
    (tmp_path / where).write_text(line + "\n")
    found = violations(tmp_path)
    assert len(found) == 1 and culprit in found[0], found
