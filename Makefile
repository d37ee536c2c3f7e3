# batchdrop — the two set-up commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export CARGO_TERM_COLOR ?= never
# AWS tooling (SAM CLI, cfn-lint, ministack) comes from the venv; no telemetry.
export SAM_CLI_TELEMETRY := 0
SAM := $(CURDIR)/$(VENV)/bin/sam
CFN_LINT := $(CURDIR)/$(VENV)/bin/cfn-lint

.PHONY: all build deploy demo test test-aws lint lint-infra unit venv venv-litellm bench clean

all: build

## The three Lambda bootstraps, release builds for provided.al2023 (x86_64):
## target/lambda/{submit,poll,api}/bootstrap (cargo-lambda from the venv).
build: venv
	cargo lambda build --release --bin submit --bin poll --bin api

## Build and deploy the SAM stack (infra/template.yaml) with your AWS credentials. The first
## time (no BucketName saved in infra/samconfig.toml) it runs `sam deploy --guided`.
deploy: venv
	cd infra && $(SAM) build
	cd infra && if grep -q 'BucketName=' samconfig.toml; then $(SAM) deploy; else $(SAM) deploy --guided; fi

## Python tools for the tests (moto S3 server, openai SDK, cargo-lambda), in a venv.
venv: $(STAMP)
$(STAMP): tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $(STAMP)

## The LiteLLM proxy (an OpenAI-compatible server nobody here wrote) for the synchronous-lane
## test, in a venv of its own: its dependency tree is large and pins versions the AWS tools'
## venv must not share.
LITELLM_VENV := .venv-litellm
venv-litellm: $(LITELLM_VENV)/.installed
$(LITELLM_VENV)/.installed: tests/requirements-litellm.txt
	test -x $(LITELLM_VENV)/bin/python || python3 -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements-litellm.txt
	touch $(LITELLM_VENV)/.installed

## Run the whole pipeline locally on examples/*.jsonl with the sandbox provider.
demo:
	cargo build --bin batchdrop
	scripts/demo.sh

## Every test: formatting, lints, unit tests, store conformance on S3 (moto) and the local
## directory, end-to-end runs, the official SDK against the sandbox, the Lambda runtime test;
## the SAM template linted, and deployed to an AWS emulator and exercised (test-aws).
test: venv venv-litellm lint lint-infra test-aws
	cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	python3 scripts/module_cycles.py crates/core/src crates/cli/src crates/api/src

## The SAM template, offline: SAM's validation with its linter, then cfn-lint.
lint-infra: venv
	cd infra && $(SAM) validate --lint --template-file template.yaml --region us-east-1
	$(CFN_LINT) infra/template.yaml

## The deployed stack on an AWS emulator (ministack, on loopback): sam build + sam deploy of
## infra/template.yaml, then uploads through its S3 (see infra/test/stack_test.py).
test-aws: venv
	$(PY) infra/test/stack_test.py

## Benchmarks (README "Benchmarks"): inputs generated once under target/bench/inputs/, then plan
## throughput vs split, submit peak RSS, 1M requests end to end through `batchdrop local`, a poll
## tick over 1,000 jobs, Lambda binary sizes. Prints a table, writes target/bench/report.json.
## Missed targets are reported, not failed. `make bench BENCH_FLAGS=--quick` for a fast run.
## The four binaries in one cargo invocation: two with different package sets unify features
## differently, and the second would rebuild much of the release tree the first built.
BENCH_FLAGS ?=
bench:
	cargo build --release -p batchdrop-bench -p batchdrop -p submit -p poll
	$${CARGO_TARGET_DIR:-target}/release/batchdrop-bench $(BENCH_FLAGS)

clean:
	rm -rf target/demo
