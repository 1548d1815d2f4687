"""Render a topology into a sysfs + devfs tree laid out as the kernel drivers lay it out.

Rendering builds a *plan* of entries grouped by owner (one group per device plus "node" for
machine-wide files). The plan is written in one pass into a staging directory which is then
renamed into place, so a reader never sees half a tree; mutations reuse the same per-device
groups to add or remove exactly one device. File formats cite ../shared/research/neuron-efa.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .layout import CDM_MAP, NEURON_LS, RDMA_CM, Layout
from .model import (
    AMAZON_VENDOR,
    EfaDevice,
    EnaDevice,
    NeuronDevice,
    Topology,
    ena_mac,
    format_cpulist,
    format_cpumask,
    parse_bdf,
)
from .plan import NODE, Plan
from .state import TreeState
from .pci import (
    CLASS_BRIDGE,
    CLASS_ETHERNET,
    CLASS_NEURON,
    PORT_DOWNSTREAM,
    PORT_ROOT,
    PORT_UPSTREAM,
    SPEEDS,
    Bar,
    PciIdentity,
    config_space,
    resource_file,
)


# Counter names of neuron.ko (NE §1.4).
CORE_STATUS = (
    "success failure timeout exec_bad_input hw_error execute_completed_with_error "
    "execute_completed_with_num_error generic_error resource_error resource_nc_error "
    "execute_failed_to_queue invalid_error unsupported_neff_version oob_error hw_collectives_error "
    "hw_hbm_ue_error hw_nc_ue_error hw_dma_abort_error execute_sw_nq_overflow execute_sw_semaphore_error "
    "execute_sw_event_error execute_sw_psum_collision execute_sw_sequencer_fatal hw_repairable_hbm_ue_error"
).split()
HOST_MEM = "application_memory constants dma_buffers dma_rings driver_memory notifications tensors uncategorized".split()
DEVICE_MEM = ("model_code tensors constants model_shared_scratchpad runtime_memory driver_memory collectives "
              "nonshared_scratchpad notifications dma_rings uncategorized").split()
OTHER_INFO = "model_load_count reset_req_count reset_fail_count inference_count flop_count nc_time_in_use".split()
HW_STATS = "sram_ecc_uncorrected mem_ecc_uncorrected mem_ecc_repairable_uncorrected".split()
# EFA hw counters (NE §2.3, efa_verbs.c EFA_DEFINE_{DEVICE,PORT}_STATS).
EFA_DEVICE_STATS = ("submitted_cmds completed_cmds cmds_err no_completion_cmds keep_alive_rcvd alloc_pd_err "
                    "create_qp_err create_cq_err reg_mr_err alloc_ucontext_err create_ah_err mmap_err").split()
EFA_PORT_STATS = ("tx_bytes tx_pkts rx_bytes rx_pkts rx_drops send_bytes send_wrs recv_bytes recv_wrs "
                  "rdma_read_wrs rdma_read_bytes rdma_read_wr_err rdma_read_resp_bytes").split()
POWER = {"control": "auto\n", "runtime_status": "unsupported\n", "runtime_usage": "0\n",
         "runtime_active_kids": "0\n", "runtime_enabled": "disabled\n", "async": "disabled\n",
         "runtime_active_time": "0\n", "runtime_suspended_time": "0\n"}

DRIVERS = {"neuron": ("neuron-driver", "neuron"), "efa": ("efa", "efa"), "ena": ("ena", "ena"),
           "pcieport": ("pcieport", None)}
MODULE_VERSIONS = {"efa": "2.13.1g\n", "ena": "2.13.0g\n"}  # [INF] amzn-drivers style versions


# ---------------------------------------------------------------------------------------------


def build_plan(t: Topology, state: TreeState | None = None) -> Plan:
    state = state or TreeState()
    lay = Layout(t)
    p = Plan()
    p.group(NODE)
    _dmi(p, t, state)
    _numa_nodes(p, t)
    _cpus(p, t)
    _root_complexes(p, t)
    _classes_and_modules(p, t)
    _bus_skeleton(p, t)
    for b in lay.bridges:
        p.group(NODE)
        ident = PciIdentity(AMAZON_VENDOR, 0x0200 + {"root-port": 0, "upstream": 1, "downstream": 2}[b.role],
                            CLASS_BRIDGE, AMAZON_VENDOR, 0,
                            port_type={"root-port": PORT_ROOT, "upstream": PORT_UPSTREAM, "downstream": PORT_DOWNSTREAM}[b.role])
        root_numa = t.roots_by_name[t.switches_by_name[b.switch].root].numa_node
        _pci_function(p, t, PciFunction(b.bdf, lay.pci_paths[b.bdf], ident, [], root_numa if root_numa >= 0 else None,
                                        "pcieport", b.buses))
    for n in t.neuron:
        if n.id not in state.removed:
            p.group(n.id)
            _neuron(p, t, lay, n, state)
    for e in t.efa:
        if e.id not in state.removed:
            p.group(e.id)
            _efa(p, t, lay, e, state)
    for e in t.ena:
        if e.id not in state.removed:
            p.group(e.id)
            _ena(p, t, lay, e, state)
    p.group(NODE)
    _vendor_files(p, t, state)
    _apply_attr_faults(p, state)
    return p


def _dmi(p: Plan, t: Topology, state: TreeState) -> None:
    """DMI identity: what `product_name` says is the instance type (mutable: instance-type)."""
    product = state.product_name or t.instance_type
    dmi = "sys/devices/virtual/dmi/id"
    fields = {"sys_vendor": "Amazon EC2", "product_name": product, "product_version": "", "board_vendor": "Amazon EC2",
              "board_name": "", "bios_vendor": "Amazon EC2", "bios_version": "1.0", "chassis_vendor": "Amazon EC2",
              "chassis_asset_tag": "Amazon EC2", "chassis_type": "1"}
    for k, v in fields.items():
        p.file(f"{dmi}/{k}", v + "\n")
    alias = f"dmi:bvnAmazonEC2:bvr1.0:svnAmazonEC2:pn{product.replace(' ', '')}:pvr:rvnAmazonEC2:rn:cvnAmazonEC2:ct1:cvr:"
    p.file(f"{dmi}/modalias", alias + "\n")
    p.file(f"{dmi}/uevent", f"MODALIAS={alias}\n", 0o644)
    p.link(f"{dmi}/subsystem", "sys/class/dmi")
    p.link("sys/class/dmi/id", dmi)
    _power(p, dmi)


NUMA_DIR = "sys/devices/system/node"
CPU_DIR = "sys/devices/system/cpu"


def _numa_nodes(p: Plan, t: Topology) -> None:
    """NUMA nodes as hwloc reads them: cpumap, distance, meminfo, and cpuN links."""
    nodes = NUMA_DIR
    ids = format_cpulist([n.id for n in t.numa_nodes])
    for k in ("online", "possible", "has_cpu", "has_memory", "has_normal_memory"):
        p.file(f"{nodes}/{k}", ids + "\n")
    p.file(f"{nodes}/uevent", "", 0o644)
    nr = t.nr_cpus
    for n in t.numa_nodes:
        d = f"{nodes}/node{n.id}"
        p.file(f"{d}/cpulist", format_cpulist(n.cpus) + "\n")
        p.file(f"{d}/cpumap", format_cpumask(n.cpus, nr) + "\n")
        p.file(f"{d}/distance", " ".join(map(str, n.distances)) + "\n")
        kb = n.memory_gib * 1024 * 1024
        p.file(f"{d}/meminfo", "".join(f"Node {n.id} {k:<16}{v:>11} kB\n" for k, v in
                                       (("MemTotal:", kb), ("MemFree:", kb), ("MemUsed:", 0))) +
               "".join(f"Node {n.id} {k:<16}{0:>6}\n" for k in ("HugePages_Total:", "HugePages_Free:", "HugePages_Surp:")))
        p.file(f"{d}/numastat", "numa_hit 0\nnuma_miss 0\nnuma_foreign 0\ninterleave_hit 0\nlocal_node 0\nother_node 0\n")
        p.file(f"{d}/uevent", "", 0o644)
        p.link(f"{d}/subsystem", "sys/bus/node")
        for c in n.cpus:
            p.link(f"{d}/cpu{c}", f"{CPU_DIR}/cpu{c}")
        for size in ("2048kB", "1048576kB"):  # per-node hugepage pools (none reserved)
            for k in ("nr_hugepages", "free_hugepages", "surplus_hugepages"):
                p.file(f"{d}/hugepages/hugepages-{size}/{k}", "0\n", 0o644 if k == "nr_hugepages" else 0o444)


def _cpus(p: Plan, t: Topology) -> None:
    """CPUs with their topology files (packages, cores, SMT siblings) and NUMA links."""
    cpus, nr = CPU_DIR, t.nr_cpus
    node_of_cpu = {c: n.id for n in t.numa_nodes for c in n.cpus}
    allc = format_cpulist(list(range(nr))) + "\n"
    for k in ("online", "possible", "present"):
        p.file(f"{cpus}/{k}", allc)
    p.file(f"{cpus}/kernel_max", "8191\n")
    layout = t.cpu_layout()
    siblings: dict[tuple[int, int], list[int]] = {}
    package: dict[int, list[int]] = {}
    for cpu, pkg, core, _ in layout:
        siblings.setdefault((pkg, core), []).append(cpu)
        package.setdefault(pkg, []).append(cpu)
    for cpu, pkg, core, _ in layout:
        d = f"{cpus}/cpu{cpu}"
        topo = f"{d}/topology"
        sib, pk = siblings[(pkg, core)], package[pkg]
        p.file(f"{topo}/physical_package_id", f"{pkg}\n")
        p.file(f"{topo}/core_id", f"{core}\n")
        p.file(f"{topo}/die_id", "0\n")
        p.file(f"{topo}/cluster_id", f"{core}\n")
        for name, members in (("thread_siblings", sib), ("core_cpus", sib), ("core_siblings", pk),
                              ("package_cpus", pk), ("die_cpus", pk), ("cluster_cpus", sib)):
            p.file(f"{topo}/{name}", format_cpumask(members, nr) + "\n")
            p.file(f"{topo}/{name}_list", format_cpulist(members) + "\n")
        if cpu:
            p.file(f"{d}/online", "1\n", 0o644)
        p.file(f"{d}/uevent", "", 0o644)
        p.link(f"{d}/subsystem", "sys/bus/cpu")
        if cpu in node_of_cpu:
            p.link(f"{d}/node{node_of_cpu[cpu]}", f"{NUMA_DIR}/node{node_of_cpu[cpu]}")


def _root_complexes(p: Plan, t: Topology) -> None:
    """Root complexes with their pci_bus class devices (cpulistaffinity is read by CPU drivers)."""
    nr = t.nr_cpus
    for r in t.roots:
        rd = f"sys/devices/{r.name}"
        p.file(f"{rd}/uevent", "", 0o644)
        _power(p, rd)
        bus = f"{r.domain:04x}:{r.bus:02x}"
        bd = f"{rd}/pci_bus/{bus}"
        cpus_of = t.numa_by_id[r.numa_node].cpus if r.numa_node in t.numa_by_id else list(range(nr))
        p.file(f"{bd}/cpuaffinity", format_cpumask(cpus_of, nr) + "\n")
        p.file(f"{bd}/cpulistaffinity", format_cpulist(cpus_of) + "\n")
        p.file(f"{bd}/uevent", "", 0o644)
        p.file(f"{bd}/rescan", "", 0o200)
        p.link(f"{bd}/subsystem", "sys/class/pci_bus")
        p.link(f"{bd}/device", rd)
        p.link(f"sys/class/pci_bus/{bus}", bd)


def _classes_and_modules(p: Plan, t: Topology) -> None:
    """Class attributes and kernel modules of the drivers the machine has, and the loopback
    interface (class/net always has it)."""
    _net_interface(p, "sys/devices/virtual/net/lo", "lo", 1, "00:00:00:00:00:00", mtu=65536, kind=772,
                   operstate="unknown")
    p.file("sys/class/infiniband_verbs/abi_version", "6\n")  # NE §2.3
    # Class attributes of neuron_device (NE §1.5): V2 / non-pod values unless an UltraServer.
    if t.neuron:
        cls = "sys/class/neuron_device"
        u = t.ultraserver
        if u:
            pair = u.node_id_4 // 2 if u.node_id_4 >= 0 else -1
            values = {"node_id_2": pair, "node_id_4": u.node_id_4, "server_id_2": u.server_id,
                      "server_id_4": u.server_id, "ultraserver_mode": u.modes}
        else:
            values = {"node_id_2": -1, "node_id_4": -1, "server_id_2": "0" * 16, "server_id_4": "0" * 16,
                      "ultraserver_mode": ""}
        for k, v in values.items():
            p.file(f"{cls}/{k}", f"{v}\n")
        mod = "sys/module/neuron"
        p.file(f"{mod}/version", t.neuron_driver_version + "\n")
        p.file(f"{mod}/initstate", "live\n")
        p.file(f"{mod}/refcnt", "0\n")
        p.file(f"{mod}/uevent", "", 0o200)
    for key, present in (("efa", t.efa), ("ena", t.ena)):
        if present:
            mod = f"sys/module/{key}"
            p.file(f"{mod}/version", MODULE_VERSIONS[key])
            p.file(f"{mod}/initstate", "live\n")
            p.file(f"{mod}/refcnt", "0\n")
            p.file(f"{mod}/uevent", "", 0o200)
    if t.efa:
        p.devnode("dev/infiniband/rdma_cm", *RDMA_CM)


def _bus_skeleton(p: Plan, t: Topology) -> None:
    bus = "sys/bus/pci"
    p.file(f"{bus}/drivers_autoprobe", "1\n", 0o644)
    p.file(f"{bus}/drivers_probe", "", 0o200)
    p.file(f"{bus}/rescan", "", 0o200)
    p.file(f"{bus}/resource_alignment", "\n", 0o644)
    p.file(f"{bus}/uevent", "", 0o200)
    p.owns_dir(f"{bus}/devices")
    p.owns_dir(f"{bus}/slots")
    wanted = {"pcieport": bool(t.switches), "neuron": bool(t.neuron), "efa": bool(t.efa), "ena": bool(t.ena)}
    for key, on in wanted.items():
        if not on:
            continue
        name, module = DRIVERS[key]
        d = f"{bus}/drivers/{name}"
        for f in ("bind", "unbind", "new_id", "remove_id", "uevent"):
            p.file(f"{d}/{f}", "", 0o200)
        if module:
            p.link(f"{d}/module", f"sys/module/{module}")
            p.link(f"sys/module/{module}/drivers/pci:{name}", d)


def _power(p: Plan, d: str) -> None:
    for k, v in POWER.items():
        p.file(f"{d}/power/{k}", v, 0o644)


@dataclass(frozen=True)
class PciFunction:
    """What differs between PCI functions; _pci_function renders the files they all have."""

    bdf: str
    sysfs_dir: str
    ident: PciIdentity
    bars: list[Bar]
    numa: int | None  # None: firmware gives none (numa_node -1, all CPUs local)
    driver: str | None  # bound driver (a DRIVERS key), None when unbound
    buses: tuple[int, int, int] | None = None  # bridges: primary, secondary, subordinate


def _pci_function(p: Plan, t: Topology, fn: PciFunction) -> None:
    """The files every PCI function has (vendor ids, config, numa_node, links)."""
    bdf, d, ident, bars, numa, driver, buses = fn.bdf, fn.sysfs_dir, fn.ident, fn.bars, fn.numa, fn.driver, fn.buses
    nr = t.nr_cpus
    if numa is None:
        numa_node, cpus = -1, list(range(nr))
    else:
        numa_node = numa
        cpus = t.numa_by_id[numa].cpus if numa in t.numa_by_id else list(range(nr))
    p.file(f"{d}/vendor", f"0x{ident.vendor:04x}\n")
    p.file(f"{d}/device", f"0x{ident.device:04x}\n")
    p.file(f"{d}/subsystem_vendor", f"0x{ident.subsystem_vendor:04x}\n")
    p.file(f"{d}/subsystem_device", f"0x{ident.subsystem_device:04x}\n")
    p.file(f"{d}/class", f"0x{ident.class_code:06x}\n")
    p.file(f"{d}/revision", f"0x{ident.revision:02x}\n")
    p.file(f"{d}/numa_node", f"{numa_node}\n", 0o644)
    p.file(f"{d}/local_cpulist", format_cpulist(cpus) + "\n")
    p.file(f"{d}/local_cpus", format_cpumask(cpus, nr) + "\n")
    p.file(f"{d}/irq", "0\n")
    p.file(f"{d}/enable", "1\n", 0o600)
    p.file(f"{d}/dma_mask_bits", "64\n")
    p.file(f"{d}/consistent_dma_mask_bits", "64\n")
    p.file(f"{d}/broken_parity_status", "0\n", 0o644)
    p.file(f"{d}/msi_bus", "1\n", 0o644)
    p.file(f"{d}/d3cold_allowed", "1\n", 0o644)
    p.file(f"{d}/modalias", ident.modalias() + "\n")
    speed = SPEEDS[ident.link_speed]
    for k, v in (("current_link_speed", speed), ("max_link_speed", speed),
                 ("current_link_width", ident.link_width), ("max_link_width", ident.link_width)):
        p.file(f"{d}/{k}", f"{v}\n")
    uevent = (f"PCI_CLASS={ident.class_code:X}\nPCI_ID={ident.vendor:04X}:{ident.device:04X}\n"
              f"PCI_SUBSYS_ID={ident.subsystem_vendor:04X}:{ident.subsystem_device:04X}\n"
              f"PCI_SLOT_NAME={bdf}\nMODALIAS={ident.modalias()}\n")
    if driver:
        uevent = f"DRIVER={DRIVERS[driver][0]}\n" + uevent
    p.file(f"{d}/uevent", uevent, 0o644)
    p.file(f"{d}/config", config_space(ident, bars, buses), 0o644)
    p.file(f"{d}/resource", resource_file(bars))
    for f in ("remove", "rescan", "reset"):
        p.file(f"{d}/{f}", "", 0o200)
    if buses:
        p.file(f"{d}/secondary_bus_number", f"{buses[1]}\n")
        p.file(f"{d}/subordinate_bus_number", f"{buses[2]}\n")
    _power(p, d)
    p.owns_dir(d)
    p.link(f"{d}/subsystem", "sys/bus/pci")
    p.link(f"sys/bus/pci/devices/{bdf}", d)
    if driver:
        drv = f"sys/bus/pci/drivers/{DRIVERS[driver][0]}"
        p.link(f"{d}/driver", drv)
        p.link(f"{drv}/{bdf}", d)


def _bars(bdf: str, sizes: dict[int, int]) -> list[Bar]:
    """Deterministic, non-overlapping BAR addresses derived from the BDF [INF: sizes]."""
    domain, bus, slot, fn = parse_bdf(bdf)
    base = 0x380000000000 + (((domain << 16) | (bus << 8) | (slot << 3) | fn) << 36)
    out, off = [], 0
    for idx, size in sorted(sizes.items()):
        out.append(Bar(idx, base + off, size))
        off += size
    return out


def _neuron(p: Plan, t: Topology, lay: Layout, n: NeuronDevice, state: TreeState) -> None:
    g = t.gen
    assert g is not None
    d = lay.pci_paths[n.bdf]
    # Subsystem 1d0f:0000 as pci.ids lists it for Trainium ("1d0f 0000 Trainium").
    ident = PciIdentity(AMAZON_VENDOR, g.pci_device, CLASS_NEURON, AMAZON_VENDOR, 0x0000)
    bars = _bars(n.bdf, {0: 32 << 20, 4: 16 << 30})  # BAR0 CSR, BAR4 HBM window (NE §1.1)
    bound = state.bound(n.id)
    _pci_function(p, t, PciFunction(n.bdf, d, ident, bars, state.numa(t, n), "neuron" if bound else None))
    if not bound:  # unbound, or probe failed on a duplicate routing id: no cdev (NE §1.3)
        return
    # The virtual class device: no `device` link to the PCI function (NE §1.2).
    c = lay.neuron_class_dir(n)
    major, minor = lay.neuron_devnum(n)
    p.owns_dir(c)
    p.file(f"{c}/dev", f"{major}:{minor}\n")
    p.file(f"{c}/uevent", f"MAJOR={major}\nMINOR={minor}\nDEVNAME=neuron{n.index}\n", 0o644)
    p.link(f"{c}/subsystem", "sys/class/neuron_device")
    _power(p, c)
    p.file(f"{c}/core_count", str(g.cores), 0o400)  # "%d" without newline (NE §1.4)
    p.file(f"{c}/connected_devices", ", ".join(map(str, n.connected)) + "\n", 0o400)
    p.file(f"{c}/reset", "1\n", 0o600)
    p.file(f"{c}/info/notify_delay", "-1\n", 0o644)
    p.file(f"{c}/info/serial_number", n.serial + "\n", 0o644)
    arch = f"{c}/info/architecture"
    p.file(f"{arch}/arch_type", g.arch_type + "\n", 0o644)
    p.file(f"{arch}/instance_type", g.family + "\n", 0o644)
    p.file(f"{arch}/device_name", g.device_name + "\n", 0o644)
    for cat in HOST_MEM:
        for k in ("total", "present", "peak"):
            p.file(f"{c}/stats/memory_usage/host_mem/{cat}/{k}", "0\n", 0o644)
    for k in HW_STATS:
        p.file(f"{c}/stats/hardware/{k}", f"{state.counter(n.id, k)}\n", 0o644)
    p.file(f"{c}/stats/power/utilization", "POWER_STATUS_NO_DATA,0,0,0,0\n", 0o644)
    for core in range(g.cores):
        k_dir = f"{c}/neuron_core{core}"
        p.file(f"{k_dir}/info/architecture/arch_type", g.core_arch_type, 0o644)
        for ctr in CORE_STATUS:
            p.file(f"{k_dir}/stats/status/{ctr}/total", "0\n", 0o644)
            p.file(f"{k_dir}/stats/status/{ctr}/present", "0\n", 0o644)
        for kind in ("host_mem", "device_mem"):
            for k in ("total", "present", "peak"):
                p.file(f"{k_dir}/stats/memory_usage/{kind}/{k}", "0\n", 0o644)
        for cat in DEVICE_MEM:
            for k in ("total", "present", "peak"):
                p.file(f"{k_dir}/stats/memory_usage/device_mem/{cat}/{k}", "0\n", 0o644)
        for ctr in OTHER_INFO:
            p.file(f"{k_dir}/stats/other_info/{ctr}/total", "0\n", 0o644)
            p.file(f"{k_dir}/stats/other_info/{ctr}/present", "0\n", 0o644)
        p.file(f"{k_dir}/stats/tensor_engine/pe_cntrs", "\n", 0o644)
    p.link(f"sys/class/neuron_device/neuron{n.index}", c)
    p.link(f"sys/dev/char/{major}:{minor}", c)
    p.devnode(f"dev/neuron{n.index}", major, minor)


def _efa(p: Plan, t: Topology, lay: Layout, e: EfaDevice, state: TreeState) -> None:
    d = lay.pci_paths[e.bdf]
    ident = PciIdentity(AMAZON_VENDOR, e.pci_device, CLASS_ETHERNET, AMAZON_VENDOR, e.pci_device)
    bound = state.bound(e.id)
    _pci_function(p, t, PciFunction(e.bdf, d, ident, _bars(e.bdf, {0: 16 << 10, 2: 128 << 10}), state.numa(t, e),
                                    "efa" if bound else None))
    if not bound:  # no ib_device without the efa driver
        return
    p.file(f"{d}/gdr", "1\n")  # NE §2.1
    ib = lay.ib_dir(e)
    p.owns_dir(ib)
    p.file(f"{ib}/uevent", f"NAME={e.rdma}\n", 0o644)
    p.link(f"{ib}/subsystem", "sys/class/infiniband")
    p.link(f"{ib}/device", d)
    p.file(f"{ib}/node_type", "7: unspecified\n")
    p.file(f"{ib}/node_guid", e.node_guid + "\n")
    p.file(f"{ib}/sys_image_guid", e.node_guid + "\n")
    p.file(f"{ib}/fw_ver", "\n")
    p.file(f"{ib}/node_desc", "\n", 0o644)
    _power(p, ib)
    for k in EFA_DEVICE_STATS:
        p.file(f"{ib}/hw_counters/{k}", f"{state.counter(e.id, k)}\n")
    p.file(f"{ib}/hw_counters/lifespan", "12\n", 0o644)
    port = f"{ib}/ports/1"
    for k, v in (("state", "4: ACTIVE"), ("phys_state", "5: LinkUp"), ("lid", "0x0"), ("lid_mask_count", "1"),
                 ("sm_lid", "0x0"), ("sm_sl", "0"), ("cap_mask", "0x00000000"), ("rate", e.rate),
                 ("link_layer", "Unknown")):
        p.file(f"{port}/{k}", v + "\n")
    g = e.node_guid.replace(":", "")
    p.file(f"{port}/gids/0", f"fe80:0000:0000:0000:{g[0:4]}:{g[4:8]}:{g[8:12]}:{g[12:16]}\n")
    p.file(f"{port}/pkeys/0", "0xffff\n")
    p.file(f"{port}/gid_attrs/types/0", "\n")
    p.file(f"{port}/gid_attrs/ndevs/0", "\n")
    for k in EFA_PORT_STATS:
        p.file(f"{port}/hw_counters/{k}", "0\n")
    p.file(f"{port}/hw_counters/lifespan", "12\n", 0o644)
    p.link(f"sys/class/infiniband/{e.rdma}", ib)
    uv = lay.uverbs_dir(e)
    major, minor = lay.uverbs_devnum(e)
    p.owns_dir(uv)
    p.file(f"{uv}/ibdev", e.rdma + "\n")
    p.file(f"{uv}/abi_version", "1\n")  # EFA_UVERBS_ABI_VERSION (NE §2.2)
    p.file(f"{uv}/dev", f"{major}:{minor}\n")
    p.file(f"{uv}/uevent", f"MAJOR={major}\nMINOR={minor}\nDEVNAME=infiniband/uverbs{e.uverbs}\n", 0o644)
    p.link(f"{uv}/subsystem", "sys/class/infiniband_verbs")
    p.raw_link(f"{uv}/device", f"../../../{e.bdf}")  # kernel's shape (NE §2.3)
    _power(p, uv)
    p.link(f"sys/class/infiniband_verbs/uverbs{e.uverbs}", uv)
    p.link(f"sys/dev/char/{major}:{minor}", uv)
    p.devnode(f"dev/infiniband/uverbs{e.uverbs}", major, minor)


def _ena(p: Plan, t: Topology, lay: Layout, e: EnaDevice, state: TreeState) -> None:
    ident = PciIdentity(AMAZON_VENDOR, 0xEC20, CLASS_ETHERNET, AMAZON_VENDOR, 0xEC20)
    bound = state.bound(e.id)
    _pci_function(p, t, PciFunction(e.bdf, lay.pci_paths[e.bdf], ident, _bars(e.bdf, {0: 16 << 10}),
                                    state.numa(t, e), "ena" if bound else None))
    if bound:  # the ena driver's network interface; `device` leads back to the PCI function
        ifindex = 2 + t.ena.index(e)
        mac = ena_mac(t.instance_type, e.bdf)
        d = f"{lay.pci_paths[e.bdf]}/net/{e.ifname}"
        _net_interface(p, d, e.ifname, ifindex, mac, mtu=9001, kind=1, operstate="up")
        p.raw_link(f"{d}/device", "../../../" + e.bdf)


def _net_interface(p: Plan, d: str, name: str, ifindex: int, mac: str, mtu: int, kind: int, operstate: str) -> None:
    """A class/net device as the kernel shows it (the files drivers and hwloc read)."""
    for k, v in (("address", mac), ("broadcast", "ff:ff:ff:ff:ff:ff"), ("addr_len", 6), ("ifindex", ifindex),
                 ("iflink", ifindex), ("mtu", mtu), ("type", kind), ("operstate", operstate), ("carrier", 1),
                 ("tx_queue_len", 1000), ("flags", "0x1003"), ("dev_id", "0x0"), ("dev_port", 0)):
        p.file(f"{d}/{k}", f"{v}\n")
    p.file(f"{d}/uevent", f"INTERFACE={name}\nIFINDEX={ifindex}\n", 0o644)
    p.link(f"{d}/subsystem", "sys/class/net")
    p.link(f"sys/class/net/{name}", d)


def _vendor_files(p: Plan, t: Topology, state: TreeState) -> None:
    """Answers a real node gives outside sysfs.

    - CDM_MAP: the Neuron->EFA table that AWS compiles into its driver (connected-device-maps
      library, lookup/neuron/<family>.json, same JSON shape). A fake tree carries it as a file so
      machines that do not exist yet can be described; absent when no device has an EFA partner.
    - NEURON_LS: what `neuron-ls --json-output` reports. sysfs does not link neuronN to its PCI
      function (NE §1.2: the BDF comes only from an ioctl); this file stands in for that ioctl.
    """
    present = [n for n in t.neuron if n.id not in state.removed and state.bound(n.id)]
    if any(n.efa for n in t.neuron):
        p.file(CDM_MAP, json.dumps({str(n.index): n.efa for n in t.neuron if n.efa}, indent=4) + "\n", 0o644)
    if t.neuron:
        g = t.gen
        rows = [{"neuron_device": n.index, "bdf": n.bdf.split(":", 1)[1], "domain_bdf": n.bdf,
                 "connected_to": n.connected or None, "nc_count": g.cores if g else 0,
                 "memory_size": (g.hbm_gib if g else 0) << 30, "neuron_processes": []}
                for n in sorted(present, key=lambda n: n.index)]
        p.file(NEURON_LS, json.dumps(rows, indent=2) + "\n", 0o644)


def _apply_attr_faults(p: Plan, state: TreeState) -> None:
    """Dropped or corrupted attributes: edit the owning group's planned file."""
    for f in state.attrs:
        g = p.groups.get(f["device"]) or p.groups[NODE]
        if f["path"] not in g.files:
            continue  # the attribute went away with its device
        if f["action"] == "drop":
            del g.files[f["path"]]
        else:
            # surrogateescape: bytes that are not UTF-8 (from argv) are written as given (probe-2 row 90)
            g.files[f["path"]] = (f["value"].encode("utf-8", "surrogateescape"), g.files[f["path"]][1])
