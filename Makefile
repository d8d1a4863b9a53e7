# LinkMesh operator. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

CONTROLLER_GEN := go tool -modfile=hack/tools/go.mod controller-gen
# kube-apiserver and etcd for envtest, built from the Go module proxy and cached outside the tree.
ENVTEST_ASSETS = $(shell hack/envtest-binaries.sh)
GO_TEST_FLAGS ?=

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate CRDs and RBAC.
	$(CONTROLLER_GEN) crd rbac:roleName=linkmesh-operator paths=./... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: build
build: generate ## Build the manager and the agent init.
	go build -o bin/manager ./cmd/manager
	CGO_ENABLED=0 go build -o bin/linkmesh-agent-init ./cmd/agent-init

.PHONY: envtest
envtest: ## Build (or reuse) kube-apiserver and etcd for the tests; prints their directory.
	@hack/envtest-binaries.sh

.PHONY: test
test: ## Run all unit and envtest suites against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test $(GO_TEST_FLAGS) ./...

GOLANGCI_LINT := go tool -modfile=hack/lint/go.mod golangci-lint

.PHONY: lint
lint: ## go vet, then golangci-lint (pinned in hack/lint/go.mod) with .golangci.yml.
	go vet ./...
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests ## Regenerate, then fail on any difference from what is committed.
	go mod tidy && (cd hack/tools && go mod tidy) && (cd hack/lint && go mod tidy)
	@git diff --exit-code -- . || { echo "generated files are stale: run make generate manifests and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api config go.mod go.sum hack/tools hack/lint)" || { git status --porcelain -- api config; echo "untracked generated files"; exit 1; }

.PHONY: run
run: ## Run the operator against the cluster of the current kubeconfig.
	go run ./cmd/manager --metrics-bind-address=0 --health-probe-bind-address=:8081
