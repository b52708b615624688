# search-sessions: `make run` (set up, simulate a day of traffic, sessionize it) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLI    := $(BIN)/search-sessions

RUN_EVENTS ?= 200000
RUN_USERS  ?= 5000

.PHONY: setup system-deps run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

data/day.jsonl: | setup
	$(CLI) simulate --events $(RUN_EVENTS) --users $(RUN_USERS) --seed 42 --disorder 20 \
		--duplicates 0.005 --bad 0.001 --output $@

run: setup data/day.jsonl
	$(CLI) run data/day.jsonl --searches out/searches.jsonl --sessions out/sessions.jsonl \
		--dead-letter out/dead_letter.jsonl --late out/late.jsonl \
		--rollup 1h --rollup 1d --rollups out/rollups.jsonl
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

test: setup system-deps
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/bench.py --memory

clean:
	rm -rf out data .pytest_cache .mypy_cache .ruff_cache .hypothesis
