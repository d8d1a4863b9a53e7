# shellcheck shell=bash
# build_kube VERSION OUTDIR CMD... builds Kubernetes commands (kube-apiserver, kubelet, ...) of VERSION from
# the Go module proxy into OUTDIR, skipping those already there. k8s.io/kubernetes cannot be built with `go
# install` (it replaces its staging modules with local paths), so a throwaway wrapper module requires it and
# replaces each staging module it requires at v0.0.0 with the published v0.<minor>.<patch>. The -X ldflags
# make /version and --version report VERSION instead of v0.0.0-master.
build_kube() {
  local version="$1" out="$2"
  shift 2
  local missing=() c
  for c in "$@"; do
    [ -x "$out/$c" ] || missing+=("$c")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local work minor mod staging
  work="$(mktemp -d)"
  minor="${version#v1.}"; minor="${minor%%.*}"
  staging="v0.${version#v1.}"
  (
    trap 'rm -rf "$work"' EXIT
    cd "$work" || exit 1
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
    go mod init linkmesh.local/kube-wrapper >/dev/null 2>&1
    mod="$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    go mod edit -require="k8s.io/kubernetes@${version}"
    grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$mod" | awk '{print $1}' | while read -r m; do
      go mod edit -replace="${m}=${m}@${staging}"
    done
    for c in "${missing[@]}"; do
      go build -o "$out/$c.tmp" \
        -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}" \
        "k8s.io/kubernetes/cmd/$c"
      mv "$out/$c.tmp" "$out/$c"
    done
  )
}
