# stakeguard: `make demo` runs the main job, `make test` runs everything CI runs.
# Every target installs what it needs itself, so both work on a fresh machine.

SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
FILTER_WASM := target/$(WASM_TARGET)/release/stakeguard_filter.wasm
CONFORMANCE_WASM := target/$(WASM_TARGET)/release/stakeguard_conformance.wasm
STAKEGUARD := target/harness/stakeguard
# The engine's tests run on wasm32 too, under Node's WASI (see scripts/wasi-run.mjs).
WASI_RUNNER := node --no-warnings $(CURDIR)/scripts/wasi-run.mjs

.PHONY: demo test setup toolchain envoy alertmanager redis chromium test-browser wasm conformance cli lint fmt fuzz \
        test-native test-wasm bench bench-tools bench-modules golden schema oci istio examples

## The main job: build the filter and the harness, replay the bank's recorded traffic.
demo: toolchain wasm cli
	$(STAKEGUARD) replay --module $(FILTER_WASM) --policy policies/examples/bank.json \
		--callouts envoy-examples/traffic/callouts.toml envoy-examples/traffic/bank.jsonl

## Everything CI runs: formatting, lints on both targets, all tests natively, the engine's
## tests on wasm32, the harness and the real-Envoy tests.
test: setup lint wasm conformance test-native test-wasm test-browser

setup: toolchain envoy alertmanager redis chromium

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@command -v node >/dev/null || { echo "make: node is needed to run the wasm32 tests; apt-get install -y nodejs" >&2; exit 1; }

envoy:
	@bash scripts/ensure-envoy.sh

alertmanager:
	@bash scripts/ensure-alertmanager.sh

# redis-server for the fleet-wide counting tests, and what the rate-limit-service peer
# (tests/ratelimit-peer: Limitador) builds with.
redis:
	@bash scripts/ensure-redis.sh

chromium:
	@bash scripts/ensure-chromium.sh

## `stakeguard report` of the bundled recordings opened in Debian's Chromium (headless,
## through playwright-core with the system browser); screenshots in target/report/.
test-browser: chromium wasm cli
	cd tests/browser && npm ci --no-audit --no-fund --silent && node --test report.test.mjs

# Cargo's size-tuned release build, then wasm-opt in place (so every consumer, the
# harness and the Envoy tests alike, loads the module that ships), then the size budget.
wasm: toolchain
	$(CARGO) build -p stakeguard-filter --target $(WASM_TARGET) --release
	@bash scripts/optimize-wasm.sh $(FILTER_WASM) 380000

conformance: toolchain
	$(CARGO) build -p stakeguard-conformance --target $(WASM_TARGET) --release

cli:
	$(CARGO) build -p stakeguard-harness --profile harness --bin stakeguard

lint: toolchain
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p stakeguard-policies -p stakeguard-filter -p stakeguard-conformance \
		-p stakeguard-bench-empty -p stakeguard-bench-probe --target $(WASM_TARGET) -- -D warnings

fmt:
	$(CARGO) fmt --all

test-native: wasm conformance cli
	$(CARGO) test --workspace --no-fail-fast

test-wasm: toolchain
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(WASI_RUNNER)" \
		$(CARGO) test -p stakeguard-policies --target $(WASM_TARGET) --lib --tests

## Benchmarks: ratios measured side by side in one run, never timed assertions in tests.
## The engine natively, the harness, then stakeguard inside a real Envoy against no filter,
## an empty Wasm filter and Envoy's own filters, latency, scaling, ECDS swaps, memory, harness vs
## Envoy, a rate limit counted in the rate limit service against locally (target/bench/envoy.json,
## the tables envoy.md and the chart envoy.svg).
bench: toolchain envoy bench-tools wasm bench-modules
	$(CARGO) bench -p stakeguard-policies --bench decide
	$(CARGO) bench -p stakeguard-harness --bench replay
	$(CARGO) bench -p stakeguard-harness --bench scaling
	$(CARGO) build -p stakeguard-ratelimit-peer --profile harness
	$(CARGO) bench -p stakeguard-harness --bench envoy

# wrk, valgrind, oha; redis-server and the rate-limit peer's build dependencies.
bench-tools:
	@bash scripts/ensure-bench-tools.sh
	@bash scripts/ensure-redis.sh

## The empty filter (the baseline) and the host-call probe, same SDK and release profile.
bench-modules: toolchain
	$(CARGO) build -p stakeguard-bench-empty -p stakeguard-bench-probe --target $(WASM_TARGET) --release

## Rewrites the harness golden files (conformance transcript, bundled recordings) after
## a deliberate change of the filter's or the harness's behaviour.
golden: wasm conformance
	UPDATE_GOLDEN=1 $(CARGO) test -p stakeguard-harness --test conformance --test recordings

## An OCI image of stakeguard.wasm that Istio's WasmPlugin can pull (out/oci, out/stakeguard-oci.tar).
oci: wasm
	$(CARGO) run -q -p stakeguard-packaging --bin stakeguard-oci -- --module $(FILTER_WASM) --out out/oci

## Rewrites the Istio manifests' pluginConfig from policies/examples/bank.json.
istio:
	STAKEGUARD_UPDATE_ISTIO=1 $(CARGO) test -p stakeguard-tests --test istio_manifests

## Embeds policies/examples/bank.json in every example that carries it (after editing it).
examples: istio
	STAKEGUARD_UPDATE_EXAMPLES=1 $(CARGO) test -p stakeguard-tests --test envoy_smoke -- the_standalone_example_carries_the_bank_policy

## Rewrites policies/policy.schema.json from the model.
schema:
	STAKEGUARD_UPDATE_SCHEMA=1 $(CARGO) test -p stakeguard-policies --test schema

## Fuzzing on nightly (`cargo install cargo-fuzz --version 0.13.2 --locked` first):
## `make fuzz FUZZ_TARGET=exchange` runs one target (policy, exchange, traffic, host, service_answer) for
## FUZZ_SECONDS on one core, adding what it finds to fuzz/corpus/; `cargo test --workspace`
## replays the corpora on stable.
FUZZ_TARGET ?= exchange
FUZZ_SECONDS ?= 600
fuzz:
	cd fuzz && $(CARGO) +nightly fuzz run $(FUZZ_TARGET) corpus/$(FUZZ_TARGET) -- \
		-jobs=1 -workers=1 -max_total_time=$(FUZZ_SECONDS) -max_len=65536

## Key flooding: a million distinct usernames and client addresses against the bank's
## login and rate-limited routes, in the harness (two workers) and on the engine
## (memory bound); minutes in a debug build, so not part of `make test`.
flood: wasm
	$(CARGO) test -p stakeguard-harness --test flooding -- --ignored --nocapture

