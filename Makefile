# dripfeed: `make dev` runs the demo, `make test` passes the tests. Both install what they need.
VENV := .venv
PYTHON ?= python3

.PHONY: dev test test-fast system-packages lint format bench chaos validate clean

# The simulator is a distribution of its own (simulator/), absent from dripfeed's and from the
# production image: installed here beside dripfeed for the demo, the tests and the benchmarks.
$(VENV)/.installed: pyproject.toml simulator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	@# A dripfeed installed before the simulator was its own distribution owns bin/tasklane-sim, and
	@# pip would delete the script while replacing that dripfeed after installing tasklane-sim.
	$(VENV)/bin/pip uninstall --quiet --yes dripfeed
	$(VENV)/bin/pip install --quiet -e '.[dev,bench,deploy]' -e ./simulator
	touch $@

dev: $(VENV)/.installed
	./demo/run.sh

test: system-packages $(VENV)/.installed lint
	$(VENV)/bin/pytest

test-fast: system-packages $(VENV)/.installed  # every test but the slow end-to-end ones (marked e2e)
	$(VENV)/bin/pytest -m "not e2e"

system-packages:  # PostgreSQL and Chromium for the tests, with apt-get when missing
	./tests/system-packages.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

validate: $(VENV)/.installed
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/dg check defs
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

bench: system-packages $(VENV)/.installed  # about five and a half hours: ten thousand tenants through deploy/run.sh, an hour-long soak
	$(VENV)/bin/python -m benchmarks

chaos: system-packages $(VENV)/.installed  # the reliability campaign (~28 min), written to RELIABILITY.md
	$(VENV)/bin/python -m chaos

clean:
	rm -rf $(VENV) .dev
