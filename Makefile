# eventfold — `make up` starts the local stack and the services, `make test` runs every check.
SHELL := /bin/bash
EVENTFOLD_CACHE ?= $(HOME)/.cache/eventfold
export EVENTFOLD_CACHE
export CARGO_TARGET_DIR ?= $(EVENTFOLD_CACHE)/target

.PHONY: up down status test build fmt lint env images clean-data bench-avro

up: ## start PostgreSQL, Kafka, Neo4j, the schema registry and the three services
	@scripts/stack/stack.sh up

down: ## stop everything `make up` started (by pid)
	@scripts/stack/stack.sh down

status: ## one line per server and service
	@scripts/stack/stack.sh status

test: ## fmt, clippy and all tests against the real stack (starts and stops what is not running)
	@scripts/test.sh

build: ## build every crate
	cargo build --workspace

fmt: ## format the code
	cargo fmt --all

lint: ## clippy with warnings as errors
	cargo clippy --workspace --all-targets -- -D warnings

images: ## print the docker build commands for the three service images
	@scripts/helm/images.sh

# Every benchmark is a target of its own listed in BENCHES; `make bench` runs them in this order.
# A new one adds `BENCHES += bench-<name>`, `.PHONY: bench-<name>` and its target below.
BENCHES := bench-write bench-avro bench-relay bench-projector bench-process
.PHONY: bench bench-write bench-avro bench-relay bench-projector bench-process

bench: $(BENCHES) ## every benchmark against the running stack (`make up` first; starts nothing)

bench-write: ## eventfold's write side vs cqrs-es + postgres-es (BENCH_* variables, see README)
	@scripts/bench.sh cargo run --release -p eventfold-bench -- $(BENCH_ARGS)

bench-relay: ## relay events/s from a pre-filled outbox and commit-to-ack lag (BENCH_RELAY_*, see README)
	@BENCH_HTTP_URL= scripts/bench.sh cargo run --release -p eventfold-relay-bench --bin eventfold-relay-bench

bench-projector: ## read models from pre-filled topics, end-to-end latency, rebuild (BENCH_PROJ_*, see README)
	@BENCH_HTTP_URL= scripts/bench.sh cargo run --release -p eventfold-relay-bench --bin eventfold-projector-bench

bench-process: ## a process manager: events in/s and commands applied/s from a backlog, one saga hop p50/p99 (BENCH_PM_*, see README)
	@BENCH_HTTP_URL= scripts/bench.sh cargo run --release -p eventfold-relay-bench --bin eventfold-process-bench

bench-avro: ## Avro codec throughput per core (encode, decode, decode + upcast), criterion
	cargo bench -p eventfold-avro --bench codec

# The fault suite (tests/faults): `make faults` runs every fault, `make faults FAULTS="F1 F15"` a subset;
# `make faults-ci` the subset CI can afford. The faults stop and pause the servers of the stack in
# $EVENTFOLD_CACHE: run them on a stack instance of their own (README, "Fault suite").
FAULTS ?=
FAULTS_CI := F1 F2 F3 F11 F12 F15
.PHONY: faults faults-ci

faults: ## the fault suite against the real stack, one verdict table (FAULTS="F1 F15" for a subset)
	@scripts/faults.sh $(FAULTS)

faults-ci: ## the fault suite's CI subset ($(FAULTS_CI))
	@scripts/faults.sh $(FAULTS_CI)

# The contract fuzzer (scripts/contract.sh): schemathesis from PyPI, in a venv under the cache,
# against the running command-service and the read API, from their own /openapi.json.
.PHONY: contract
contract: ## schemathesis against the command-service and the read API (starts and stops what is not running)
	@scripts/contract.sh

env: ## print the stack's addresses as export lines
	@scripts/stack/stack.sh env

clean-data: down ## stop the stack and delete its data (keeps downloads and the cargo cache)
	rm -rf "$(EVENTFOLD_CACHE)/data" "$(EVENTFOLD_CACHE)/run"

# A local Kubernetes control plane (scripts/k8s, docs/helm.md "The chart on a local control plane"):
# kube-apiserver, kube-controller-manager, kube-scheduler on kine on the stack's PostgreSQL, simulated
# kwok nodes. `make test-k8s` installs, upgrades, rolls back, scales and uninstalls the chart on it.
.PHONY: k8s-build k8s-up k8s-down k8s-status test-k8s

k8s-build: ## build the control plane's binaries once from pinned Go modules (cold: see docs/helm.md)
	@scripts/k8s/build.sh --time

k8s-up: ## start the local control plane (needs `make up` for PostgreSQL); pids in $(EVENTFOLD_CACHE)/k8s/run
	@scripts/k8s/cluster.sh up

k8s-down: ## stop the local control plane (by pid)
	@scripts/k8s/cluster.sh down

k8s-status: ## one line per control-plane process
	@scripts/k8s/cluster.sh status

test-k8s: ## the Helm chart on the local control plane (starts and stops it when it is not running)
	@scripts/k8s/test.sh
