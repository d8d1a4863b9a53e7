#!/usr/bin/env bash
# Stages the locally built e2e binaries (hack/e2e-binaries.sh) as an air-gap mirror for the operator's
# --mirror-dir, named and packaged as upstream releases them and as install-opamp.sh expects: the collector
# as otelcol-contrib in otelcol-contrib_<v>_linux_<arch>.tar.gz, the supervisor as the raw binary
# opampsupervisor_<v>_linux_<arch>, each with a .sha256 in sha256sum's format.
#
# Usage: hack/stage-mirror.sh DIR [OTEL_VERSION [SUPERVISOR_VERSION]]   (defaults: the installer's 0.153.0, 0.135.0)
# The versions only name the files: the binaries are the e2e builds (v0.149.0), whatever the names say.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${1:?usage: hack/stage-mirror.sh DIR [OTEL_VERSION [SUPERVISOR_VERSION]]}"
OTEL_VERSION="${2:-0.153.0}"
SUPERVISOR_VERSION="${3:-0.135.0}"
BIN="${LINKMESH_E2E_BIN:-$("$HERE/e2e-binaries.sh")}"
case "$(go env GOARCH)" in
amd64 | arm64) ARCH="$(go env GOARCH)" ;;
*) echo "stage-mirror: installers support amd64 and arm64 only, not $(go env GOARCH)" >&2; exit 1 ;;
esac

mkdir -p "$DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

collector="otelcol-contrib_${OTEL_VERSION}_linux_${ARCH}.tar.gz"
supervisor="opampsupervisor_${SUPERVISOR_VERSION}_linux_${ARCH}"
cp "$BIN/otelcol" "$work/otelcol-contrib"
tar -czf "$work/$collector" -C "$work" otelcol-contrib
cp "$BIN/opampsupervisor" "$work/$supervisor"
(cd "$work" && sha256sum "$collector" >"$collector.sha256" && sha256sum "$supervisor" >"$supervisor.sha256")
for f in "$collector" "$collector.sha256" "$supervisor" "$supervisor.sha256"; do
  mv -f "$work/$f" "$DIR/$f"
done
echo "$DIR"
