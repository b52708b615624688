# search-sessions: `make run` (set up, simulate a day of traffic, sessionize it) and `make test`.
# The venv's Python: `make PYTHON=/path/to/python` (checked), else the first of python3.12,
# python3.11, python3 that is CPython 3.11 or 3.12, the only ones Bytewax 0.21.1 has wheels
# for; tools/pick_python.sh stops with one line saying so when there is none.
PYTHON ?=
VENV   ?= .venv
BIN    := $(VENV)/bin
CLI    := $(BIN)/search-sessions

RUN_EVENTS ?= 200000
RUN_USERS  ?= 5000

.PHONY: setup system-deps run test lint bench clean routes crash native-check

setup: $(VENV)/.installed $(VENV)/.native $(VENV)/.compiled

# The package's bytecode, written once: where PYTHONDONTWRITEBYTECODE is set (CI, many
# containers) every run would compile it again (about 70 ms a run).
$(VENV)/.compiled: $(VENV)/.installed $(shell find src -name '*.py')
	$(BIN)/python -m compileall -q src
	touch $@

# The native core (native/, Rust): built into the venv where cargo is; without cargo the
# Python core does the work, and one line says how to get the fast one.
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)

$(VENV)/.native: $(VENV)/.installed $(NATIVE_SOURCES)
	@if command -v cargo >/dev/null 2>&1; then \
		echo "building the native core (native/, cargo build --release)"; \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation ./native \
			|| exit 1; \
	else \
		$(BIN)/python -m pip uninstall --quiet --yes search-sessions-native >/dev/null 2>&1; \
		echo "no cargo: installed the Python core only (2-3x slower); for the native core install Rust (https://rustup.rs) and run make setup again"; \
	fi
	touch $@

# A venv left by an unsupported or vanished Python (say a failed setup on 3.13) is
# recreated: `python -m venv` over it would keep its old bin/python.
$(VENV)/.installed: pyproject.toml constraints.txt
	@py=$$(tools/pick_python.sh $(PYTHON)) || exit 1; \
	if { [ -e $(BIN)/python ] || [ -L $(BIN)/python ]; } \
		&& ! tools/pick_python.sh $(BIN)/python >/dev/null 2>&1; then \
		echo "rm -rf $(VENV)  # its Python is not CPython 3.11 or 3.12"; rm -rf $(VENV); \
	fi; \
	echo "$$py -m venv $(VENV)"; "$$py" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# An A/B test (B's true CTR 2 points higher), platforms, conversions, search-as-you-type.
data/day-ab.jsonl: | setup
	$(CLI) simulate --events $(RUN_EVENTS) --users $(RUN_USERS) --seed 42 --disorder 20 \
		--duplicates 0.005 --bad 0.001 --variants A,B --effect 0.02 --output $@

run: setup data/day-ab.jsonl
	$(CLI) run data/day-ab.jsonl --searches out/searches.jsonl --sessions out/sessions.jsonl \
		--dead-letter out/dead_letter.jsonl --late out/late.jsonl \
		--rollup 1h --rollup 1d --rollups out/rollups.jsonl \
		--dimension variant --dimension platform --collapse-typeahead 2s --currency USD
	@echo "outputs in out/: searches.jsonl sessions.jsonl dead_letter.jsonl late.jsonl rollups.jsonl"
	$(CLI) report out/searches.jsonl out/sessions.jsonl --output out/report.html

# Tests render the report in Debian's headless Chromium and write to a private
# PostgreSQL server started from Debian's postgresql; install them when missing.
SYSTEM_PACKAGES := $(if $(shell command -v chromium),,chromium) \
	$(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql)

system-deps:
	@if [ -n "$(strip $(SYSTEM_PACKAGES))" ]; then \
		echo "installing Debian packages: $(strip $(SYSTEM_PACKAGES))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi

# The Rust checks build in the background while the venv is set up (they need no venv).
test:
	@$(MAKE) --no-print-directory native-check & checks=$$!; \
	$(MAKE) --no-print-directory setup system-deps || { wait $$checks; exit 1; }; \
	wait $$checks || { echo "make test: the native core's checks failed"; exit 1; }; \
	$(BIN)/python -m pytest

# The Rust crate's own checks: formatting, clippy with warnings as errors, its tests.
native-check:
	@if command -v cargo >/dev/null 2>&1; then \
		cd native && cargo fmt --check && cargo clippy --quiet --all-targets -- -D warnings \
			&& cargo test --quiet; \
	else echo "no cargo: the native core's checks are skipped"; fi

lint: setup
	$(BIN)/ruff check src tests examples tools bench
	$(BIN)/ruff format --check src tests examples tools bench
	$(BIN)/mypy

# The shard keys Bytewax routes one per worker, probed from the installed Bytewax.
routes: setup
	$(BIN)/python tools/probe_routes.py --max-workers 64 --output src/search_sessions/dataflow/routes_table.py

bench: setup
	$(BIN)/python bench/bench.py --memory --sort --formats

# Hundreds of kill -9s at points taken from the job's own state, across input layouts,
# parallelism and outputs, each resumed and compared with an uninterrupted run (not part
# of `make test`, which runs a short matrix); writes the "Crash" section of
# bench/RESULTS.md. `make crash CRASH_SCENARIOS=20` for a short one.
CRASH_SCENARIOS ?= 150

crash: setup system-deps
	$(BIN)/python bench/crash.py --scenarios $(CRASH_SCENARIOS)

# Live traffic through a real Kafka-protocol broker into a 2-process run with a kill -9
# every minute, then compared with a batch run (not part of `make test`); writes the
# "Soak" section of bench/RESULTS.md. `make soak SOAK_MINUTES=2` for a short one.
SOAK_MINUTES ?= 10

.PHONY: soak
soak: setup
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf out data .pytest_cache .mypy_cache .ruff_cache .hypothesis .venv-pythons
