# Everything a fresh machine needs is installed here, idempotently:
#   make run    the references' pipelines end to end on this machine (no cloud account)
#   make test   the whole test suite (starts its own servers on loopback)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PYTHON    ?= python3
STAMP_TEST := $(VENV)/.installed-test
STAMP_LINT := $(VENV)/.installed-lint
# The SAM CLI pins its own boto stack: it gets a virtualenv of its own.
DEPLOY_VENV := .venv-deploy
STAMP_DEPLOY := $(DEPLOY_VENV)/.installed
STACK_NAME ?= iotpipe
CARGO_LAMBDA := $(VENV)/bin/cargo-lambda
# The clock the sample events were written for (see tools/make_events.py).
SAMPLE_NOW   := 2022-02-27T05:05:00Z
SAMPLE_TOKEN := sample-token
# The end of the Lambda window in events/windows/ (tools/make_window_events.py).
WINDOWS_NOW  := 2022-02-27T05:05:00Z
# Late partials are further rows of the same device and minute: merge them.
WINDOW_QUERY := SELECT window_start, device, round(max(max), 2) AS max_temperature, round(min(min), 2) AS min_temperature, round(sum(sum) / sum(count), 3) AS mean, sum(count) AS readings, count(*) FILTER (WHERE late) AS late_partials FROM window_aggregates WHERE metric = 'temperature' GROUP BY 1, 2 ORDER BY 1, 2
WATCH_PORT   ?= 9761

# `make run`: per device and fleet, messages at RUN_RATE a second; the
# windows function's event-time windows (and the stream's tumbling windows).
RUN_MESSAGES ?= 40
RUN_RATE     ?= 4
RUN_WINDOW   ?= 5

.PHONY: help setup servers postgres build run replay query cost bench bench-part test invoke-samples events lint lint-infra lint-deps audit fmt clippy deploy destroy clean fuzz

help:
	@echo "make run             iotpipe run: devices -> embedded broker -> the template's rules -> the functions -> commands; report in ./run/"
	@echo "make replay          replay events/ through telemetry-metrics, telemetry-warehouse and telemetry-windows, query ./warehouse"
	@echo "make query SQL='...' run SQL over ./warehouse with DuckDB (default: reference 000's query; WAREHOUSE_URL=run/warehouse for make run's)"
	@echo "make test            run every test (installs moto into .venv first)"
	@echo "make invoke-samples  cargo lambda watch + cargo lambda invoke for every sample event"
	@echo "make bench           benchmarks next to a Python/Powertools baseline -> BENCHMARKS.md"
	@echo "make bench-part PART=commands|envelope_libraries|windows|local_pipeline   one part again, the rest as the last run left it"
	@echo "make cost            SCALE.md: monthly cost per design for 1,000 / 100,000 / 1,000,000 devices"
	@echo "make fuzz            cargo fuzz (nightly): FUZZ_RUNS executions of every target (default 10 million), stats in fuzz/logs/"
	@echo "make lint            rustfmt, clippy -D warnings, cfn-lint and checkov on infra/template.yaml, cargo deny (licences, bans, sources)"
	@echo "make audit           cargo deny's RustSec advisories (fetches the advisory database: needs GitHub)"
	@echo "make deploy          sam build + sam deploy --guided (needs AWS credentials)"
	@echo "make destroy         delete the stack (STACK_NAME=$(STACK_NAME))"
	@echo "make events          regenerate events/ from tools/make_events.py and tools/make_window_events.py"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(STAMP_TEST): requirements-test.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

$(STAMP_LINT): requirements-lint.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lint.txt
	touch $@

$(STAMP_DEPLOY): requirements-deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-deploy.txt
	touch $@

setup: $(STAMP_TEST)

# The warehouse tests start their own PostgreSQL and MariaDB servers, the
# simulator's tests their own mosquitto broker (in temporary directories, on
# loopback); install the binaries from Debian when the machine has none, and
# openssl for their TLS certificates.
postgres: servers
servers:
	@{ ls /usr/lib/postgresql/*/bin/initdb && command -v openssl && test -x /usr/sbin/mariadbd \
	   && test -x /usr/sbin/mosquitto && command -v mosquitto_sub; } >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL, MariaDB, mosquitto and openssl (Debian packages)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    postgresql mariadb-server mosquitto mosquitto-clients openssl >/dev/null; }

# The function binaries for the tests, and their arm64 Lambda packages
# (debug) for the `cargo lambda deploy` test.
build: setup
	cargo build --workspace --bins
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO_LAMBDA) lambda build --arm64 \
	  --bin telemetry-metrics --bin telemetry-warehouse --bin device-commands --bin telemetry-windows

# The main job on embedded defaults: the references' devices publish to an
# embedded MQTT broker; the topic rules of infra/template.yaml route their
# messages to the real function binaries (Lambda, SQS batches, Kinesis
# tumbling windows); device-commands switches the night lights' LEDs. Then
# reference 000's query and the window maxima over ./run/warehouse (DuckDB).
run: setup
	cargo build --quiet --workspace --bins
	./target/debug/iotpipe run --out run --messages $(RUN_MESSAGES) --rate $(RUN_RATE) --window-seconds $(RUN_WINDOW) \
	  --env telemetry-warehouse:PIPELINE_CONFIG=config/reference-pipelines.toml
	@echo "==> reference 000's query over ./run/warehouse (DuckDB)"
	WAREHOUSE_URL=run/warehouse $(VENV)/bin/python tools/query.py
	@echo "==> reference 000's Dataflow step: maximum temperature per device and window (telemetry-windows)"
	WAREHOUSE_URL=run/warehouse $(VENV)/bin/python tools/query.py "$(WINDOW_QUERY)"

# Every sample event of events/ through the functions, in process (metrics
# as EMF on stdout, rows as Parquet in ./warehouse), then reference 000's
# query over the warehouse with DuckDB.
replay: setup
	rm -rf warehouse dead-letters
	@echo "==> telemetry-metrics: EMF metrics and each trigger's answer"
	PUBSUB_VERIFICATION_TOKEN=$(SAMPLE_TOKEN) DEAD_LETTER_URL=./dead-letters \
	  cargo run --quiet -p iotpipe -- metrics --now $(SAMPLE_NOW) events/
	@echo "==> telemetry-warehouse: rows into ./warehouse (Parquet)"
	PUBSUB_VERIFICATION_TOKEN=$(SAMPLE_TOKEN) WAREHOUSE_URL=./warehouse PIPELINE_CONFIG=config/reference-pipelines.toml \
	  cargo run --quiet -p iotpipe -- warehouse --now $(SAMPLE_NOW) events/
	@echo "==> reference 000's query over ./warehouse"
	$(VENV)/bin/python tools/query.py
	$(VENV)/bin/python tools/query.py "SELECT table_name, count(*) AS rows FROM (SELECT 'readings' AS table_name FROM readings UNION ALL SELECT 'sensordata' FROM sensordata UNION ALL SELECT 'co2_emissions' FROM co2_emissions UNION ALL SELECT 'tweets' FROM tweets UNION ALL SELECT 'dead_letter' FROM dead_letter) GROUP BY 1 ORDER BY 1"
	@echo "==> telemetry-windows: one Kinesis tumbling window of reference 000's sensors (events/windows/)"
	WAREHOUSE_URL=./warehouse DEAD_LETTER_URL=./dead-letters WINDOW_SECONDS=60 ALLOWED_LATENESS_SECONDS=10 \
	  cargo run --quiet -p iotpipe -- windows --now $(WINDOWS_NOW) events/windows/ | grep -v '^{"_aws"'
	@echo "==> reference 000's Dataflow step: maximum temperature per device and minute (late partials merged)"
	$(VENV)/bin/python tools/query.py "$(WINDOW_QUERY)"
	@echo "dead letters of the metrics function (with reasons) are in ./dead-letters/"

BENCH_VENV := .venv-bench
STAMP_BENCH := $(BENCH_VENV)/.installed

$(STAMP_BENCH): bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

# Release builds for two architectures (~10 minutes on 2 cores), then every
# measurement; writes BENCHMARKS.md and bench/results.json.
bench: setup $(STAMP_BENCH)
	$(VENV)/bin/python bench/run.py

# One part of the bench again (PART=commands or envelope_libraries), the
# rest of BENCHMARKS.md as the last full run left it.
bench-part: setup $(STAMP_BENCH)
	$(VENV)/bin/python bench/run.py --only $(PART)

# SCALE.md: the monthly cost per design and fleet size, from the prices in
# tools/iotpipe/src/cost.rs and the measured figures in bench/results.json.
cost:
	cargo run --quiet -p iotpipe -- cost --scale-md > SCALE.md
	@echo "wrote SCALE.md"

SQL ?=
query: setup
	$(VENV)/bin/python tools/query.py $(if $(SQL),"$(SQL)")

# The tests run the function binaries, so build them first.
test: setup servers build lint
	cargo test --workspace
	$(MAKE) --no-print-directory invoke-samples

# Every sample through the real Lambda toolchain: `cargo lambda watch`
# (bound to loopback) and `cargo lambda invoke`. Samples carry 2022 device
# timestamps, so against today's clock their readings are dead-lettered as
# too old; this checks every event is accepted and answered.
invoke-samples: setup
	@set -euo pipefail; \
	export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"; \
	if (exec 3<>/dev/tcp/127.0.0.1/$(WATCH_PORT)) 2>/dev/null; then \
	  echo "127.0.0.1:$(WATCH_PORT) is already in use: run with WATCH_PORT=<a free port>" >&2; exit 1; fi; \
	log=$$(mktemp); dead=$$(mktemp -d); \
	PUBSUB_VERIFICATION_TOKEN=$(SAMPLE_TOKEN) DEAD_LETTER_URL=$$dead \
	  cargo lambda watch --invoke-address 127.0.0.1 --invoke-port $(WATCH_PORT) \
	  >$$log 2>&1 & watch_pid=$$!; \
	trap 'kill $$watch_pid 2>/dev/null; wait $$watch_pid 2>/dev/null; rm -rf $$dead $$log' EXIT; \
	for i in $$(seq 1 600); do \
	  (exec 3<>/dev/tcp/127.0.0.1/$(WATCH_PORT)) 2>/dev/null && break; sleep 0.5; done; \
	failed=0; count=0; \
	for event in events/*.json; do \
	  count=$$((count + 1)); \
	  if out=$$(cargo lambda invoke telemetry-metrics -A 127.0.0.1 -P $(WATCH_PORT) --data-file $$event 2>&1); then \
	    echo "ok    $$event -> $$(echo "$$out" | tail -1 | cut -c1-120)"; \
	  elif [ "$$event" = "events/malformed--not-json.json" ] && echo "$$out" | grep -q "line 1 column"; then \
	    echo "ok    $$event -> refused before the handler (not JSON)"; \
	  else \
	    echo "FAIL  $$event"; echo "$$out" | tail -5; failed=$$((failed + 1)); \
	  fi; \
	done; \
	echo "$$((count - failed)) passed, $$failed failed"; \
	[ $$failed -eq 0 ] || { tail -15 $$log; exit 1; }

events:
	$(PYTHON) tools/make_events.py
	$(PYTHON) tools/make_window_events.py

lint: fmt clippy lint-infra lint-deps

# Any skipped check is listed in the template with its reason.
# Dependencies: licences (deny.toml's allow list), bans and sources, with
# cargo-deny (built once into ~/.cargo/bin, about 4 minutes). Offline: the
# advisory check needs the RustSec database from GitHub, so it is `make
# audit`, for a machine that reaches it.
CARGO_DENY_VERSION := 0.20.2
lint-deps:
	@cargo deny --version 2>/dev/null | grep -q "$(CARGO_DENY_VERSION)" || cargo install --locked --quiet cargo-deny@$(CARGO_DENY_VERSION)
	cargo deny --log-level error --offline check licenses bans sources

audit: lint-deps
	cargo deny check advisories

# Fuzzing (nightly + cargo-fuzz, installed here when missing): each target
# FUZZ_RUNS times from its saved corpus; new inputs go to a scratch corpus,
# crashers to fuzz/artifacts/ (copy them to fuzz/regressions/<target>/ once
# fixed: `cargo test` checks them again). FUZZ_SANITIZER=address for ASan
# (about 4x slower). RELIABILITY.md records the last campaign.
FUZZ_TARGETS   ?= json_object event payload pipeline_file window_state rule_sql
FUZZ_RUNS      ?= 10000000
FUZZ_SANITIZER ?= none
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	cd fuzz && cargo +nightly fuzz build -s $(FUZZ_SANITIZER)
	@mkdir -p fuzz/logs
	@cd fuzz && for target in $(FUZZ_TARGETS); do \
	  mkdir -p /tmp/iotpipe-fuzz/$$target regressions/$$target; \
	  echo "fuzz $$target: $(FUZZ_RUNS) runs"; \
	  cargo +nightly fuzz run -s $(FUZZ_SANITIZER) $$target /tmp/iotpipe-fuzz/$$target corpus/$$target regressions/$$target -- \
	    -runs=$(FUZZ_RUNS) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 > logs/$$target.log 2>&1 \
	    || { tail -40 logs/$$target.log; exit 1; }; \
	  grep -E 'stat::(number_of_executed_units|average_exec_per_sec|slowest_unit_time_sec|peak_rss_mb)' logs/$$target.log; \
	done

# Each combination of IngestPath, Transport and StreamShards is checked as
# it deploys (tools/template_variants.py writes it with those defaults).
lint-infra: $(STAMP_LINT)
	$(VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- infra/template.yaml
	$(VENV)/bin/checkov -f infra/template.yaml --framework cloudformation --skip-download --quiet --compact
	@variants=$$(mktemp -d) && trap 'rm -rf "$$variants"' EXIT && \
	  $(PYTHON) tools/template_variants.py "$$variants" >/dev/null && \
	  for variant in "$$variants"/*.yaml; do \
	    echo "cfn-lint + checkov: $$(basename $$variant)"; \
	    cp "$$variant" infra/.variant.yaml && \
	    $(VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- infra/.variant.yaml && \
	    $(VENV)/bin/checkov -f infra/.variant.yaml --framework cloudformation --skip-download --quiet --compact >/dev/null \
	      || { rm -f infra/.variant.yaml; exit 1; }; \
	  done; rm -f infra/.variant.yaml

# Builds every function for arm64 with cargo-lambda (through SAM's
# rust-cargolambda build method) and deploys the stack, asking for the
# parameters the first time (saved to samconfig.toml).
deploy: $(STAMP_DEPLOY) $(STAMP_TEST)
	export PATH="$(CURDIR)/$(VENV)/bin:$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH"; \
	sam build --template-file infra/template.yaml --beta-features && \
	sam deploy --guided --stack-name $(STACK_NAME) --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND

destroy: $(STAMP_DEPLOY)
	$(DEPLOY_VENV)/bin/sam delete --stack-name $(STACK_NAME)

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) $(DEPLOY_VENV) $(BENCH_VENV) .aws-sam dead-letters warehouse
