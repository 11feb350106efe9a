# chathub: two commands on a fresh machine.
#   make serve   set up .venv and run the daemon on embedded PostgreSQL + Valkey
#   make test    set up .venv with test extras and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: serve test bench bench-degraded chaos lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(TSTAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

serve: $(STAMP)
	$(BIN)/chathub serve $(ARGS)

test: $(TSTAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench [ARGS="--quick"]: chathub next to its peers (docs/performance.md). Node ws runs
# when node and npm are installed, the Go hub when go is and CHATHUB_BENCH_GORILLA names a
# gorilla/websocket checkout at v1.5.3; the Go load generator is built when go is installed.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# chat latency while PostgreSQL or Valkey is slow or down (docs/performance.md)
bench-degraded: $(TSTAMP)
	$(BIN)/python -m bench.degraded $(ARGS)

# three hubs, fifty clients and a fixed-seed schedule of faults, then the checker
# (docs/failure-modes.md); make chaos SEED=1 DURATION=600
SEED     ?= 1
DURATION ?= 600
chaos: $(TSTAMP)
	$(BIN)/python -m tests.chaos.runner --seed $(SEED) --duration $(DURATION) --out .chaos/seed-$(SEED) $(ARGS)

lint: $(TSTAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .chathub .chaos
