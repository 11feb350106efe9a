# chathub: two commands on a fresh machine.
#   make serve   set up .venv and run the daemon on embedded PostgreSQL + Valkey
#   make test    set up .venv with test extras and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: serve test bench lint clean

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

lint: $(TSTAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .chathub
