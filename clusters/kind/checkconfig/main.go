// kindcheck decodes kind cluster configs strictly with kind's own v1alpha4 types: unknown or
// misspelled fields, wrong types and invalid node roles fail, as `kind create cluster` would.
// usage: kindcheck FILE...
package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func main() {
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
		} else {
			fmt.Printf("%s: ok\n", path)
		}
	}
	if failed {
		os.Exit(1)
	}
}

func check(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return fmt.Errorf("strict decode: %w", err)
	}
	if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return fmt.Errorf("kind/apiVersion are %q/%q, want Cluster/kind.x-k8s.io/v1alpha4", c.Kind, c.APIVersion)
	}
	v1alpha4.SetDefaultsCluster(&c)
	cp := 0
	for i, n := range c.Nodes {
		switch n.Role {
		case v1alpha4.ControlPlaneRole:
			cp++
		case v1alpha4.WorkerRole:
		default:
			return fmt.Errorf("nodes[%d]: invalid role %q", i, n.Role)
		}
		for j, m := range n.ExtraMounts {
			if m.HostPath == "" || m.ContainerPath == "" {
				return fmt.Errorf("nodes[%d].extraMounts[%d]: hostPath and containerPath are required", i, j)
			}
		}
	}
	if cp < 1 {
		return fmt.Errorf("no control-plane node")
	}
	return nil
}
