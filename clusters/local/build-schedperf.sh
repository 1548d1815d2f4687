#!/usr/bin/env bash
# Build upstream's scheduler_perf DRA benchmark (k8s.io/kubernetes/test/integration/scheduler_perf/dra)
# as a test binary, from the same wrapper module and version as `make bins`, into the same cache
# (research/perf-sideby.md: about 7 minutes and 3 GB of memory on 2 cores, once per version).
# No -trimpath: its in-process API server finds its test data through the source paths
# compiled in ("can't construct an absolute path" otherwise).
# It also copies the package's performance-config.yaml and templates/ next to the binary: the
# binary reads them from its working directory.
#
# usage: build-schedperf.sh [VERSION]     prints the directory holding scheduler_perf_dra.test
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(DRA_HARNESS_PRINT_BIN_DIR=1 "$here/build-bins.sh" "${1:-}")
"$here/build-bins.sh" "${1:-}" >&2          # the wrapper module (and the control plane) first
version=$(basename "$(dirname "$bin")")
src=$(dirname "$bin")/src
out=$(dirname "$bin")/schedperf
stamp="$out/.complete"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ] && [ -x "$out/scheduler_perf_dra.test" ]; then
  echo "$out"; exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off GOTOOLCHAIN=local
echo "build-schedperf: compiling k8s.io/kubernetes/test/integration/scheduler_perf/dra at $version (about 7 minutes cold)" >&2
start=$(date +%s)
(cd "$src" && go test -c -o "$out/scheduler_perf_dra.test" k8s.io/kubernetes/test/integration/scheduler_perf/dra) >&2
pkgdir=$(cd "$src" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/integration/scheduler_perf/dra
rm -rf "$out/config"; mkdir -p "$out/config"
cp -r "$pkgdir/performance-config.yaml" "$pkgdir/templates" "$out/config/"
chmod -R u+w "$out/config"
echo "build-schedperf: done in $(( $(date +%s) - start ))s -> $out" >&2
echo "$version" > "$stamp"
echo "$out"
