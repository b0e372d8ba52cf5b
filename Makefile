# Every target sets itself up: a virtualenv in .venv built from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: the receiver plus a worker in one process (embedded store, recorded actions when unconfigured)
run: $(STAMP)
	$(BIN)/agentgate dev

## demo: send the bundled sample deliveries to a running `make run`
demo: $(STAMP)
	$(BIN)/agentgate replay --all

## test: every test, against a real Redis on 127.0.0.1:6379 (see .ci/run to start one)
test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check gatekeeper tests bench
	$(BIN)/mypy gatekeeper

bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.delivery_latency
	$(BIN)/python -m bench.throughput
	command -v wrk >/dev/null || apt-get install -y -qq wrk  # the receiver benchmark's load generator
	$(BIN)/python -m bench.receiver

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
