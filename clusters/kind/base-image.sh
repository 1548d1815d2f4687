#!/usr/bin/env bash
# A Debian bookworm base image made without a registry: debootstrap from the Debian mirror (which
# apt reaches here), imported into the local engine. The offline driver image builds on it with
# Debian's python3 (3.11) and wheels from PyPI. research/kind-offline.md step 4.
#
# usage: base-image.sh            prints the image tag on stdout (progress on stderr)
# env:   DEBIAN_MIRROR            (default http://deb.debian.org/debian)
#        DRA_HARNESS_CACHE        the rootfs tarball is cached under it, by content key
set -euo pipefail
die() { echo "base-image: $*" >&2; exit 2; }

PKGS="python3,python3-venv,umockdev,libumockdev0,pci.ids,ca-certificates"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-harness}/kind
key=$(echo "bookworm minbase $PKGS v1" | sha256sum | cut -c1-12)
tag="localhost/dra-harness-base:bookworm-$key"

command -v docker >/dev/null || die "docker is not on PATH (dra-harness engine up)"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base-image: $tag is already in the engine (nothing to do)" >&2
  echo "$tag"; exit 0
fi
tar="$cache/base-bookworm-$key.tar"
if [ ! -f "$tar" ]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  mkdir -p "$cache"
  root=$(mktemp -d /var/tmp/dra-harness-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  start=$(date +%s)
  echo "base-image: debootstrap bookworm ($PKGS) from $mirror (about 1.5 minutes)" >&2
  debootstrap --variant=minbase --include="$PKGS" bookworm "$root" "$mirror" 2>&1 |
    while IFS= read -r line; do case "$line" in I:\ Retrieving*|I:\ Validating*) ;; *) echo "base-image: $line" >&2 ;; esac; done
  [ -x "$root/usr/bin/python3" ] || die "debootstrap did not produce python3"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
  tar -C "$root" -c . > "$tar.tmp" && mv "$tar.tmp" "$tar"
  echo "base-image: rootfs $(du -h "$tar" | cut -f1) in $(( $(date +%s) - start ))s -> $tar" >&2
fi
docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$tar" "$tag" >/dev/null
echo "base-image: imported $tag" >&2
echo "$tag"
