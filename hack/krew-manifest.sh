#!/usr/bin/env bash
# Builds the kubectl-linkmesh release archives that krew installs, one per platform, into dist/, and writes
# plugins/linkmesh.yaml, the krew plugin manifest, with their URLs and sha256 sums. Run at a release
# (`make krew-manifest VERSION=v0.1.0`), upload dist/*.tar.gz to the GitHub release of that tag, then submit
# plugins/linkmesh.yaml to krew-index. The archives are reproducible (-trimpath, no VCS stamp, fixed tar
# metadata, gzip without a timestamp), so the sums can be checked by building the tag again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${1:?usage: hack/krew-manifest.sh VERSION (for example v0.1.0)}"
[[ "$VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "krew-manifest: $VERSION is not a version like v0.1.0" >&2; exit 1; }
REPO_URL="https://github.com/linkmesh/linkmesh-operator"
PLATFORMS=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64)
DIST="$ROOT/dist"
MANIFEST="$ROOT/plugins/linkmesh.yaml"

mkdir -p "$DIST" "$(dirname "$MANIFEST")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

platforms_yaml=""
for p in "${PLATFORMS[@]}"; do
  os="${p%/*}" arch="${p#*/}"
  archive="kubectl-linkmesh_${VERSION}_${os}_${arch}.tar.gz"
  echo "krew-manifest: building $archive" >&2
  mkdir -p "$work/$os-$arch"
  (cd "$ROOT" && CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath -buildvcs=false -ldflags "-s -w" \
    -o "$work/$os-$arch/kubectl-linkmesh" ./cmd/kubectl-linkmesh)
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/$os-$arch" -cf - kubectl-linkmesh |
    gzip -n -9 >"$DIST/$archive"
  sum="$(sha256sum "$DIST/$archive" | cut -d' ' -f1)"
  platforms_yaml+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $REPO_URL/releases/download/$VERSION/$archive
    sha256: $sum
    bin: kubectl-linkmesh
"
done

cat >"$MANIFEST" <<EOF
# The krew plugin manifest of kubectl-linkmesh $VERSION, written by hack/krew-manifest.sh from the archives
# it built (make krew-manifest VERSION=$VERSION). Do not edit: run it again at the next release.
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: linkmesh
spec:
  version: $VERSION
  homepage: $REPO_URL
  shortDescription: Enroll hosts into LinkMesh OpenTelemetry collector groups
  description: |
    Onboards OpenTelemetry collectors run by the upstream OpAMP supervisor into LinkMesh ManagedCollectors.
    enroll mints a single-use EnrollmentToken and prints the one-line command that installs and enrolls a
    host (or, with -o yaml, the host's supervisor.yaml); status shows the ManagedCollectors, their
    collectors and events; tokens and revoke manage EnrollmentTokens. Needs the LinkMesh operator in the
    cluster.
  platforms:
$platforms_yaml
EOF
# The heredoc leaves one blank line after the last platform.
sed -i -e '${/^$/d;}' "$MANIFEST"
echo "$MANIFEST"
