#!/usr/bin/env bash
# Builds what a one-node Kubernetes on this machine needs, all from the Go module proxy, and prints the
# directory that holds them: kubelet, kube-controller-manager, kube-scheduler and kubectl (same wrapper as
# envtest's kube-apiserver), containerd v2 with its runc shim, runc with seccomp (cgo, static; needs gcc and
# Debian's libseccomp-dev), and the bridge, host-local and loopback CNI plugins. Cached outside the work tree,
# keyed by versions; serialized by flock. Used by the real-node suite (test/realnode, test/infrastructure/onenode).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.2}"
CNI_VERSION="${CNI_VERSION:-v1.10.0}"
CACHE_ROOT="${LINKMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linkmesh}"
OUT="$CACHE_ROOT/node/k8s-${KUBE_VERSION}-containerd-${CONTAINERD_VERSION}-runc-${RUNC_VERSION}-cni-${CNI_VERSION}"

mkdir -p "$OUT/cni"
exec 9>"$OUT/.lock"
flock 9

log() { echo "node-binaries: $*" >&2; }
# shellcheck source=hack/lib/kube.sh
. "$(dirname "$0")/lib/kube.sh"

# go_build_module MODULE@VERSION OUT PKG [GO BUILD ARGS...] builds PKG of a module that `go install` refuses
# (replace directives) from a throwaway wrapper module that requires it.
go_build_module() {
  local modver="$1" out="$2" pkg="$3"
  shift 3
  [ -x "$out" ] && return 0
  local work
  work="$(mktemp -d)"
  (
    trap 'rm -rf "$work"' EXIT
    cd "$work" || exit 1
    export GOWORK=off GOFLAGS=-mod=mod
    go mod init linkmesh.local/wrapper >/dev/null 2>&1
    go mod edit -require="$modver"
    go build -trimpath -o "$out.tmp" "$@" "$pkg"
    mv "$out.tmp" "$out"
  )
}

log "kubelet, kube-controller-manager, kube-scheduler, kubectl ${KUBE_VERSION} (about 6 min cold)"
build_kube "$KUBE_VERSION" "$OUT" kubelet kube-controller-manager kube-scheduler kubectl

log "containerd ${CONTAINERD_VERSION}"
CGO_ENABLED=0 go_build_module "github.com/containerd/containerd/v2@${CONTAINERD_VERSION}" "$OUT/containerd" \
  github.com/containerd/containerd/v2/cmd/containerd -ldflags "-s -w"
CGO_ENABLED=0 go_build_module "github.com/containerd/containerd/v2@${CONTAINERD_VERSION}" "$OUT/containerd-shim-runc-v2" \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 -ldflags "-s -w"
CGO_ENABLED=0 go_build_module "github.com/containerd/containerd/v2@${CONTAINERD_VERSION}" "$OUT/ctr" \
  github.com/containerd/containerd/v2/cmd/ctr -ldflags "-s -w"

log "runc ${RUNC_VERSION} with seccomp"
if ! [ -e /usr/include/seccomp.h ]; then
  echo "node-binaries: runc needs libseccomp-dev: apt-get install -y gcc libseccomp-dev" >&2
  exit 1
fi
CGO_ENABLED=1 go_build_module "github.com/opencontainers/runc@${RUNC_VERSION}" "$OUT/runc" \
  github.com/opencontainers/runc -tags "seccomp netgo osusergo" -ldflags "-s -w -extldflags -static"

log "CNI plugins ${CNI_VERSION}"
for p in main/bridge ipam/host-local main/loopback; do
  CGO_ENABLED=0 go_build_module "github.com/containernetworking/plugins@${CNI_VERSION}" "$OUT/cni/${p##*/}" \
    "github.com/containernetworking/plugins/plugins/$p" -ldflags "-s -w"
done

echo "$OUT"
