# The front door: `make help` lists what there is.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS_BIN = $(shell bash -c 'source scripts/lib.sh && tools_bin_dir')
KUBECONFIG_LOCAL = $(CURDIR)/.cluster/kubeconfig
# Size of `make chaos`.
N ?= 1000
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Build the Kubernetes binaries, etcd and kubectl from their Go modules (cached under ~/.cache)
	@scripts/tools.sh >/dev/null

.PHONY: docker-up
docker-up: ## Make sure a Docker daemon answers and the local test images exist
	@scripts/docker-up.sh

.PHONY: cluster-up
cluster-up: tools ## Start etcd, kube-apiserver, kube-controller-manager, kube-scheduler; writes .cluster/kubeconfig
	@scripts/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local node and control plane and remove .cluster/
	@scripts/cluster-down.sh

.PHONY: node-up
node-up: cluster-up image ## Add a node to the local cluster: containerd, a CNI bridge, kube-proxy, a kubelet; imports the operator image
	@scripts/node-up.sh

.PHONY: node-down
node-down: ## Take the node away: its pods and containers, its processes, its bridge
	@scripts/node-down.sh

.PHONY: deploy
deploy: ## Install the operator's DaemonSet from deploy/ on KUBECONFIG's cluster, or the local one (make node-up)
	@KUBECONFIG=$${KUBECONFIG:-$(KUBECONFIG_LOCAL)} scripts/deploy.sh

.PHONY: undeploy
undeploy: ## Remove the operator, its CRDs and every task container, in the order that completes
	@KUBECONFIG=$${KUBECONFIG:-$(KUBECONFIG_LOCAL)} scripts/undeploy.sh

.PHONY: build
build: ## Build the taskrun binary
	cargo build --bins

.PHONY: image
image: docker-up ## Build the operator image taskrun-operator:dev (static binary, FROM scratch, non-root) and the firewall image taskrun-firewall:dev
	@scripts/image.sh

.PHONY: kind-up
kind-up: ## With kind installed: a kind cluster running the operator image and the hello example
	@scripts/kind.sh up

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	@scripts/kind.sh down

.PHONY: crds
crds: ## Regenerate crds/, deploy/admission.yaml and deploy/policies/ from the Rust types and rules
	cargo run --quiet -- crd > crds/taskrun.yaml
	cargo run --quiet -- crd taskrunpolicy > crds/taskrunpolicy.yaml
	cargo run --quiet -- admission > deploy/admission.yaml
	cargo run --quiet -- policy > deploy/policies/cluster.yaml

.PHONY: fmt
fmt: ## Format the code
	cargo fmt

.PHONY: lint
lint: ## Check formatting and clippy warnings
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings

.PHONY: check
check: ## Fast feedback without daemons: fmt, clippy, docs, shellcheck, unit and middle-tier tests
	@scripts/check.sh

.PHONY: test
test: ## Bring up Docker and the control plane, lint, and run every test
	@scripts/test.sh

.PHONY: chaos
chaos: tools docker-up ## Fault injection: N TaskRuns (default 1000) while agents, dockerd, API server and etcd fail; SEED= replays a run
	TASKRUN_CHAOS_RUNS=$(N) $(if $(SEED),TASKRUN_CHAOS_SEED=$(SEED)) \
		cargo test --test chaos -- --nocapture --exact chaos_stream_keeps_every_invariant

FUZZ_SECONDS ?= 300

.PHONY: fuzz
fuzz: ## Fuzz the `taskrun run` input parser for FUZZ_SECONDS (default 300); installs cargo-fuzz if missing
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

.PHONY: bench
bench: tools ## Measure the operator against raw Docker (release build): table, target/bench/results.json and SVG pictures
	@scripts/docker-up.sh
	@if [[ -z "$${KUBECONFIG:-}" ]]; then scripts/cluster-up.sh; fi
	cargo bench --bench operator -- $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: tools ## Smoke-run the bench in seconds (dev build, tiny sizes) to prove the harness works
	@scripts/docker-up.sh
	@if [[ -z "$${KUBECONFIG:-}" ]]; then scripts/cluster-up.sh; fi
	cargo bench --profile dev --bench operator -- --quick $(BENCH_ARGS)

.PHONY: demo
demo: ## The main job: run the example TaskRuns through the operator and show the outcome
	@scripts/demo.sh

.PHONY: down
down: ## Stop the demo controller and the control plane
	@scripts/demo.sh stop
	@scripts/cluster-down.sh
