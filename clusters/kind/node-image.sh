#!/usr/bin/env bash
# A kind node image made without a registry (issue 11 step 2; research/kind-offline.md):
#   1. Debian bookworm by debootstrap with kind's base packages (cached rootfs, by content key);
#   2. kind v0.33.0's own base files (images/base/files, from the kind module), its unit pruning
#      and enabled services, as its base Dockerfile does;
#   3. containerd/ctr/shim, crictl, CNI plugins, kubelet, kubeadm (node-bins.sh), kubectl (make bins),
#      Debian's runc;
#   4. the component images kubeadm runs (kube-apiserver, kube-controller-manager,
#      kube-scheduler, etcd, pause), one static binary each, made here and imported into the
#      node's containerd. No kube-proxy (kubeProxyMode: none), no kindnetd (a static CNI conflist
#      per node), no CoreDNS (skipped at init).
# usage: node-image.sh [K8S_VERSION]     prints the image tag; a second call is a no-op
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "node-image: $*" >&2; exit 2; }
command -v docker >/dev/null || die "docker is not on PATH (dra-harness engine up)"
docker version >/dev/null 2>&1 || die "no Docker engine answers (dra-harness engine up starts one)"
start=$(date +%s)
step() { echo "node-image: $* ($(( $(date +%s) - start ))s)" >&2; }

bins=$("$here/node-bins.sh" "${1:-}")
k8s_bin=$(DRA_HARNESS_PRINT_BIN_DIR=1 "$here/../local/build-bins.sh" "${1:-}")
K8S=$(basename "$(dirname "$k8s_bin")")
KIND_FILES=$(cd /tmp && GOWORK=off go mod download -json sigs.k8s.io/kind@v0.33.0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
files="$KIND_FILES/images/base/files"
[ -d "$files" ] || die "kind's base files were not found in the module cache ($files)"
PKGS="systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,fuse-overlayfs,bash,ca-certificates,jq,procps,runc,socat,ebtables"
key=$(cat "$0" "$here/node-bins.sh" | sha256sum | cut -c1-12)
tag="localhost/dra-harness-kind-node:$K8S-$key"
if docker image inspect "$tag" >/dev/null 2>&1; then step "$tag is already in the engine (nothing to do)"; echo "$tag"; exit 0; fi
cache=${DRA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-harness}/kind
mkdir -p "$cache"
base_key=$(echo "bookworm minbase $PKGS v1" | sha256sum | cut -c1-12)
base_tar="$cache/node-base-bookworm-$base_key.tar"
work=$(mktemp -d /var/tmp/dra-harness-node.XXXXXX)
trap 'rm -rf "$work"; docker rm -f "dra-harness-node-build-$$" >/dev/null 2>&1 || true' EXIT
root="$work/root"
mkdir -p "$root"
if [ ! -f "$base_tar" ]; then
  step "debootstrap bookworm with kind's packages (about 2 minutes)"
  debootstrap --variant=minbase --include="$PKGS" bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" 2>&1 |
    while IFS= read -r l; do case "$l" in I:\ Retrieving*|I:\ Validating*) ;; *) echo "node-image: $l" >&2 ;; esac; done
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
  tar -C "$root" -c . > "$base_tar.tmp" && mv "$base_tar.tmp" "$base_tar"
else
  step "node base rootfs from the cache"
  tar -C "$root" -xf "$base_tar"
fi

step "kind's base files and services"
cp -r "$files/usr" "$files/kind" "$files/etc" "$root/"
mkdir -p "$root/LICENSES" && cp "$files/LICENSES/"* "$root/LICENSES/"
chmod -R u+w "$root/usr/local/bin" "$root/kind" "$root/etc/systemd" "$root/etc/containerd" 2>/dev/null || true
chmod 0755 "$root"/usr/local/bin/* "$root/kind" "$root/kind/bin" "$root"/kind/bin/*
find "$root/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
      "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
      "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> "$root/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "$root/sbin/init"
chroot "$root" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$root" systemctl mask systemd-binfmt.service >/dev/null 2>&1
mkdir -p "$root/etc/kubernetes/manifests" "$root/opt/cni/bin" "$root/etc/cni/net.d"

step "binaries"
install -m 0755 "$bins"/containerd "$bins"/containerd-shim-runc-v2 "$bins"/ctr "$bins"/crictl "$root/usr/local/bin/"
install -m 0755 "$bins"/kubelet "$bins"/kubeadm "$k8s_bin"/kubectl "$root/usr/bin/"
install -m 0755 "$bins"/cni/* "$root/opt/cni/bin/"
ln -sf /usr/sbin/runc "$root/usr/local/sbin/runc"
"$bins/ctr" oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' > "$root/etc/containerd/cri-base.json"
echo "$K8S" > "$root/kind/version"

step "component images ($K8S)"
images="$root/kind/images"
mkdir -p "$images"
etcd_tag=$("$bins/kubeadm" config images list --kubernetes-version "$K8S" 2>/dev/null | awk -F: '/\/etcd:/{print $2}')
pause_tag=$("$bins/kubeadm" config images list --kubernetes-version "$K8S" 2>/dev/null | awk -F: '/\/pause:/{print $2}')
one_binary_image() {  # NAME BINARY TAG: a one-layer image holding the static binary in /usr/local/bin
  local name=$1 bin=$2 ref=$3 d="$work/img-$1"
  mkdir -p "$d/usr/local/bin"
  cp "$bin" "$d/usr/local/bin/$name"
  tar -C "$d" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c "ENTRYPOINT [\"/usr/local/bin/$name\"]" - "$ref" >/dev/null
  docker save "$ref" -o "$images/$name.tar"
}
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  one_binary_image "$c" "$k8s_bin/$c" "registry.k8s.io/$c:$K8S"
done
one_binary_image etcd "$k8s_bin/etcd" "registry.k8s.io/etcd:$etcd_tag"
one_binary_image pause "$bins/pause" "registry.k8s.io/pause:$pause_tag"
[ "$pause_tag" = 3.10 ] || one_binary_image pause-kind "$bins/pause" "registry.k8s.io/pause:3.10"  # kind's sandbox_image

step "assembling: import into the node's containerd, commit"
tar -C "$root" -c . | docker import - "$tag-rootfs" >/dev/null
name="dra-harness-node-build-$$"
docker run -d --name "$name" --privileged --entrypoint /bin/sleep "$tag-rootfs" infinity >/dev/null
docker exec "$name" bash -c 'containerd >/tmp/containerd.log 2>&1 & for i in $(seq 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  for t in /kind/images/*.tar; do ctr -n k8s.io images import --label=io.cri-containerd.pinned=pinned --no-unpack --digests "$t" >/dev/null; done
  ctr -n k8s.io images ls -q; kill %1; wait' >&2
docker exec "$name" rm -rf /kind/images
docker commit "$name" "$tag-committed" >/dev/null
docker rm -f "$name" >/dev/null
# docker 20.10 refuses STOPSIGNAL in `commit -c` (and `import -c`): a two-line build adds it
printf 'FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n' \
  "$tag-committed" | DOCKER_BUILDKIT=0 docker build -q -t "$tag" - >/dev/null
docker rmi "$tag-committed" "$tag-rootfs" >/dev/null
step "built $tag"
echo "$tag"
