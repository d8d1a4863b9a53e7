#!/usr/bin/env bash
# Builds kube-apiserver and etcd for envtest from the Go module proxy (setup-envtest's
# download site is not reachable) and prints the directory that holds them, for
# KUBEBUILDER_ASSETS. Builds are cached outside the work tree, keyed by version, so a
# second run on the same machine is instant. Safe to run concurrently: serialized by flock.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
CACHE_ROOT="${LINKMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linkmesh}"
OUT="$CACHE_ROOT/envtest/k8s-${KUBE_VERSION}-etcd-${ETCD_VERSION}"

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9

log() { echo "envtest-binaries: $*" >&2; }
# shellcheck source=hack/lib/kube.sh
. "$(dirname "$0")/lib/kube.sh"

build_kube_apiserver() {
  [ -x "$OUT/kube-apiserver" ] && return 0
  log "building kube-apiserver ${KUBE_VERSION} (about 7 min cold on 2 cores)"
  build_kube "$KUBE_VERSION" "$OUT" kube-apiserver
}

build_etcd() {
  [ -x "$OUT/etcd" ] && return 0
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  log "building etcd ${ETCD_VERSION}"
  (
    cd "$work"
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
    go mod init linkmesh.local/etcd-wrapper >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    go build -o "$OUT/etcd.tmp" -ldflags "-s -w" go.etcd.io/etcd/server/v3
  )
  mv "$OUT/etcd.tmp" "$OUT/etcd"
}

build_etcd
build_kube_apiserver
echo "$OUT"
