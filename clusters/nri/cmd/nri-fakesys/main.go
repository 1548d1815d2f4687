// nri-fakesys shows every container started on a kind worker its fake node, as the real machine
// would: at CreateContainer it adds OCI mounts that put the worker's fakedev tree over the paths
// a Neuron/EFA driver reads (PCI bus and devices, the Neuron, InfiniBand and verbs classes, net,
// NUMA nodes and CPUs, DMI, the drivers' modules). It is the kind counterpart of `fakedev run`
// (fakedev/nsrun.py) and plans the same way:
//   - a tree entry whose path exists in the node's /sys as a directory is bind-mounted over it;
//   - otherwise its parent becomes a composite: a tmpfs holding binds of the node's real entries
//     plus the fake ones (sysfs cannot grow entries); a parent whose entries are symlinks
//     (/sys/dev/char) is replaced by the tree's directory whole, as mounts cannot make symlinks.
//
// containerd's NRI sorts mounts by depth (runtime-tools generate.sortMounts), so parents are
// mounted before what lies inside them. Binds are read-only unless the container's own /sys is
// writable (a privileged container). A hostPath /sys (or /sys/bus/pci) volume is covered too:
// the deeper fake mounts land on it, and a volume at exactly a fake path is replaced.
// Opt-out: pods in --skip-namespaces and pods annotated dra-harness.io/host-sysfs: "true".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// replaced mirrors fakedev/nsrun.py REPLACED, the /sys part (devices under /dev reach containers
// through CDI and the node's own /dev, which the harness fills with the tree's nodes).
var replaced = []string{
	"sys/bus/pci", "sys/devices/pci*", "sys/devices/virtual/neuron_device", "sys/devices/virtual/dmi",
	"sys/devices/system/node", "sys/devices/system/cpu", "sys/devices/virtual/net", "sys/class/net",
	"sys/class/neuron_device", "sys/class/infiniband", "sys/class/infiniband_verbs", "sys/class/dmi",
	"sys/class/pci_bus", "sys/module/neuron", "sys/module/efa", "sys/module/ena", "sys/dev/char/*",
}

const optOut = "dra-harness.io/host-sysfs"

type plugin struct {
	tree string
	host string // the node's root as this plugin sees it ("/"; a test may point elsewhere)
	skip map[string]bool
}

type bind struct{ src, dst string }

// plan returns the mounts (tmpfs composites and binds) that put the tree over the node's paths.
func (p *plugin) plan() (tmpfs []string, binds []bind) {
	composite := map[string]map[string]string{} // node dir -> name -> tree source
	for _, pattern := range replaced {
		parentRel, glob := path.Split(pattern)
		parentRel = strings.TrimSuffix(parentRel, "/")
		entries, err := os.ReadDir(filepath.Join(p.tree, parentRel))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if ok, _ := path.Match(glob, e.Name()); !ok {
				continue
			}
			src := filepath.Join(p.tree, parentRel, e.Name())
			dst := "/" + parentRel + "/" + e.Name()
			if isDir(src) && isDir(filepath.Join(p.host, dst)) {
				binds = append(binds, bind{src, dst})
				continue
			}
			if composite["/"+parentRel] == nil {
				composite["/"+parentRel] = map[string]string{}
			}
			composite["/"+parentRel][e.Name()] = src
		}
	}
	dirs := make([]string, 0, len(composite))
	for d := range composite {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	// A destination is set once: a real entry with a fake bind of its own, or that is itself a
	// composite (a tmpfs), is not bound again (containerd refuses two mounts at one path).
	direct := map[string]bool{}
	for _, b := range binds {
		direct[b.dst] = true
	}
	for _, d := range dirs {
		direct[d] = true
	}
	for _, dir := range dirs {
		fake := composite[dir]
		real, _ := os.ReadDir(filepath.Join(p.host, dir))
		whole := false
		for _, e := range real {
			if _, isFake := fake[e.Name()]; !isFake && e.Type()&os.ModeSymlink != 0 {
				whole = true
			}
		}
		for _, src := range fake {
			if !isDir(src) {
				whole = true
			}
		}
		if whole {
			binds = append(binds, bind{filepath.Join(p.tree, strings.TrimPrefix(dir, "/")), dir})
			continue
		}
		tmpfs = append(tmpfs, dir)
		for _, e := range real {
			if _, isFake := fake[e.Name()]; !isFake && e.IsDir() && !direct[filepath.Join(dir, e.Name())] {
				binds = append(binds, bind{filepath.Join(dir, e.Name()), filepath.Join(dir, e.Name())})
			}
		}
		for name, src := range fake {
			binds = append(binds, bind{src, filepath.Join(dir, name)})
		}
	}
	return tmpfs, binds
}

func isDir(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.IsDir()
}

func sysReadOnly(ctr *api.Container) bool {
	for _, m := range ctr.GetMounts() {
		if m.GetDestination() == "/sys" {
			for _, o := range m.GetOptions() {
				if o == "ro" {
					return true
				}
			}
			return false
		}
	}
	return true
}

func (p *plugin) Configure(_ context.Context, _, runtime, version string) (stub.EventMask, error) {
	log.Printf("configured by %s %s; tree %s", runtime, version, p.tree)
	return api.ParseEventMask("CreateContainer")
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if p.skip[pod.GetNamespace()] || pod.GetAnnotations()[optOut] == "true" {
		return nil, nil, nil
	}
	mode := "ro"
	if !sysReadOnly(ctr) {
		mode = "rw"
	}
	adjust := &api.ContainerAdjustment{}
	tmpfs, binds := p.plan()
	for _, d := range tmpfs {
		adjust.AddMount(&api.Mount{Destination: d, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "noexec", "mode=755"}})
	}
	for _, b := range binds {
		adjust.AddMount(&api.Mount{Destination: b.dst, Type: "bind", Source: b.src, Options: []string{"rbind", mode}})
	}
	log.Printf("%s/%s %s: %d composites, %d binds (%s)", pod.GetNamespace(), pod.GetName(), ctr.GetName(),
		len(tmpfs), len(binds), mode)
	return adjust, nil, nil
}

func main() {
	socket := flag.String("socket", api.DefaultSocketPath, "the runtime's NRI socket")
	tree := flag.String("tree", "/var/lib/dra-harness/tree", "the worker's fakedev tree")
	host := flag.String("host", "/", "the node's root (for planning)")
	skip := flag.String("skip-namespaces", "kube-system", "comma-separated namespaces whose pods keep the node's /sys")
	dryRun := flag.Bool("plan", false, "print the mounts and exit")
	flag.Parse()
	p := &plugin{tree: *tree, host: *host, skip: map[string]bool{}}
	for _, ns := range strings.Split(*skip, ",") {
		if ns != "" {
			p.skip[ns] = true
		}
	}
	if *dryRun {
		tmpfs, binds := p.plan()
		for _, d := range tmpfs {
			fmt.Printf("tmpfs %s\n", d)
		}
		for _, b := range binds {
			fmt.Printf("bind %s %s\n", b.src, b.dst)
		}
		return
	}
	s, err := stub.New(p, stub.WithSocketPath(*socket), stub.WithPluginName("fakesys"), stub.WithPluginIdx("10"))
	if err != nil {
		log.Fatalf("nri-fakesys: %v", err)
	}
	if err := s.Run(context.Background()); err != nil {
		log.Fatalf("nri-fakesys: connection closed: %v", err)
	}
}
