# batchdrop — the two set-up commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export CARGO_TERM_COLOR ?= never

.PHONY: all build demo test lint unit venv bench clean

all: build

build:
	cargo build --workspace

## Python tools for the tests (moto S3 server, openai SDK, cargo-lambda), in a venv.
venv: $(STAMP)
$(STAMP): tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $(STAMP)

## Run the whole pipeline locally on examples/*.jsonl with the sandbox provider.
demo:
	cargo build --bin batchdrop
	scripts/demo.sh

## Every test: formatting, lints, unit tests, store conformance on S3 (moto) and the local
## directory, end-to-end runs, the official SDK against the sandbox, the Lambda runtime test.
test: venv lint
	cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## Benchmarks (README "Benchmarks"): inputs generated once under target/bench/inputs/, then plan
## throughput vs split, submit peak RSS, 1M requests end to end through `batchdrop local`, a poll
## tick over 1,000 jobs, Lambda binary sizes. Prints a table, writes target/bench/report.json.
## Missed targets are reported, not failed. `make bench BENCH_FLAGS=--quick` for a fast run.
BENCH_FLAGS ?=
bench:
	cargo build --release -p batchdrop-bench -p batchdrop
	cargo build --release -p submit -p poll
	$${CARGO_TARGET_DIR:-target}/release/batchdrop-bench $(BENCH_FLAGS)

clean:
	rm -rf target/demo
