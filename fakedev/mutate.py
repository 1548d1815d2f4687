"""Change a rendered tree at runtime: hotplug, unbind, NUMA loss, dropped or corrupted
attributes, duplicate routing ids, another instance type.

Every mutation edits the saved state (or, for hotplug of a new device, the model), renders the
plan again, and applies only the difference *in place*: a process that bind-mounted the tree
(`fakedev run`) keeps the same directories and sees the change. A device directory appears or
disappears with a single rename, so a reader never sees half a device.
"""

from __future__ import annotations

import functools
import errno
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import spec as specmod
from . import tree as treemod
from .health import ECC_COUNTERS
from .layout import Layout
from .model import EfaDevice, EnaDevice, NeuronDevice, Topology
from .plan import Group, Plan
from .render import build_plan
from .writer import TreeWriter
from .state import TreeState


STAGING, TRASH = ".fakedev-staging", ".fakedev-trash"  # per operation, under the tree's lock


INSTANCE_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")


class MutationError(Exception):
    """A mutation that cannot apply; str() is the user-facing line."""


@dataclass
class Flat:
    files: dict[str, tuple[bytes, int]]
    links: dict[str, str]
    nodes: dict[str, tuple[int, int]]
    dirs: set[str]


def _flatten(plan: Plan) -> Flat:
    f = Flat({}, {}, {}, set())
    for g in plan.groups.values():
        f.files.update(g.files)
        f.links.update(g.links)
        f.nodes.update(g.nodes)
        f.dirs |= g.dirs
    return f


def _under(path: str, d: str) -> bool:
    return path.startswith(d + "/")


def apply_diff(root: Path, old: Plan, new: Plan, devnodes: str, extra: dict[Path, bytes] | None = None) -> None:
    """Turn the tree rendered from `old` into the tree of `new`, touching only what differs.

    All or nothing under a full filesystem: everything that needs space (new device
    directories, changed files and links, device nodes, and `extra` files such as the saved
    model) is written aside first. Only then does the tree change, by unlinks and renames, which
    need no space. A write that fails removes what was written aside and leaves the tree as it
    was, so no device appears in the tree that the model does not know (reliability probe 2, #93)."""
    a, b = _flatten(old), _flatten(new)
    gone_dirs = _topmost(a.dirs - b.dirs)
    new_dirs = _topmost(b.dirs - a.dirs)
    in_new = lambda p: any(_under(p, d) for d in new_dirs)  # noqa: E731
    staging = root / STAGING
    staged: list[tuple[Path, Path]] = []  # (written aside, where it goes)
    try:
        for d in new_dirs:
            stage = staging / uuid.uuid4().hex
            stage.mkdir(parents=True)
            TreeWriter(str(stage), devnodes).write(Group(
                files={p[len(d) + 1:]: v for p, v in b.files.items() if _under(p, d)},
                links={p[len(d) + 1:]: v for p, v in b.links.items() if _under(p, d)},
                dirs={x[len(d) + 1:] for x in b.dirs if _under(x, d)},
            ))
            staged.append((stage, root / d))
        for path, (data, mode) in b.files.items():
            if a.files.get(path) != (data, mode) and not in_new(path):
                staged.append((_aside_file(root / path, data, mode), root / path))
        for path, target in b.links.items():
            if a.links.get(path) != target and not in_new(path):
                full = root / path
                full.parent.mkdir(parents=True, exist_ok=True)
                tmp = full.with_name(f".{full.name}.fakedev-tmp")
                _unlink(tmp)
                os.symlink(target, tmp)
                staged.append((tmp, full))
        nodes = {p: v for p, v in b.nodes.items() if a.nodes.get(p) != v}
        if nodes:
            stage = staging / uuid.uuid4().hex
            stage.mkdir(parents=True)
            TreeWriter(str(stage), devnodes).write(Group(nodes=nodes))
            staged += [(stage / p, root / p) for p in nodes]
        for path, data in (extra or {}).items():
            staged.append((_aside_file(path, data, 0o644), path))
    except OSError:
        for tmp, _ in staged:
            if not tmp.is_relative_to(staging):
                _unlink(tmp)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # 1. Links that go away or change target first, so nothing points into a vanishing device.
    for path, target in a.links.items():
        if b.links.get(path) != target and not any(_under(path, d) for d in gone_dirs):
            _unlink(root / path)
    for path in a.nodes.keys() - b.nodes.keys():
        _unlink(root / path)
    # 2. Whole device directories disappear with one rename, then are deleted.
    trash = root / TRASH
    for d in gone_dirs:
        if (root / d).exists():
            trash.mkdir(exist_ok=True)
            os.rename(root / d, trash / uuid.uuid4().hex)
    shutil.rmtree(trash, ignore_errors=True)
    for path in a.files.keys() - b.files.keys():
        if not any(_under(path, d) for d in gone_dirs):
            _unlink(root / path)
    # 3. What was written aside goes into place: whole new directories with one rename each,
    # files, links and device nodes replaced one by one (atomic per path).
    for tmp, dest in staged:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    shutil.rmtree(staging, ignore_errors=True)


def _aside_file(path: Path, data: bytes, mode: int) -> Path:
    """`data` written beside `path` under a hidden name, for os.replace later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.fakedev-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    return tmp


def _topmost(dirs: set[str]) -> list[str]:
    out: list[str] = []
    for d in sorted(dirs):
        if not any(_under(d, o) for o in out):
            out.append(d)
    return out


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------------------------
# The mutations. Each takes the tree root and returns a one-line description of what changed.


def _serialised(method: Callable[..., str]) -> Callable[..., str]:
    """One mutation of a tree at a time, across processes (CLI and API alike): take the tree's
    lock, re-read its state (another process may have changed it since this handle was made),
    clear what an interrupted mutation left, then mutate."""

    @functools.wraps(method)
    def locked(self: "Tree", *args: object) -> str:
        with treemod.tree_lock(self.root):
            self.topo, self.state = treemod.load(self.root)
            for leftover in (STAGING, TRASH):
                shutil.rmtree(self.root / leftover, ignore_errors=True)
            return method(self, *args)

    return locked


class Tree:
    """A handle on a rendered tree for a sequence of mutations (the Python API). Mutations of
    one tree are serialised with a file lock, so concurrent mutators never lose an update."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.topo, self.state = treemod.load(self.root)

    # -- device lookup --------------------------------------------------------------------------
    def resolve(self, name: str) -> NeuronDevice | EfaDevice | EnaDevice:
        """neuronN, a PCI address, or an rdma device name (rdmap16s26)."""
        for dev in self.topo.functions():
            if name in (dev.id, dev.bdf) or (isinstance(dev, EfaDevice) and name == dev.rdma):
                return dev
        known = ", ".join(d.id for d in self.topo.functions())
        raise MutationError(f"no device {name!r} in this tree (devices: {known})")

    def _commit(self, new_topo: Topology, new_state: TreeState, what: str) -> str:
        old_plan = build_plan(self.topo, self.state)
        new_plan = build_plan(new_topo, new_state)
        new_state.history.append(what)
        try:  # the saved model goes in with the tree's change, or neither does
            apply_diff(self.root, old_plan, new_plan, treemod.devnode_kind_of(self.root),
                       treemod.meta_files(self.root, new_topo, new_state))
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                files = sum(len(g.files) + len(g.links) + len(g.nodes) for g in new_plan.groups.values())
                raise MutationError(treemod.out_of_room(self.root, f"applying {what!r}", files)
                                    .replace("this tree needs", "the whole tree needs")) from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise MutationError(f"{self.root}: cannot apply {what!r}: {e.strerror}") from None
            raise
        self.topo, self.state = new_topo, new_state
        return what

    def _state(self) -> TreeState:
        return TreeState.from_json(self.state.to_json())

    # -- hotplug ---------------------------------------------------------------------------------
    @_serialised
    def remove(self, name: str) -> str:
        dev = self.resolve(name)
        st = self._state()
        if dev.id in st.removed:
            raise MutationError(f"{dev.id} is already removed")
        st.removed.append(dev.id)
        return self._commit(self.topo, st, f"remove {dev.id}")

    @_serialised
    def add(self, name: str) -> str:
        """Plug a previously removed device back in."""
        dev = self.resolve(name)
        st = self._state()
        if dev.id not in st.removed:
            raise MutationError(f"{dev.id} is present; `add` re-plugs a removed device "
                                "(use add_new / --neuron/--efa to add a device the model lacks)")
        st.removed.remove(dev.id)
        return self._commit(self.topo, st, f"add {dev.id}")

    @_serialised
    def add_new(self, kind: str, entry: dict) -> str:
        """Hotplug a device the model does not have yet (validated like a spec entry)."""
        section = {"neuron": "neuron_devices", "efa": "efa_devices", "ena": "ena_devices"}.get(kind)
        if not section:
            raise MutationError(f"cannot add a device of kind {kind!r} (neuron, efa or ena)")
        data = specmod.dump(self.topo)
        data.setdefault(section, []).append(entry)
        try:
            topo = specmod.load_data(data, f"new {kind} device")
        except specmod.SpecError as e:
            raise MutationError(str(e)) from None
        added = [d for d in topo.functions() if d.id not in {x.id for x in self.topo.functions()}]
        return self._commit(topo, self._state(), f"add new {kind} {added[0].id}")

    # -- faults ------------------------------------------------------------------------------------
    @_serialised
    def set_numa_none(self, name: str) -> str:
        dev = self.resolve(name)
        st = self._state()
        if dev.id not in st.numa_none:
            st.numa_none.append(dev.id)
        return self._commit(self.topo, st, f"numa_node=-1 {dev.id}")

    @_serialised
    def unbind(self, name: str) -> str:
        dev = self.resolve(name)
        st = self._state()
        if not st.bound(dev.id):
            raise MutationError(f"{dev.id} is not bound to a driver")
        st.unbound.append(dev.id)
        return self._commit(self.topo, st, f"unbind {dev.id}")

    @_serialised
    def bind(self, name: str) -> str:
        dev = self.resolve(name)
        st = self._state()
        if dev.id not in st.unbound:
            raise MutationError(f"{dev.id} was not unbound")
        st.unbound.remove(dev.id)
        return self._commit(self.topo, st, f"bind {dev.id}")

    @_serialised
    def duplicate_routing_id(self, name: str) -> str:
        """neuron.ko refuses a device whose routing id repeats: its PCI function stays, unbound,
        with no neuronN class device and no /dev node (NE §1.3)."""
        dev = self.resolve(name)
        if not isinstance(dev, NeuronDevice):
            raise MutationError("only Neuron devices have routing ids")
        st = self._state()
        if dev.id not in st.dup_routing:
            st.dup_routing.append(dev.id)
        return self._commit(self.topo, st, f"duplicate routing id {dev.id}")

    @_serialised
    def attr(self, name: str, attr: str, action: str, value: str = "") -> str:
        if action not in ("drop", "corrupt"):
            raise MutationError(f"unknown attribute action {action[:20]!r} (drop or corrupt)")
        """Drop or corrupt one attribute file. `attr` is relative to the device's class
        directory (Neuron: neuronN/..., EFA: the ib device), or to its PCI function with `pci/`."""
        dev = self.resolve(name)
        lay = Layout(self.topo)
        if attr.startswith("pci/"):
            base, rest = lay.pci_paths[dev.bdf], attr[4:]
        elif isinstance(dev, NeuronDevice):
            base, rest = lay.neuron_class_dir(dev), attr
        elif isinstance(dev, EfaDevice):
            base, rest = lay.ib_dir(dev), attr
        else:
            base, rest = lay.pci_paths[dev.bdf], attr
        path = f"{base}/{rest}"
        plan = build_plan(self.topo, self.state)
        if path not in plan.groups.get(dev.id, plan.groups["node"]).files:
            raise MutationError(f"{dev.id} has no attribute file {attr!r} ({path})")
        st = self._state()
        st.attrs = [f for f in st.attrs if f["path"] != path]
        st.attrs.append({"device": dev.id, "attr": attr, "path": path, "action": action, "value": value})
        return self._commit(self.topo, st, f"{action} {dev.id}:{attr}")

    @_serialised
    def ecc(self, name: str, memory: str = "mem", count: int | str = 1) -> str:
        """Count ECC errors on a Neuron device as neuron.ko does, in its
        stats/hardware/{sram,mem}_ecc_uncorrected and mem_ecc_repairable_uncorrected counters
        (NE §1.4). `memory`: sram or mem (uncorrected: the device is failed) or repairable
        (HBM errors a reset repairs: degraded)."""
        dev = self.resolve(name)
        if not isinstance(dev, NeuronDevice):
            raise MutationError(f"{dev.id} is not a Neuron device: only Neuron devices count ECC errors")
        counter = ECC_COUNTERS.get(memory)
        if counter is None:
            raise MutationError(f"unknown ECC memory {str(memory)[:20]!r} (sram, mem or repairable)")
        return self._count(dev.id, counter, count)

    @_serialised
    def efa_fail(self, name: str, count: int | str = 1) -> str:
        """An EFA stops answering: its admin commands time out, which the efa driver counts in
        hw_counters/no_completion_cmds. The port stays "4: ACTIVE": efa_query_port hard-codes
        IB_PORT_ACTIVE (linux drivers/infiniband/hw/efa/efa_verbs.c), so a fault never shows there."""
        dev = self.resolve(name)
        if not isinstance(dev, EfaDevice):
            raise MutationError(f"{dev.id} is not an EFA")
        return self._count(dev.id, "no_completion_cmds", count)

    @_serialised
    def heal(self, name: str) -> str:
        """Clear a device's error counters (what a device reset or a driver reload does)."""
        dev = self.resolve(name)
        st = self._state()
        if dev.id not in st.counters:
            raise MutationError(f"{dev.id} has no errors counted")
        del st.counters[dev.id]
        return self._commit(self.topo, st, f"heal {dev.id}")

    def _count(self, dev_id: str, counter: str, count: int | str) -> str:
        try:
            n = int(count)
        except (TypeError, ValueError):
            raise MutationError(f"error count must be a whole number, got {str(count)[:20]!r}") from None
        if not 1 <= n <= 2**32 - 1:  # the kernel prints these as %u
            raise MutationError(f"error count must be 1..4294967295, got {n}")
        st = self._state()
        counters = st.counters.setdefault(dev_id, {})
        counters[counter] = min(counters.get(counter, 0) + n, 2**32 - 1)
        return self._commit(self.topo, st, f"{counter}+={n} {dev_id}")

    @_serialised
    def set_instance_type(self, product: str) -> str:
        if not INSTANCE_TYPE_RE.fullmatch(product):
            raise MutationError(f"{product[:70]!r} is not an EC2 instance type (like trn2.48xlarge)")
        st = self._state()
        st.product_name = product
        return self._commit(self.topo, st, f"instance type {product}")

    @_serialised
    def reset(self) -> str:
        """Undo every mutation of the state (hotplugged new devices stay in the model)."""
        return self._commit(self.topo, TreeState(), "reset")

