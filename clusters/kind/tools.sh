#!/usr/bin/env bash
# Build the tools the kind path is validated with, from Go modules, into a versioned cache
# outside the repo (a second call is a no-op): helm (chart rendering), actionlint (workflow),
# and kind's own config checker (./checkconfig, strict decoding with kind's v1alpha4 types).
# and the kind CLI itself.
# usage: tools.sh [helm|actionlint|kindcheck|kind|all]   prints the bin directory
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELM_VERSION=v3.22.0
ACTIONLINT_VERSION=v1.7.12
KIND_VERSION=v0.33.0
cache=${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-harness}/tools
bin="$cache/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod

build() { # name version command...
  local name=$1 version=$2; shift 2
  if [ -x "$bin/$name-$version" ]; then return; fi
  echo "tools: building $name $version (first time only)" >&2
  "$@" >&2
}
want=${1:-all}
if [ "$want" = all ] || [ "$want" = helm ]; then
  build helm $HELM_VERSION env GOBIN="$cache/gobin-helm" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  [ -x "$bin/helm-$HELM_VERSION" ] || mv "$cache/gobin-helm/helm" "$bin/helm-$HELM_VERSION"
fi
if [ "$want" = all ] || [ "$want" = actionlint ]; then
  build actionlint $ACTIONLINT_VERSION env GOBIN="$cache/gobin-al" go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  [ -x "$bin/actionlint-$ACTIONLINT_VERSION" ] || mv "$cache/gobin-al/actionlint" "$bin/actionlint-$ACTIONLINT_VERSION"
fi
if [ "$want" = all ] || [ "$want" = kind ]; then
  build kind $KIND_VERSION env GOBIN="$cache/gobin-kind" go install "sigs.k8s.io/kind@$KIND_VERSION"
  [ -x "$bin/kind-$KIND_VERSION" ] || mv "$cache/gobin-kind/kind" "$bin/kind-$KIND_VERSION"
fi
if [ "$want" = all ] || [ "$want" = kindcheck ]; then
  if [ ! -x "$bin/kindcheck-$KIND_VERSION" ]; then
    echo "tools: building kindcheck against sigs.k8s.io/kind $KIND_VERSION (first time only)" >&2
    work="$cache/src/kindcheck-$KIND_VERSION"
    mkdir -p "$work"
    cp "$here/checkconfig/main.go" "$work/main.go"
    (cd "$work" && [ -f go.mod ] || go mod init dra-harness.local/kindcheck >/dev/null 2>&1
     cd "$work" && go get "sigs.k8s.io/kind@$KIND_VERSION" >/dev/null 2>&1 && go build -o "$bin/kindcheck-$KIND_VERSION" .) >&2
  fi
fi
echo "$bin"
