#!/usr/bin/env bash
# Builds the images a local containerd runs, as docker-archive tarballs for `ctr -n k8s.io images import`:
# there is no Docker engine here and no registry to pull from. Usage: hack/images.sh OUTDIR. Prints one line
# per image, "<name> <tag> <tarball>"; logs go to stderr.
#   pause     linkmesh.local/pause:3.10                the pod sandbox (hack/images/pause), stands in for registry.k8s.io/pause
#   operator  linkmesh.local/linkmesh-operator:dev     as images/operator/Dockerfile, without distroless
#   agent     linkmesh.local/otelcol-agent:dev         as images/agent/Dockerfile, with the e2e supervisor and collector
# Each image is one layer of static binaries assembled by hack/images (go-containerregistry), reproducibly: the
# same sources give the same tarballs. That tool is built once into a cache outside the work tree, keyed by a
# hash of its sources; the image binaries go to OUTDIR/bin. Serialized by flock, per OUTDIR and per cache entry.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD="$ROOT/hack/images"
CACHE_ROOT="${LINKMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linkmesh}"
KEY="$(cat "$MOD/go.mod" "$MOD/go.sum" "$MOD"/*.go | sha256sum | cut -c1-16)"
TOOL_DIR="$CACHE_ROOT/images/$KEY"

mkdir -p "$1/bin" "$TOOL_DIR"
OUTDIR="$(cd "$1" && pwd)"
exec 9>"$OUTDIR/.lock"
flock 9

log() { echo "images: $*" >&2; }
# Static, like the Dockerfiles' builds: the images have no libc.
export CGO_ENABLED=0
GO_BUILD=(go build -trimpath -ldflags "-s -w")

# build_tool builds imagebuild into the cache unless it is there; the lock is released when the subshell ends.
build_tool() {
  (
    exec 8>"$TOOL_DIR/.lock"
    flock 8
    [ -x "$TOOL_DIR/imagebuild" ] && exit 0
    log "building imagebuild"
    cd "$MOD"
    GOWORK=off GOFLAGS=-mod=mod go build -trimpath -o "$TOOL_DIR/imagebuild.tmp" .
    mv "$TOOL_DIR/imagebuild.tmp" "$TOOL_DIR/imagebuild"
  )
}

# image NAME TAG [IMAGEBUILD FLAGS...] writes OUTDIR/NAME.tar and prints its line.
image() {
  local name="$1" tag="$2" out="$OUTDIR/$1.tar" built
  shift 2
  built="$("$TOOL_DIR/imagebuild" -tag "$tag" -out "$out" "$@")"
  log "$name: $built ($(du -h "$out" | cut -f1))"
  echo "$name $tag $out"
}

build_tool

log "building pause, manager, linkmesh-agent-init into $OUTDIR/bin"
(cd "$MOD" && GOWORK=off GOFLAGS=-mod=mod "${GO_BUILD[@]}" -o "$OUTDIR/bin/pause" ./pause)
(cd "$ROOT" && "${GO_BUILD[@]}" -o "$OUTDIR/bin/manager" ./cmd/manager)
(cd "$ROOT" && "${GO_BUILD[@]}" -o "$OUTDIR/bin/linkmesh-agent-init" ./cmd/agent-init)

log "the e2e supervisor and collector (hack/e2e-binaries.sh)"
E2E_BIN="$("$ROOT/hack/e2e-binaries.sh")"

# 65535 as the upstream pause image; the sandbox needs no privilege.
image pause linkmesh.local/pause:3.10 \
  -file "/pause=$OUTDIR/bin/pause" -entrypoint /pause -user 65535:65535

# Numeric user, so the kubelet can check runAsNonRoot without /etc/passwd.
image operator linkmesh.local/linkmesh-operator:dev \
  -file "/manager=$OUTDIR/bin/manager" -entrypoint /manager -user 65532:65532 -dir /tmp:1777

# Root: the supervisor writes its storage directory, a hostPath that the kubelet creates as root. The CA
# bundle lets the collector export over TLS, as the upstream image does.
CA=/etc/ssl/certs/ca-certificates.crt
CA_FILE=()
if [ -f "$CA" ]; then CA_FILE=(-file "$CA=$CA"); else log "no $CA on this host: the agent image has no CA bundle"; fi
image agent linkmesh.local/otelcol-agent:dev \
  -file "/linkmesh-agent-init=$OUTDIR/bin/linkmesh-agent-init" \
  -file "/opampsupervisor=$E2E_BIN/opampsupervisor" \
  -file "/otelcol=$E2E_BIN/otelcol" \
  "${CA_FILE[@]}" \
  -entrypoint /linkmesh-agent-init -entrypoint=-- -entrypoint /opampsupervisor \
  -cmd=--config -cmd /etc/otelcol-supervisor/supervisor.yaml \
  -user 0 -dir /tmp:1777
