"""`refdriver`: reference DRA drivers for AWS Neuron (neuron.aws.com) and EFA (dra.net)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path

from . import bugs as bugmod

EPILOG = """\
The drivers publish ResourceSlices shaped like AWS's: `neuron` as the Neuron DRA driver
(driver neuron.aws.com, devices neuron-device-N, devicegroup ids from the Neuron->EFA map),
`efa` as DRANET, AWS's EFA driver (driver dra.net, devices pci-DDDD-BB-SS-F).

How a driver sees hardware: it always reads /sys and /dev. Point it at a fake tree with
  fakedev run --tree DIR -- refdriver neuron ...      (mount namespace; any driver)
  refdriver neuron --sysfs-root DIR ...               (re-runs itself under umockdev)

examples:
  refdriver neuron --sysfs-root /tmp/node1 --node-name node1 --dry-run
  refdriver efa --node-name node1 --kubeconfig kubeconfig --registry-dir R --plugins-dir P --cdi-root C
  refdriver neuron ... --inject-bug efa-shift        (see `refdriver bugs`)
  refdriver efa ... --share-efa --efa-share-default 25   (EFAs shared by bandwidth)
  refdriver neuron ... --partition-cores               (NeuronCores as partitions of their device)
  refdriver neuron --sysfs-root DIR --host-nodes nodes.json   (host mode: many nodes, one process)
  refdriver deviceclasses | kubectl apply -f -
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refdriver", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for kind, help_ in (("neuron", "Neuron DRA driver (neuron.aws.com)"), ("efa", "EFA DRA driver (dra.net)")):
        s = sub.add_parser(kind, help=help_)
        s.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="this node (env NODE_NAME); pool name")
        s.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (default: in-cluster)")
        s.add_argument("--dry-run", action="store_true", help="print the ResourceSlices as a JSON list and exit")
        s.add_argument("--sysfs-root", default="/", help="directory holding sys/ and dev/ (a fakedev tree); "
                       "the driver re-runs itself under umockdev's preload pointed there")
        if kind == "neuron":
            s.add_argument("--extended-attributes", action="store_true",
                           help="also publish resource.kubernetes.io/pcieRoot and numaNode (AWS's driver does "
                           "not: on EKS, Neuron/EFA alignment is only through the devicegroup ids)")
        s.add_argument("--inject-bug", action="append", default=[], metavar="NAME",
                       help=f"make the driver wrong in one way: {', '.join(bugmod.BUGS)} (repeatable)")
        s.add_argument("--registry-dir", default="/var/lib/kubelet/plugins_registry", type=Path)
        s.add_argument("--plugins-dir", default="/var/lib/kubelet/plugins", type=Path)
        s.add_argument("--cdi-root", default=os.environ.get("CDI_ROOT", "/var/run/cdi"), type=Path)
        s.add_argument("--no-kubelet-plugin", action="store_true", help="only publish slices")
        s.add_argument("--health-port", type=int, default=int(os.environ.get("HEALTHCHECK_PORT", "0")),
                       help="serve /healthz on 127.0.0.1:PORT (0: off)")
        s.add_argument("--rescan-interval", type=float, default=10.0,
                       help="seconds between rescans when no change is noticed (changes are seen via inotify)")
        s.add_argument("--health-interval", type=float, default=1.0, metavar="SECONDS",
                       help="seconds between reads of the error counters that become device taints "
                       "(sysfs attributes change without inotify events)")
        if kind == "neuron":
            s.add_argument("--partition-cores", action="store_true",
                           help="publish each device's NeuronCores as partitions (KEP-4815, 1.34+ with the "
                           "gate, on from 1.36): a counter set of its cores and memory, the full device and "
                           "its logical-core-sized groups (neuron-device-N-cores-A-B) consuming them; "
                           "`refdriver deviceclasses --partition-cores` prints the classes that tell them apart")
            s.add_argument("--partition-lnc", type=int, choices=(1, 2), metavar="{1,2}",
                           help="with --partition-cores: cores per partition, as a node's logical NeuronCore "
                           "setting (default: 2 on Trn2, 1 elsewhere)")
            s.add_argument("--repairable-ecc-threshold", type=int, default=8, metavar="N",
                           help="repairable HBM ECC errors that taint a device NoSchedule (fewer: an "
                           "informational taint, effect None, on 1.35+)")
        if kind == "efa":
            s.add_argument("--share-efa", action="store_true",
                           help="publish each EFA as shareable (consumable capacity, 1.34+ with the gate, on "
                           "from 1.36): allowMultipleAllocations and a `bandwidth` capacity of its port rate "
                           "in Gbit/s; claims ask for a share with capacity.requests.bandwidth")
            s.add_argument("--efa-share-default", type=int, metavar="GBPS",
                           help="bandwidth a request that names none consumes (default: the whole EFA, so "
                           "claims written before sharing stay exclusive)")
            s.add_argument("--efa-share-step", type=int, default=5, metavar="GBPS",
                           help="shares are rounded up to min + a multiple of this (default 5)")
            s.add_argument("--efa-share-min", type=int, default=5, metavar="GBPS",
                           help="the smallest share (default 5)")
        s.add_argument("--host-nodes", type=Path, metavar="FILE",
                       help="host mode: serve every node listed in FILE from this one process (JSON list of "
                       "{node_name, kubeconfig, registry_dir, plugins_dir, cdi_root}); all of them see "
                       "--sysfs-root; SIGHUP re-reads FILE. Replaces --node-name/--kubeconfig/the dirs")
        s.add_argument("--log-level", default="info")
    sub.add_parser("bugs", help="list the injectable bugs")
    s = sub.add_parser("deviceclasses", help="print the DeviceClass manifests (as AWS ships them)")
    s.add_argument("--partition-cores", action="store_true",
                   help="the classes for --partition-cores: neuron.aws.com takes whole devices only, "
                   "neuroncores.aws.com core partitions")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "bugs":
        for name, what in bugmod.BUGS.items():
            print(f"{name:22} {what}")
        return 0
    if args.cmd == "deviceclasses":
        name = "deviceclasses-partitioned.yaml" if args.partition_cores else "deviceclasses.yaml"
        sys.stdout.write(resources.files("refdriver").joinpath("manifests").joinpath(name).read_text())
        return 0
    try:
        bugmod.check(args.inject_bug)
    except ValueError as e:
        return _fail(str(e))
    root = Path(args.sysfs_root).resolve()
    if root != Path("/"):
        if not (root / "sys").is_dir():
            return _fail(f"--sysfs-root {root} has no sys/ directory")
        if os.environ.get("UMOCKDEV_DIR") != str(root):
            return _reexec_under_umockdev(root)
    vendor_root = root
    if root != Path("/") and str(root).startswith("/dev/"):
        # a tree under /dev (the harness keeps state in /dev/shm): umockdev takes every open of a
        # path below /dev for a device node, tries its ioctl socket and leaks it (one fd per
        # read of a vendor file). Relative to the tree, umockdev leaves the paths alone.
        os.chdir(root)
        vendor_root = Path(".")
    if not args.dry_run and not args.node_name and not args.host_nodes:
        return _fail("--node-name (or NODE_NAME) is required to publish slices")
    from . import logs
    from .driver import Driver, Options

    logs.setup(args.log_level, driver=args.cmd, node=args.node_name or ("host" if args.host_nodes else ""))
    share = None
    if getattr(args, "share_efa", False):
        from .sharing import PolicyError, SharePolicy

        try:
            share = SharePolicy(args.efa_share_default, args.efa_share_step, args.efa_share_min).check()
        except PolicyError as e:
            return _fail(str(e))
    elif getattr(args, "efa_share_default", None) is not None:
        return _fail("--efa-share-default needs --share-efa")
    opts = Options(kind=args.cmd, node_name=args.node_name or "dry-run", vendor_root=vendor_root,
                   extended=getattr(args, "extended_attributes", False), bugs=args.inject_bug,
                   registry_dir=args.registry_dir, plugins_dir=args.plugins_dir, cdi_root=args.cdi_root,
                   rescan_interval=args.rescan_interval, kubelet_plugin=not args.no_kubelet_plugin,
                   health_port=args.health_port, health_interval=args.health_interval,
                   repairable_threshold=getattr(args, "repairable_ecc_threshold", 8), share_efa=share,
                   partition_cores=getattr(args, "partition_cores", False),
                   partition_lnc=getattr(args, "partition_lnc", None))
    if ("partition-no-counters" in opts.bugs or opts.partition_lnc) and not opts.partition_cores:
        return _fail("--partition-lnc and --inject-bug partition-no-counters need --partition-cores")
    if opts.health_interval <= 0 or opts.repairable_threshold < 1:
        return _fail("--health-interval must be above 0 and --repairable-ecc-threshold at least 1")
    if args.host_nodes and not args.dry_run:
        return _run_host(opts, args.host_nodes, args.health_port)
    if args.dry_run:
        from . import taints
        from .slices import build

        d = Driver(opts)
        try:  # as the newest API version takes them
            devices = taints.stamp(taints.fit(d.scan(), taints.Caps()), [])
            json.dump(build(opts.node_name, opts.driver, devices, 1, counter_sets=d.counter_sets), sys.stdout, indent=2)
            print()
        except BrokenPipeError:
            pass
        return 0
    from kubernetes import client, config

    try:
        if args.kubeconfig:
            api = config.new_client_from_config(config_file=args.kubeconfig)
        else:
            config.load_incluster_config()
            api = client.ApiClient()
    except Exception as e:  # no kubeconfig and not in a pod
        return _fail(f"cannot configure the Kubernetes client: {e}")
    Driver(opts, api).run()
    return 0


def _run_host(opts, nodes_file: Path, health_port: int) -> int:
    from .host import Host, load_nodes

    try:
        load_nodes(nodes_file)
    except ValueError as e:
        return _fail(str(e))
    host = Host(opts, nodes_file)
    if health_port:
        from . import health as healthmod

        healthmod.serve(health_port, host.health)
    host.run()
    return 0


UMOCKDEV_PRELOAD = [f"/usr/lib/{arch}/libumockdev-preload.so.0" for arch in ("x86_64-linux-gnu", "aarch64-linux-gnu")] \
    + ["/usr/lib64/libumockdev-preload.so.0"]


def _reexec_under_umockdev(root: Path) -> int:
    lib = next((p for p in UMOCKDEV_PRELOAD if os.path.exists(p)), None)
    if lib is None:
        return _fail("--sysfs-root needs umockdev's preload library (apt install umockdev), "
                     "or run the driver under `fakedev run --tree DIR --`")
    env = {**os.environ, "UMOCKDEV_DIR": str(root),
           "LD_PRELOAD": " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))}
    os.execve(sys.executable, [sys.executable, "-m", "refdriver.cli", *sys.argv[1:]], env)
    return 127


def _fail(msg: str) -> int:
    print(f"refdriver: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
