// nri-test-plugin is the harness's test NRI plugin (named as such), built on the NRI project's
// plugin library (github.com/containerd/nri/pkg/stub) like DRANET and the NRI sample plugins.
// Why our own: the NRI repository's sample plugins are separate Go modules the module proxy does
// not serve (proxy.golang.org answers 404/403 for github.com/containerd/nri/plugins/logger), so
// this plugin does what the "logger" and "template" samples do: it records every event it
// receives, one JSON line each, and adjusts each container it sees created (an environment
// variable and an annotation), so a test can check both directions of the protocol.
// --fail-create injects an error into CreateContainer, to show a runtime refusing a container.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	mu         sync.Mutex
	events     *os.File
	failCreate bool
}

func (p *plugin) record(event string, pod *api.PodSandbox, ctr *api.Container, extra map[string]any) {
	line := map[string]any{"event": event}
	if pod != nil {
		line["pod"] = pod.GetNamespace() + "/" + pod.GetName()
		line["pod_uid"] = pod.GetUid()
	}
	if ctr != nil {
		line["container"] = ctr.GetName()
		var cdi []string
		for _, d := range ctr.GetCDIDevices() {
			cdi = append(cdi, d.GetName())
		}
		line["cdi_devices"] = cdi
	}
	for k, v := range extra {
		line[k] = v
	}
	b, _ := json.Marshal(line)
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.events, string(b))
	_ = p.events.Sync()
}

func (p *plugin) Configure(_ context.Context, _, runtime, version string) (stub.EventMask, error) {
	p.record("Configure", nil, nil, map[string]any{"runtime": runtime, "version": version})
	return api.ParseEventMask("RunPodSandbox,StopPodSandbox,RemovePodSandbox,CreateContainer,StartContainer,StopContainer,RemoveContainer")
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.record("Synchronize", nil, nil, map[string]any{"pods": len(pods), "containers": len(ctrs)})
	return nil, nil
}

// sandboxNetns is the pod sandbox's network namespace as the runtime reports it ("" for a
// hostNetwork pod): what DRANET reads to move interfaces into the pod.
func sandboxNetns(pod *api.PodSandbox) string {
	for _, ns := range pod.GetLinux().GetNamespaces() {
		if ns.GetType() == "network" {
			return ns.GetPath()
		}
	}
	return ""
}

// interfacesIn lists the interfaces inside a network namespace, entered with setns(2) from a
// locked OS thread that is then thrown away (it never returns to the Go scheduler changed).
func interfacesIn(path string) ([]string, error) {
	type result struct {
		names []string
		err   error
	}
	out := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with this goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			out <- result{nil, err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			out <- result{nil, err}
			return
		}
		ifs, err := net.Interfaces()
		var names []string
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		out <- result{names, err}
	}()
	r := <-out
	return r.names, r.err
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	extra := map[string]any{"netns": sandboxNetns(pod)}
	if path := sandboxNetns(pod); path != "" {
		names, err := interfacesIn(path)
		if err != nil {
			extra["netns_error"] = err.Error()
		}
		extra["interfaces"] = names
	}
	p.record("RunPodSandbox", pod, nil, extra)
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod, nil, nil)
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod, nil, nil)
	return nil
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", pod, ctr, nil)
	if p.failCreate {
		return nil, nil, fmt.Errorf("nri-test-plugin refuses container %s (--fail-create)", ctr.GetName())
	}
	adjust := &api.ContainerAdjustment{}
	adjust.AddEnv("NRI_TEST_PLUGIN", pod.GetName())
	adjust.AddAnnotation("nri-test-plugin/seen", "true")
	return adjust, nil, nil
}

func (p *plugin) StartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("StartContainer", pod, ctr, nil)
	return nil
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", pod, ctr, nil)
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("RemoveContainer", pod, ctr, nil)
	return nil
}

func main() {
	socket := flag.String("socket", api.DefaultSocketPath, "the runtime's NRI socket")
	name := flag.String("name", "test-plugin", "plugin name")
	idx := flag.String("idx", "50", "plugin index (order among plugins)")
	events := flag.String("events", "-", "file to append event lines to (- for stdout)")
	failCreate := flag.Bool("fail-create", false, "refuse every container in CreateContainer")
	flag.Parse()
	out := os.Stdout
	if *events != "-" {
		f, err := os.OpenFile(*events, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nri-test-plugin:", err)
			os.Exit(1)
		}
		out = f
	}
	p := &plugin{events: out, failCreate: *failCreate}
	s, err := stub.New(p, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx))
	if err != nil {
		fmt.Fprintln(os.Stderr, "nri-test-plugin:", err)
		os.Exit(1)
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "nri-test-plugin: connection closed:", err)
		os.Exit(1)
	}
}
