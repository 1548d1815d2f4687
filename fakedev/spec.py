"""Load and validate topology specs (YAML) into the model.

A spec is either a full topology or `preset: NAME` plus overrides. Unknown keys are errors, and
every error is a SpecError naming the field path, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any


from . import presets, safeyaml
from .consistency import check, resolve_defaults
from .fields import SpecError, short, join as _join, opt as _opt, read_bdf as _bdf, read_bus as _bus, read_hex16 as _hex16
from .fields import read_int as _int, read_list as _list, read_map as _map, read_root_name as _root_name, read_str as _str
from .model import (
    GENERATIONS,
    EfaDevice,
    EnaDevice,
    NeuronDevice,
    NumaNode,
    Root,
    Switch,
    Topology,
    UltraServer,
    default_torus,
    driver_connected_devices,
    parse_cpulist,
    stable_hex,
)


# Lists merged by key when a spec overrides a preset: key field per list.
LIST_KEYS = {
    "numa_nodes": "id",
    "pci_roots": "name",
    "pcie_switches": "name",
    "neuron_devices": "index",
    "efa_devices": "bdf",
    "ena_devices": "bdf",
}
TOP_KEYS = {
    "preset", "instance_type", "neuron_generation", "neuron_driver_version", "seed", "cpu",
    "memory_gib", "numa_nodes", "pci_roots", "pcie_switches", "neuron_devices", "efa_devices",
    "ena_devices", "ultraserver", "devfs",
}
# ib_sysfs rate_show: "%d%s Gb/sec (%dX %s)"; the refdriver shares an EFA's bandwidth by it
RATE_RE = re.compile(r"^[0-9]{1,4}(\.[0-9])? Gb/sec( \([ -(*-~]{1,32}\))?\Z")
GUID_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}:[0-9a-f]{4}:[0-9a-f]{4}\Z")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}\Z")
# Documented limits (README, "Limits"): far above any EC2 instance, low enough that a hostile
# spec costs little. Neuron indices are 0..63 as well.
MAX_NEURON, MAX_EFA, MAX_ENA, MAX_UVERBS = 64, 64, 16, 255
VERSION_RE = re.compile(r"^[0-9A-Za-z.+_-]{1,64}\Z")


# ---------------------------------------------------------------------------------------------
# Merge a spec onto a preset.


def merge(base: dict, over: dict, path: str = "") -> dict:
    """Overlay `over` on `base`: mappings merge, keyed lists merge by key (`remove: true`
    deletes an entry), anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        p = _join(path, k)
        if k in LIST_KEYS and isinstance(v, list) and isinstance(out.get(k), list):
            out[k] = _merge_list(out[k], v, LIST_KEYS[k], p)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, p)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_list(base: list, over: list, key: str, path: str) -> list:
    out = [copy.deepcopy(b) for b in base]
    for i, item in enumerate(over):
        p = _join(path, i)
        if not isinstance(item, dict) or key not in item:
            raise SpecError(p, f"an override entry must be a mapping with '{key}'")
        match = [j for j, b in enumerate(out) if isinstance(b, dict) and b.get(key) == item[key]]
        remove = item.get("remove", False)
        if not isinstance(remove, bool):
            raise SpecError(_join(p, "remove"), f"expected true or false, got {short(remove)}")
        if remove:
            if not match:
                raise SpecError(p, f"cannot remove {key}={short(item[key])}: no such entry in the preset")
            del out[match[0]]
        elif match:
            out[match[0]] = {**out[match[0]], **{k: v for k, v in item.items() if k != "remove"}}
        else:
            out.append({k: v for k, v in item.items() if k != "remove"})
    return out


# ---------------------------------------------------------------------------------------------
# Public entry points.


def load_file(path: str | Path) -> Topology:
    """Load a spec file; the error source is the file name."""
    try:
        data = safeyaml.load_file(path)
    except safeyaml.YamlLimitError as e:
        raise SpecError(e.where, e.problem, e.source) from None
    return load_data(data, str(path))


def load_text(text: str | bytes, source: str = "spec") -> Topology:
    """Parse (bounded: size, aliases, depth; see safeyaml) and validate a spec."""
    try:
        data = safeyaml.loads(text, source)
    except safeyaml.YamlLimitError as e:
        raise SpecError(e.where, e.problem, source) from None
    return load_data(data, source)


def load_preset(name: str) -> Topology:
    return load_data({"preset": name}, f"preset {name}")


def load_data(data: Any, source: str = "spec") -> Topology:
    """Validate already-parsed YAML data (a mapping) and build the topology."""
    try:
        data = _map(data, "", TOP_KEYS)
        for key, limit in (("neuron_devices", MAX_NEURON), ("efa_devices", MAX_EFA), ("ena_devices", MAX_ENA)):
            _counted(data, key, limit)  # before merging or reading any entry
        if "preset" in data:
            name = _str(data["preset"], "preset")
            if name not in presets.names():
                raise SpecError("preset", f"unknown preset {short(name)} (known: {', '.join(presets.names())})")
            over = {k: v for k, v in data.items() if k != "preset"}
            data = merge(presets.raw(name), over)
        return _build(data)
    except SpecError as e:
        raise SpecError(e.path, e.problem, source) from None
    except RecursionError:
        raise SpecError("<top>", "structure nested too deeply", source) from None


def _build(d: dict) -> Topology:
    _map(d, "", TOP_KEYS - {"preset"}, {"instance_type", "cpu", "pci_roots"})
    instance = _str(d["instance_type"], "instance_type", re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}\Z"),
                    "an EC2 instance type like trn2.48xlarge")
    generation = _opt(d, "neuron_generation", "", _str)
    if generation is not None and generation not in GENERATIONS:
        raise SpecError("neuron_generation", f"unknown generation {short(generation)} (known: {', '.join(GENERATIONS)})")
    version = _opt(d, "neuron_driver_version", "",
                   lambda o, p: _str(o, p, VERSION_RE, "a version string"), "2.24.7.0")
    seed = _opt(d, "seed", "", _str, instance)

    cpu = _map(d["cpu"], "cpu", {"sockets", "cores_per_socket", "threads_per_core"}, {"sockets", "cores_per_socket"})
    sockets = _int(cpu["sockets"], "cpu.sockets", 1, 16)
    cores = _int(cpu["cores_per_socket"], "cpu.cores_per_socket", 1, 512)
    threads = _opt(cpu, "threads_per_core", "cpu", lambda o, p: _int(o, "cpu.threads_per_core", 1, 8), 2)
    nr_cpus = sockets * cores * threads
    if nr_cpus > 4096:
        raise SpecError("cpu", f"{nr_cpus} CPUs is more than the 4096 supported")
    memory = _opt(d, "memory_gib", "", lambda o, p: _int(o, p, 1, 1 << 20), 64)

    numa = _numa_nodes(d, sockets, cores, threads, memory)
    numa_ids = {n.id for n in numa}
    roots = _roots(d, numa_ids)
    switches = _switches(d, roots)
    neuron = _neuron(d, generation, seed, numa_ids)
    efa = _efa(d, seed, numa_ids)
    ena = [_ena(e, _join("ena_devices", i), numa_ids, i) for i, e in enumerate(_counted(d, "ena_devices", MAX_ENA))]
    ultra = _ultraserver(d, seed)
    devfs = _map(d.get("devfs") or {}, "devfs", {"neuron_major", "uverbs_major"})
    majors = {
        "neuron": _opt(devfs, "neuron_major", "devfs", lambda o, p: _int(o, p, 1, 511), 240),
        "uverbs": _opt(devfs, "uverbs_major", "devfs", lambda o, p: _int(o, p, 1, 511), 231),
    }
    topo = resolve_defaults(Topology(instance, generation, version, sockets, cores, threads, numa, roots, switches,
                                     neuron, efa, ena, ultra, majors))
    check(topo)
    return topo


def _numa_nodes(d: dict, sockets: int, cores: int, threads: int, memory: int) -> list[NumaNode]:
    nr = sockets * cores * threads
    raw = d.get("numa_nodes")
    if raw is None:  # one NUMA node per socket, every thread of the socket's cores
        per_thread = sockets * cores
        nodes = []
        for s in range(sockets):
            cpus = [t * per_thread + s * cores + c for t in range(threads) for c in range(cores)]
            dist = [10 if o == s else 20 for o in range(sockets)]
            nodes.append(NumaNode(s, sorted(cpus), dist, max(1, memory // sockets)))
        return nodes
    nodes = []
    items = _list(raw, "numa_nodes")
    if not items:
        raise SpecError("numa_nodes", "at least one NUMA node is required")
    for i, n in enumerate(items):
        p = _join("numa_nodes", i)
        _map(n, p, {"id", "cpus", "distances", "memory_gib"}, {"id", "cpus"})
        nid = _int(n["id"], _join(p, "id"), 0, 63)
        try:
            cpus = parse_cpulist(_str(n["cpus"], _join(p, "cpus")) if not isinstance(n["cpus"], int) else str(n["cpus"]))
        except ValueError as e:
            raise SpecError(_join(p, "cpus"), f"not a cpulist like 0-31,64-95: {e}") from None
        for c in cpus:
            if c >= nr:
                raise SpecError(_join(p, "cpus"), f"CPU {c} does not exist ({nr} CPUs from the cpu section)")
        dist = _opt(n, "distances", p, lambda o, q: [_int(x, _join(q, j), 10, 255) for j, x in enumerate(_list(o, q))])
        mem = _opt(n, "memory_gib", p, lambda o, q: _int(o, q, 0, 1 << 20), max(1, memory // len(items)))
        nodes.append(NumaNode(nid, cpus, dist or [], mem))
    ids = [n.id for n in nodes]
    if len(set(ids)) != len(ids):
        raise SpecError("numa_nodes", f"duplicate NUMA node ids {sorted(ids)}")
    seen: dict[int, int] = {}
    for i, n in enumerate(nodes):
        for c in n.cpus:
            if c in seen:
                raise SpecError(_join(_join("numa_nodes", i), "cpus"), f"CPU {c} is already in NUMA node {seen[c]}")
            seen[c] = n.id
        if not n.distances:
            n.distances = [10 if o.id == n.id else 20 for o in nodes]
        if len(n.distances) != len(nodes):
            raise SpecError(_join(_join("numa_nodes", i), "distances"), f"needs {len(nodes)} entries, one per NUMA node")
        if n.distances[ids.index(n.id)] != 10:
            raise SpecError(_join(_join("numa_nodes", i), "distances"), "the distance to itself must be 10")
    return nodes


def _numa_ref(obj: Any, path: str, numa_ids: set[int]) -> int:
    v = _int(obj, path, -1, 63)
    if v != -1 and v not in numa_ids:
        raise SpecError(path, f"NUMA node {v} does not exist (nodes: {sorted(numa_ids)})")
    return v


def _roots(d: dict, numa_ids: set[int]) -> list[Root]:
    roots = []
    items = _list(d["pci_roots"], "pci_roots")
    for i, r in enumerate(items):
        p = _join("pci_roots", i)
        _map(r, p, {"name", "numa_node"}, {"name", "numa_node"})
        roots.append(Root(_root_name(r["name"], _join(p, "name")), _numa_ref(r["numa_node"], _join(p, "numa_node"), numa_ids)))
    names = [r.name for r in roots]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise SpecError(_join(_join("pci_roots", i), "name"), f"duplicate root complex {n}")
    return roots


def _switches(d: dict, roots: list[Root]) -> list[Switch]:
    out = []
    root_names = {r.name for r in roots}
    for i, s in enumerate(_list(d.get("pcie_switches") or [], "pcie_switches")):
        p = _join("pcie_switches", i)
        _map(s, p, {"name", "root", "upstream_bus", "downstream_bus"}, {"name", "root"})
        name = _str(s["name"], _join(p, "name"), NAME_RE, "a switch name like sw0")
        if name in root_names or name in {o.name for o in out}:
            raise SpecError(_join(p, "name"), f"duplicate name {name}")
        root = _root_name(s["root"], _join(p, "root"))
        if root not in root_names:
            raise SpecError(_join(p, "root"), f"root complex {root} is not in pci_roots")
        up = _opt(s, "upstream_bus", p, lambda o, q: _bus(o, _join(p, "upstream_bus")), -1)
        down = _opt(s, "downstream_bus", p, lambda o, q: _bus(o, _join(p, "downstream_bus")), -1)
        out.append(Switch(name, root, up, down))
    return out


def _counted(d: dict, key: str, limit: int) -> list:
    """A device list, refused before any entry is read when it is longer than a node can be."""
    items = _list(d.get(key) or [], key)
    if len(items) > limit:
        raise SpecError(key, f"{len(items)} entries; a node has at most {limit} (documented limit)")
    return items


def _neuron(d: dict, generation: str | None, seed: str, numa_ids: set[int]) -> list[NeuronDevice]:
    items = _counted(d, "neuron_devices", MAX_NEURON)
    if items and generation is None:
        raise SpecError("neuron_generation", f"required when neuron_devices are given (one of {', '.join(GENERATIONS)})")
    allowed = {"index", "bdf", "parent", "torus", "connected", "efa", "serial", "numa_node"}
    raw = []
    for i, n in enumerate(items):
        p = _join("neuron_devices", i)
        _map(n, p, allowed, {"index", "bdf", "parent"})
        raw.append((p, n, _int(n["index"], _join(p, "index"), 0, 63)))
    total = len(raw)
    out = []
    for p, n, idx in raw:
        torus = _opt(n, "torus", p, lambda o, q: _torus(o, _join(p, "torus")), "default")
        connected = _opt(n, "connected", p, lambda o, q: [_int(x, _join(_join(p, "connected"), j), 0, 63)
                                                          for j, x in enumerate(_list(o, _join(p, "connected")))])
        out.append(NeuronDevice(
            index=idx,
            bdf=_bdf(n["bdf"], _join(p, "bdf")),
            parent=_str(n["parent"], _join(p, "parent")),
            torus=default_torus(generation, idx, total) if torus == "default" else torus,
            connected=driver_connected_devices(generation, idx, total) if connected is None else connected,
            efa=_opt(n, "efa", p, lambda o, q: _bdf(o, _join(p, "efa"))),
            serial=_opt(n, "serial", p, lambda o, q: _str(o, _join(p, "serial"), re.compile(r"^[0-9a-f]{16}\Z"), "16 hex digits"),
                        stable_hex(seed, "neuron-serial", idx)),
            numa_node=_opt(n, "numa_node", p, lambda o, q: _numa_ref(o, _join(p, "numa_node"), numa_ids)),
        ))
    return out


def _torus(o: Any, p: str) -> tuple[int, int] | None:
    xy = _list(o, p)
    if not xy:
        return None  # explicitly not on a torus
    if len(xy) != 2:
        raise SpecError(p, "expected [x, y], or [] for no torus position")
    return (_int(xy[0], _join(p, 0), 0, 63), _int(xy[1], _join(p, 1), 0, 63))


def _efa(d: dict, seed: str, numa_ids: set[int]) -> list[EfaDevice]:
    items = _counted(d, "efa_devices", MAX_EFA)
    allowed = {"bdf", "parent", "pci_device", "uverbs", "node_guid", "rate", "numa_node"}
    parsed = []
    for i, e in enumerate(items):
        p = _join("efa_devices", i)
        _map(e, p, allowed, {"bdf", "parent"})
        parsed.append((p, e, _bdf(e["bdf"], _join(p, "bdf"))))
    # uverbs numbers in probe (BDF) order, skipping numbers given explicitly
    taken = {e["uverbs"] for _, e, _ in parsed if isinstance(e.get("uverbs"), int) and not isinstance(e["uverbs"], bool)}
    free = (k for k in range(1 << 16) if k not in taken)
    order = {bdf: next(free) for bdf in sorted(b for _, e, b in parsed if e.get("uverbs") is None)}
    for p, _, bdf in parsed:
        if order.get(bdf, 0) > MAX_UVERBS:
            raise SpecError(_join(p, "uverbs"), f"numbering implicitly gives uverbs{order[bdf]}, above the "
                            f"kernel's {MAX_UVERBS} (set uverbs explicitly)")
    out = []
    for p, e, bdf in parsed:
        guid = stable_hex(seed, "efa-guid", bdf)
        out.append(EfaDevice(
            bdf=bdf,
            parent=_str(e["parent"], _join(p, "parent")),
            pci_device=_opt(e, "pci_device", p, lambda o, q: _hex16(o, _join(p, "pci_device")), 0xEFA1),
            uverbs=_opt(e, "uverbs", p, lambda o, q: _int(o, _join(p, "uverbs"), 0, 255), order.get(bdf, 0)),
            node_guid=_opt(e, "node_guid", p, lambda o, q: _str(o, _join(p, "node_guid"), GUID_RE, "a GUID like 0e1f:2a3b:4c5d:6e7f"),
                           ":".join(guid[i:i + 4] for i in range(0, 16, 4))),
            rate=_opt(e, "rate", p, lambda o, q: _str(o, _join(p, "rate"), RATE_RE,
                                                      'ib_sysfs\'s format, like "100 Gb/sec (4X EDR)" (at most 9999 Gb/sec)'),
                      "100 Gb/sec (4X EDR)"),
            numa_node=_opt(e, "numa_node", p, lambda o, q: _numa_ref(o, _join(p, "numa_node"), numa_ids)),
        ))
    return out


IFNAME_RE = re.compile(r"[a-z][a-z0-9]{0,14}")


def _ena(e: Any, p: str, numa_ids: set[int], position: int) -> EnaDevice:
    """An ENA and its network interface: ens5, ens6, ... in order unless named (EC2 Nitro names
    the primary interface ens5)."""
    _map(e, p, {"bdf", "parent", "numa_node", "ifname"}, {"bdf", "parent"})
    return EnaDevice(_bdf(e["bdf"], _join(p, "bdf")), _str(e["parent"], _join(p, "parent")),
                     _opt(e, "numa_node", p, lambda o, q: _numa_ref(o, _join(p, "numa_node"), numa_ids)),
                     _opt(e, "ifname", p, lambda o, q: _str(o, _join(p, "ifname"), IFNAME_RE, "an interface name"),
                          f"ens{5 + position}"))


def _ultraserver(d: dict, seed: str) -> UltraServer | None:
    u = d.get("ultraserver")
    if u is None:
        return None
    _map(u, "ultraserver", {"node_id_4", "server_id", "modes"})
    return UltraServer(
        node_id_4=_opt(u, "node_id_4", "ultraserver", lambda o, p: _int(o, "ultraserver.node_id_4", -1, 3), 0),
        server_id=_opt(u, "server_id", "ultraserver",
                       lambda o, p: _str(o, "ultraserver.server_id", re.compile(r"^[0-9a-f]{16}\Z"), "16 hex digits"),
                       stable_hex(seed, "ultraserver")),
        modes=_opt(u, "modes", "ultraserver",
                   lambda o, p: _str(o, "ultraserver.modes", re.compile(r"^[1-4](,[1-4])*\Z"), "a list like 1,2,3,4"), "1,2,3,4"),
    )


def dump(t: Topology) -> dict:
    """The topology as a fully explicit spec (no preset, no defaults left to derive), so it
    reloads to the same model; used to save a tree's model and by `record`."""
    def opt(d: dict, key: str, value: Any) -> dict:
        if value is not None:
            d[key] = value
        return d

    out: dict[str, Any] = {"instance_type": t.instance_type}
    opt(out, "neuron_generation", t.generation)
    out["neuron_driver_version"] = t.neuron_driver_version
    out["cpu"] = {"sockets": t.sockets, "cores_per_socket": t.cores_per_socket, "threads_per_core": t.threads_per_core}
    out["memory_gib"] = sum(n.memory_gib for n in t.numa_nodes) or 1
    from .model import format_cpulist

    out["numa_nodes"] = [{"id": n.id, "cpus": format_cpulist(n.cpus), "distances": list(n.distances),
                          "memory_gib": n.memory_gib} for n in t.numa_nodes]
    out["pci_roots"] = [{"name": r.name, "numa_node": r.numa_node} for r in t.roots]
    if t.switches:
        out["pcie_switches"] = [{"name": s.name, "root": s.root, "upstream_bus": f"{s.upstream_bus:02x}",
                                 "downstream_bus": f"{s.downstream_bus:02x}"} for s in t.switches]
    if t.neuron:
        out["neuron_devices"] = [opt(opt({"index": n.index, "bdf": n.bdf, "parent": n.parent,
                                          "torus": list(n.torus) if n.torus else [], "connected": list(n.connected),
                                          "serial": n.serial}, "efa", n.efa), "numa_node", n.numa_node)
                                 for n in t.neuron]
    if t.efa:
        out["efa_devices"] = [opt({"bdf": e.bdf, "parent": e.parent, "pci_device": f"{e.pci_device:04x}",
                                   "uverbs": e.uverbs, "node_guid": e.node_guid, "rate": e.rate}, "numa_node", e.numa_node)
                              for e in t.efa]
    if t.ena:
        out["ena_devices"] = [opt({"bdf": e.bdf, "parent": e.parent, "ifname": e.ifname}, "numa_node", e.numa_node)
                              for e in t.ena]
    if t.ultraserver:
        u = t.ultraserver
        out["ultraserver"] = {"node_id_4": u.node_id_4, "server_id": u.server_id, "modes": u.modes}
    out["devfs"] = {"neuron_major": t.devfs_majors["neuron"], "uverbs_major": t.devfs_majors["uverbs"]}
    return out
