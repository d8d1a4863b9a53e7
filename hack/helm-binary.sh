#!/usr/bin/env bash
# Builds helm from the version pinned in hack/helm/go.mod (the Go module proxy is the only
# reachable source) and prints the path of the binary. Cached outside the work tree, keyed
# by version, so a second run on the same machine is instant. Safe to run concurrently:
# serialized by flock. The chart tests call this themselves when HELM is not set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODDIR="$ROOT/hack/helm"
HELM_VERSION="$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$MODDIR/go.mod")"
[ -n "$HELM_VERSION" ] || { echo "helm-binary: no helm.sh/helm/v3 requirement in $MODDIR/go.mod" >&2; exit 1; }
CACHE_ROOT="${LINKMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linkmesh}"
OUT="$CACHE_ROOT/helm/${HELM_VERSION}"

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9

if [ ! -x "$OUT/helm" ]; then
  echo "helm-binary: building helm ${HELM_VERSION} (about 4 min cold on 2 cores)" >&2
  (
    cd "$MODDIR"
    export GOWORK=off CGO_ENABLED=0
    go build -o "$OUT/helm.tmp" -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" helm.sh/helm/v3/cmd/helm
  )
  mv "$OUT/helm.tmp" "$OUT/helm"
fi
echo "$OUT/helm"
