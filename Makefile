# LinkMesh operator. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

CONTROLLER_GEN := go tool -modfile=hack/tools/go.mod controller-gen
# kube-apiserver and etcd for envtest, built from the Go module proxy and cached outside the tree.
ENVTEST_ASSETS = $(shell hack/envtest-binaries.sh)
# helm, built from the version pinned in hack/helm/go.mod and cached outside the tree; the chart tests use it.
HELM = $(shell hack/helm-binary.sh)
GO_TEST_FLAGS ?=
# The operator image that `make docker-build` builds.
IMG ?= ghcr.io/linkmesh/linkmesh-operator:$(shell awk '$$1 == "appVersion:" {gsub(/"/, "", $$2); print $$2}' charts/linkmesh-operator/Chart.yaml)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate CRDs and RBAC, and copy them into the chart.
	$(CONTROLLER_GEN) crd rbac:roleName=linkmesh-operator paths=./... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	hack/chart-sync.sh

.PHONY: build
build: generate ## Build the manager and the agent init.
	go build -o bin/manager ./cmd/manager
	CGO_ENABLED=0 go build -o bin/linkmesh-agent-init ./cmd/agent-init

.PHONY: envtest
envtest: ## Build (or reuse) kube-apiserver and etcd for the tests; prints their directory.
	@hack/envtest-binaries.sh

.PHONY: test
test: ## Run all unit and envtest suites against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HELM="$(HELM)" go test $(GO_TEST_FLAGS) ./...
	cd hack/images && GOWORK=off GOFLAGS=-mod=mod go test $(GO_TEST_FLAGS) ./...

# How long `make fuzz` runs each fuzz target: a count of inputs (Nx), not a duration. With a
# duration, Go 1.26's fuzz coordinator can fail a clean run with "context deadline exceeded" at
# the deadline (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 20000x

.PHONY: fuzz
fuzz: ## Run every fuzz target (func FuzzXxx in a _test.go) for FUZZTIME; a failing input lands in its testdata/fuzz.
	@# go test -fuzz takes one target per run, so one run per target; found by name, so none is forgotten.
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' internal cmd test 2>/dev/null | sort); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "== $$t (./$$(dirname "$$f"))"; \
			go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) "./$$(dirname "$$f")"; \
		done; \
	done

GOLANGCI_LINT := go tool -modfile=hack/lint/go.mod golangci-lint

# shellcheck: the installer served to hosts (POSIX sh, every finding), and the bash scripts of the repository
# (warnings and errors).
INSTALLER_SCRIPT := internal/downloads/install-opamp.sh
REPO_SCRIPTS := $(wildcard hack/*.sh hack/lib/*.sh) .ci/run

.PHONY: lint
lint: ## go vet, golangci-lint (pinned in hack/lint/go.mod) with .golangci.yml, and shellcheck (Debian package).
	go vet -tags e2e,realnode,browser,replicas ./...
	$(GOLANGCI_LINT) run --build-tags e2e,realnode,browser,replicas ./...
	@command -v shellcheck >/dev/null || { echo "shellcheck is missing: apt-get install shellcheck"; exit 1; }
	shellcheck --shell=sh $(INSTALLER_SCRIPT)
	shellcheck --severity=warning $(REPO_SCRIPTS)

.PHONY: verify
verify: generate manifests ## Regenerate, then fail on any difference from what is committed.
	go mod tidy && (cd hack/tools && go mod tidy) && (cd hack/lint && go mod tidy) && (cd hack/helm && go mod tidy) && (cd hack/images && go mod tidy)
	@# contrib's testbed module, a test-only dependency of the supervisor, is not served: -e tolerates it.
	cd hack/e2e && GOFLAGS=-mod=mod go mod tidy -e 2>/dev/null
	@git diff --exit-code -- . || { echo "generated files are stale: run make generate manifests and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api config charts go.mod go.sum hack/tools hack/lint hack/helm hack/e2e hack/images)" || { git status --porcelain -- api config charts; echo "untracked generated files"; exit 1; }

# Flags of the fleet benchmark (test/bench), e.g. BENCH_FLAGS="-n 2000 -scenarios fleet -pprof .pprof".
BENCH_FLAGS ?=

.PHONY: bench
bench: ## Fleet benchmark: 1,000/5,000/10,000 collectors against the operator and a bare OpAMP server, enrollment, restart storm, replicas, rollout, flood.
	go build -o bin/bench ./test/bench
	go build -o bin/manager ./cmd/manager
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" bin/bench -manager bin/manager $(BENCH_FLAGS)

.PHONY: bench-smoke
bench-smoke: ## The benchmark's correctness checks with 500 collectors (CI); asserts no timing.
	go build -o bin/bench ./test/bench
	go build -o bin/manager ./cmd/manager
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" bin/bench -manager bin/manager -smoke -n 500 -scenarios fleet $(BENCH_FLAGS)

.PHONY: test-replicas
test-replicas: ## Two and three manager processes against one API server: config, status, Events, kill -9, SIGTERM drain.
	go build -o bin/manager ./cmd/manager
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" LINKMESH_MANAGER="$(CURDIR)/bin/manager" go test -tags replicas -count=1 -v -timeout 10m ./test/replicas/

.PHONY: run
run: ## Run the operator against the cluster of the current kubeconfig.
	go run ./cmd/manager --metrics-bind-address=0 --health-probe-bind-address=:8081

CHART := charts/linkmesh-operator

.PHONY: helm
helm: ## Build (or reuse) helm from the version pinned in hack/helm/go.mod; prints its path.
	@hack/helm-binary.sh

.PHONY: helm-sync
helm-sync: ## Copy the CRDs and RBAC rules from config/ into the chart (make manifests does it too).
	hack/chart-sync.sh

.PHONY: helm-lint
helm-lint: ## helm lint --strict the chart with its defaults and with every ci/*-values.yaml.
	@helm="$(HELM)"; set -e; "$$helm" lint --strict $(CHART); \
	for f in $(CHART)/ci/*-values.yaml; do "$$helm" lint --strict $(CHART) -f "$$f"; done

.PHONY: docker-build
docker-build: ## Build the operator image (IMG=...; needs a Docker engine, none here).
	docker build -f images/operator/Dockerfile -t $(IMG) .

E2E_BIN = $(shell hack/e2e-binaries.sh)

# The version of the e2e supervisor, pinned in hack/e2e/go.mod: the demo's mirror names it truly.
E2E_SUPERVISOR_VERSION = $(shell awk '$$1 ~ /cmd\/opampsupervisor$$/ {sub(/^v/, "", $$2); print $$2}' hack/e2e/go.mod)

.PHONY: demo
demo: plugin ## The operator on an embedded local control plane, with config/samples, a node played by the real supervisor and an enrolled host.
	go build -o bin/demo ./cmd/demo
	LINKMESH_E2E_BIN="$(E2E_BIN)" hack/stage-mirror.sh .demo/mirror 0.153.0 $(E2E_SUPERVISOR_VERSION) >/dev/null
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" bin/demo --bin "$(E2E_BIN)" --mirror-dir .demo/mirror --host-supervisor-version $(E2E_SUPERVISOR_VERSION)

.PHONY: plugin
plugin: ## Build the kubectl plugin, bin/kubectl-linkmesh (put it on PATH for `kubectl linkmesh`).
	go build -o bin/kubectl-linkmesh ./cmd/kubectl-linkmesh

# The release the krew manifest is written for; the chart and the operator are released together.
VERSION ?= v$(shell awk '$$1 == "appVersion:" {gsub(/"/, "", $$2); print $$2}' charts/linkmesh-operator/Chart.yaml)

.PHONY: krew-manifest
krew-manifest: ## At a release: build the plugin's archives into dist/ and write plugins/linkmesh.yaml for VERSION.
	hack/krew-manifest.sh $(VERSION)

.PHONY: mirror
mirror: ## Stage the e2e supervisor and collector as an air-gap mirror in .mirror/ (serve it with --mirror-dir=.mirror).
	hack/stage-mirror.sh .mirror

.PHONY: test-realnode
test-realnode: ## As root: helm install and real DaemonSet pods on a one-node Kubernetes (kubelet, containerd) on loopback.
	@# The suite builds what it needs (node binaries, images) itself, after checking it runs as root.
	go test -tags realnode -count=1 -v -timeout 20m ./test/realnode/

.PHONY: images
images: ## Build the pause, operator and agent images as docker-archive tarballs in .images/, without Docker.
	hack/images.sh .images

.PHONY: test-browser
test-browser: ## The web console in headless chromium (Debian's chromium; CONSOLE_SCREENSHOTS=DIR keeps screenshots).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test -tags browser -count=1 -v -timeout 10m ./test/browser/

.PHONY: test-e2e
test-e2e: ## End-to-end tests with the real upstream supervisor and collector (and two manager replicas for one).
	go build -o bin/manager ./cmd/manager
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" LINKMESH_E2E_BIN="$(E2E_BIN)" LINKMESH_MANAGER="$(CURDIR)/bin/manager" go test -tags e2e -count=1 -v -timeout 20m ./test/e2e/
