// nri-standin is a test stand-in for a container runtime's NRI side (named as such: fake nodes
// run no containerd). It hosts the NRI project's own runtime adaptation
// (github.com/containerd/nri/pkg/adaptation, the code containerd embeds) on one socket per fake
// node, so NRI plugins (DRANET, or any built on nri/pkg/stub) connect, register and synchronise
// exactly as on a real node. The harness's kubelet stand-in drives it: one JSON request per line
// on stdin (a pod-sandbox or container event for a node), one JSON answer per line on stdout.
// Logs go to stderr.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/encoding/protojson"
)

// request is one event for one node; pod and container are NRI API objects in protobuf JSON.
type request struct {
	ID        int             `json:"id"`
	Node      string          `json:"node"`
	Op        string          `json:"op"`
	Pod       json.RawMessage `json:"pod,omitempty"`
	Container json.RawMessage `json:"container,omitempty"`
}

type answer struct {
	ID      int                 `json:"id"`
	Error   string              `json:"error,omitempty"`
	Adjust  json.RawMessage     `json:"adjust,omitempty"`
	Plugins map[string][]string `json:"plugins,omitempty"`
}

// node is one fake node's runtime: its adaptation and the pods and containers it has running,
// which a plugin receives in Synchronize when it registers.
type node struct {
	name       string
	nri        *adaptation.Adaptation
	mu         sync.Mutex
	pods       map[string]*api.PodSandbox
	containers map[string]*api.Container
	seen       map[string]bool // plugin names that answered a request
	count      int
}

func (n *node) sync(ctx context.Context, cb adaptation.SyncCB) error {
	n.mu.Lock()
	pods := make([]*api.PodSandbox, 0, len(n.pods))
	for _, p := range n.pods {
		pods = append(pods, p)
	}
	ctrs := make([]*api.Container, 0, len(n.containers))
	for _, c := range n.containers {
		ctrs = append(ctrs, c)
	}
	n.mu.Unlock()
	updates, err := cb(ctx, pods, ctrs)
	if len(updates) > 0 {
		fmt.Fprintf(os.Stderr, "nri-standin: %s: %d container updates requested at sync (recorded, not applied)\n", n.name, len(updates))
	}
	return err
}

func (n *node) update(_ context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	fmt.Fprintf(os.Stderr, "nri-standin: %s: %d unsolicited container updates (recorded, not applied)\n", n.name, len(updates))
	return nil, nil
}

// metrics learns plugin names from invocations (the adaptation keeps its plugin list private).
type metrics struct{ n *node }

func (m metrics) RecordPluginInvocation(plugin, _ string, _ error) {
	m.n.mu.Lock()
	m.n.seen[plugin] = true
	m.n.mu.Unlock()
}
func (m metrics) RecordPluginLatency(string, string, time.Duration)                          {}
func (m metrics) RecordPluginAdjustments(string, string, *api.ContainerAdjustment, int, int) {}
func (m metrics) UpdatePluginCount(count int) {
	m.n.mu.Lock()
	changed := count != m.n.count
	m.n.count = count
	m.n.mu.Unlock()
	if changed {
		fmt.Fprintf(os.Stderr, "nri-standin: %s: %d plugins connected\n", m.n.name, count)
	}
}

func (n *node) handle(ctx context.Context, req *request) (json.RawMessage, error) {
	pod := &api.PodSandbox{}
	if len(req.Pod) > 0 {
		if err := protojson.Unmarshal(req.Pod, pod); err != nil {
			return nil, fmt.Errorf("pod: %w", err)
		}
	}
	ctr := &api.Container{}
	if len(req.Container) > 0 {
		if err := protojson.Unmarshal(req.Container, ctr); err != nil {
			return nil, fmt.Errorf("container: %w", err)
		}
	}
	r := n.nri
	switch req.Op {
	case "RunPodSandbox":
		if err := r.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
			return nil, err
		}
		n.mu.Lock()
		n.pods[pod.Id] = pod
		n.mu.Unlock()
	case "StopPodSandbox":
		return nil, r.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod})
	case "RemovePodSandbox":
		n.mu.Lock()
		delete(n.pods, pod.Id)
		n.mu.Unlock()
		return nil, r.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod})
	case "CreateContainer":
		ctr.State = api.ContainerState_CONTAINER_CREATED
		rsp, err := r.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		n.containers[ctr.Id] = ctr
		n.mu.Unlock()
		if err := r.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: pod, Container: ctr}); err != nil {
			return nil, err
		}
		if rsp.GetAdjust() == nil {
			return nil, nil
		}
		return protojson.Marshal(rsp.GetAdjust())
	case "StartContainer":
		ctr.State = api.ContainerState_CONTAINER_RUNNING
		n.mu.Lock()
		n.containers[ctr.Id] = ctr
		n.mu.Unlock()
		if err := r.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: ctr}); err != nil {
			return nil, err
		}
		return nil, r.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: ctr})
	case "StopContainer":
		ctr.State = api.ContainerState_CONTAINER_STOPPED
		_, err := r.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
		return nil, err
	case "RemoveContainer":
		n.mu.Lock()
		delete(n.containers, ctr.Id)
		n.mu.Unlock()
		return nil, r.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr})
	default:
		return nil, fmt.Errorf("unknown op %q", req.Op)
	}
	return nil, nil
}

func main() {
	var nodes []string
	flag.Func("node", "NAME=SOCKET: serve NRI for fake node NAME on SOCKET (repeatable)", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("want NAME=SOCKET, got %q", s)
		}
		nodes = append(nodes, s)
		return nil
	})
	timeout := flag.Duration("request-timeout", 2*time.Second, "NRI plugin request timeout (the runtime's default)")
	flag.Parse()
	if len(nodes) == 0 {
		fmt.Fprintln(os.Stderr, "nri-standin: no --node NAME=SOCKET given")
		os.Exit(2)
	}
	adaptation.SetPluginRequestTimeout(*timeout)
	byName := map[string]*node{}
	for _, spec := range nodes {
		name, sock, _ := strings.Cut(spec, "=")
		n := &node{name: name, pods: map[string]*api.PodSandbox{}, containers: map[string]*api.Container{}, seen: map[string]bool{}}
		r, err := adaptation.New("dra-harness-nri-standin", "v1", n.sync, n.update,
			// No pre-installed plugins: only external ones, connecting to the socket.
			adaptation.WithSocketPath(sock), adaptation.WithPluginPath(filepath.Join(filepath.Dir(sock), "no-plugins")),
			adaptation.WithPluginConfigPath(filepath.Join(filepath.Dir(sock), "no-plugins")),
			adaptation.WithMetrics(metrics{n}))
		if err != nil {
			fmt.Fprintf(os.Stderr, "nri-standin: %s: %v\n", name, err)
			os.Exit(1)
		}
		if err := r.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "nri-standin: %s: start on %s: %v\n", name, sock, err)
			os.Exit(1)
		}
		n.nri = r
		byName[name] = n
	}
	defer func() {
		for _, n := range byName {
			n.nri.Stop()
		}
	}()
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(answer{ID: 0}) // ready: every socket listens
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() { // stdin closed: the harness is going down
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			_ = out.Encode(answer{Error: "bad request: " + err.Error()})
			continue
		}
		if req.Op == "plugins" {
			all := map[string][]string{}
			for name, n := range byName {
				n.mu.Lock()
				for p := range n.seen {
					all[name] = append(all[name], p)
				}
				n.mu.Unlock()
				sort.Strings(all[name])
			}
			_ = out.Encode(answer{ID: req.ID, Plugins: all})
			continue
		}
		n, ok := byName[req.Node]
		if !ok {
			_ = out.Encode(answer{ID: req.ID, Error: fmt.Sprintf("no NRI runtime for node %q", req.Node)})
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		adjust, err := n.handle(ctx, &req)
		cancel()
		a := answer{ID: req.ID, Adjust: adjust}
		if err != nil {
			a.Error = err.Error()
		}
		_ = out.Encode(a)
	}
}
