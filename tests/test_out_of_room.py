"""A state root (a tmpfs) that is full or out of inodes: rendering a tree fails with one line
naming what ran out and what a tree needs, and leaves nothing half-written behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import fakedev
from fakedev.tree import TreeError

from .conftest import cli, needs_root


@pytest.fixture
def small_tmpfs(tmp_path):
    def make(**opts) -> Path:
        mnt = tmp_path / "mnt"
        mnt.mkdir(exist_ok=True)
        o = ",".join(f"{k}={v}" for k, v in opts.items())
        subprocess.run(["mount", "-t", "tmpfs", "-o", o, "dra-harness-test", str(mnt)], check=True)
        return mnt

    yield make
    if (tmp_path / "mnt").is_mount():
        subprocess.run(["umount", str(tmp_path / "mnt")], check=True)


@needs_root
@pytest.mark.parametrize("opts,ran_out", [({"size": "256k"}, "space"), ({"nr_inodes": "300"}, "inodes")])
def test_a_full_tmpfs_gives_one_line_and_no_half_tree(small_tmpfs, opts, ran_out):
    mnt = small_tmpfs(**opts)
    with pytest.raises(TreeError) as e:
        fakedev.generate(fakedev.load_preset("trn1.32xlarge"), mnt / "node")
    msg = str(e.value)
    assert "\n" not in msg and f"ran out of {ran_out}" in msg and "inodes" in msg and "MiB" in msg, msg
    assert list(mnt.iterdir()) == [], "a half-written tree was left"
    r = cli("fakedev", "generate", "--preset", "trn1.32xlarge", "--out", str(mnt / "node"))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "out of room" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def _paths(root: Path) -> set[str]:
    return {str(Path(d, f).relative_to(root)) for d, dirs, files in os.walk(root) for f in dirs + files}


ADD = '{index: 16, bdf: "0000:10:10.0", parent: "pci0000:10"}'


@needs_root
def test_a_mutation_out_of_inodes_changes_nothing_and_can_be_retried(small_tmpfs):
    """The probe's data loss (#93): add-neuron on a nearly full tmpfs left a phantom device that
    no retry and no reset removed. Now nothing changes, the error is one line, and a retry after
    room is made succeeds."""
    mnt = small_tmpfs(size="64m", nr_inodes="40000")
    tree = mnt / "T"
    fakedev.generate(fakedev.load_preset("trn1.32xlarge"), tree)
    before, paths = fakedev.truth_of(tree).to_dict(), _paths(tree)
    st = os.statvfs(mnt)
    subprocess.run(["mount", "-o", f"remount,nr_inodes={st.f_files - st.f_ffree + 30}", str(mnt)], check=True)
    r = cli("fakedev", "mutate", str(tree), "add-neuron", ADD)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "out of room" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "ran out of inodes" in r.stderr, r.stderr
    assert fakedev.truth_of(tree).to_dict() == before
    assert _paths(tree) == paths, f"left in the tree: {sorted(_paths(tree) ^ paths)[:5]}"
    subprocess.run(["mount", "-o", "remount,nr_inodes=40000", str(mnt)], check=True)
    r = cli("fakedev", "mutate", str(tree), "add-neuron", ADD)
    assert r.returncode == 0, r.stderr
    assert len(fakedev.truth_of(tree).of_kind("neuron")) == 17
