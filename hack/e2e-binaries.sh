#!/usr/bin/env bash
# Builds the upstream opampsupervisor (contrib v0.149.0) and a small collector distribution (collector
# v0.149.0 / v1.55.0 with the opamp extension) from the Go module proxy, and prints the directory that holds
# them. The versions are pinned in hack/e2e/go.mod, a module of its own so the collector tree stays out of the
# operator's go.mod. Cached outside the work tree, keyed by a hash of that go.mod/go.sum; serialized by flock.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MOD="$HERE/e2e"
CACHE_ROOT="${LINKMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linkmesh}"
KEY="$(cat "$MOD/go.mod" "$MOD/go.sum" "$MOD/otelcol/main.go" | sha256sum | cut -c1-16)"
OUT="$CACHE_ROOT/e2e/$KEY"

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9

log() { echo "e2e-binaries: $*" >&2; }
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

if [ ! -x "$OUT/opampsupervisor" ]; then
  log "building opampsupervisor"
  (cd "$MOD" && go build -trimpath -o "$OUT/opampsupervisor.tmp" github.com/open-telemetry/opentelemetry-collector-contrib/cmd/opampsupervisor)
  mv "$OUT/opampsupervisor.tmp" "$OUT/opampsupervisor"
fi
if [ ! -x "$OUT/otelcol" ]; then
  log "building the e2e collector"
  (cd "$MOD" && go build -trimpath -o "$OUT/otelcol.tmp" ./otelcol)
  mv "$OUT/otelcol.tmp" "$OUT/otelcol"
fi
echo "$OUT"
