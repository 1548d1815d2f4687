#!/usr/bin/env bash
# What a kind node image holds besides Debian, built from Go modules into a cache keyed by
# version (research/kind-offline.md, "What a kind node image needs"): containerd, its shim and
# ctr at kind v0.33.0's pin, crictl (sigs.k8s.io/cri-tools v1.37.0: v1.36.0 is not served), the CNI
# plugins kind ships (host-local, loopback, ptp, portmap), kubelet and kubeadm from the same
# wrapper module as `make bins`, and a pause binary. Prints the bin directory.
#
# usage: node-bins.sh [K8S_VERSION]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "node-bins: $*" >&2; exit 2; }
CONTAINERD=v2.3.4 CRICTL=v1.37.0 CNI=v1.9.1
k8s_bin=$(DRA_HARNESS_PRINT_BIN_DIR=1 "$here/../local/build-bins.sh" "${1:-}")
K8S=$(basename "$(dirname "$k8s_bin")")
cache=${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-harness}
out="$cache/kind/node-bins/$K8S-containerd$CONTAINERD-crictl$CRICTL-cni$CNI"
stamp="$out/.complete"
if [ -f "$stamp" ]; then echo "node-bins: already built in $out (nothing to do)" >&2; echo "$out"; exit 0; fi
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off GOTOOLCHAIN=local
mkdir -p "$out"
start=$(date +%s)
step() { echo "node-bins: $* ($(( $(date +%s) - start ))s)" >&2; }

"$here/../local/build-bins.sh" "${1:-}" >&2   # the control plane and the wrapper module
src="$(dirname "$k8s_bin")/src"
minor=$(echo "$K8S" | cut -d. -f2)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
step "kubelet and kubeadm $K8S from $src (minutes cold)"
(cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$out/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm) >&2

step "containerd $CONTAINERD (about 4 minutes cold)"
GOBIN="$out" go install -trimpath -ldflags "-s -w" -tags "no_aufs no_zfs no_btrfs no_devmapper" \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD" \
  "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD" >&2

step "crictl $CRICTL"
GOBIN="$out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL" >&2

step "CNI plugins $CNI"
mkdir -p "$out/cni"
GOBIN="$out/cni" go install -trimpath -ldflags "-s -w" \
  "github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI" \
  "github.com/containernetworking/plugins/plugins/main/loopback@$CNI" \
  "github.com/containernetworking/plugins/plugins/main/ptp@$CNI" \
  "github.com/containernetworking/plugins/plugins/meta/portmap@$CNI" >&2

step "pause"
(cd "$here/pause" && go build -trimpath -ldflags "-s -w" -o "$out/pause" .) >&2
for b in kubelet kubeadm containerd containerd-shim-runc-v2 ctr crictl pause cni/host-local cni/loopback cni/ptp cni/portmap; do
  [ -x "$out/$b" ] || die "$b was not built"
done
touch "$stamp"
step "done -> $out"
echo "$out"
