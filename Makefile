# dripfeed: `make dev` runs the demo, `make test` passes the tests. Both install what they need.
VENV := .venv
PYTHON ?= python3

# Every package comes from uv.lock (pinned, hashed, one lock for every platform), installed by uv,
# itself pinned here and bootstrapped into .uv/ with the machine's pip. The machine's python3 runs
# everything: uv never downloads an interpreter.
UV_VERSION := 0.13.9
UV := .uv/bin/uv
UV_STAMP := .uv/.version-$(UV_VERSION)
export UV_PYTHON_DOWNLOADS := never
# The production image's packages (deploy/docker/Dockerfile): dripfeed's and its launchers', hashed,
# without dripfeed itself (the image installs it from its source) and without the dev group.
IMAGE_EXPORT := --format requirements-txt --no-dev --extra deploy --no-emit-workspace --no-header

.PHONY: dev test test-fast coverage system-packages lint lock-check lock upgrade-deps format bench chaos validate clean

$(UV_STAMP):  # a new UV_VERSION replaces the uv in .uv/
	rm -rf .uv
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)
	touch $@

# dripfeed with every extra, and the dev group: the simulator (simulator/, a distribution of its own,
# absent from dripfeed's and from the production image), for the demo, the tests and the benchmarks.
# --locked: refuse to install when uv.lock disagrees with a pyproject.toml. Compiled to bytecode here,
# once (uv does not by default, and pip does): every Dagster process (a run, the code server, a CLI
# call) imports some 1,500 modules, which costs `import dagster` 1.5 CPU-s from source and 0.6 s
# from bytecode, and where PYTHONDONTWRITEBYTECODE is set no process ever leaves it behind.
$(VENV)/.installed: $(UV_STAMP) pyproject.toml simulator/pyproject.toml uv.lock
	$(UV) sync --locked --all-extras --compile-bytecode --python $(PYTHON) --quiet
	$(VENV)/bin/python -m compileall -q -j 0 dripfeed pipeline_assets resources sensors simulator chaos benchmarks tests > /dev/null
	touch $@

dev: $(VENV)/.installed
	./demo/run.sh

# Three workers (pytest-xdist), a test file each at a time: a file's module fixtures (a daemon, a
# make dev) start once, and the workers' waits (daemon ticks, the real clock, a simulator's pace)
# overlap each other's work. Two workers kept the two cores only 60% busy. The files go out in
# tests/conftest.py's order, the longest first (xdist would otherwise send the files with the most
# tests first, and a three-minute file of one test last).
PYTEST_WORKERS ?= 3
PYTEST_DIST := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: system-packages $(VENV)/.installed lint
	$(VENV)/bin/pytest $(PYTEST_DIST)

test-fast: system-packages $(VENV)/.installed  # all but the Dagster runs over the wire (runs) and the e2e tests
	$(VENV)/bin/pytest $(PYTEST_DIST) -m "not e2e and not runs"

coverage: system-packages $(VENV)/.installed  # the suite under coverage: test-output/coverage/ (coverage.json, line by line)
	rm -rf test-output/coverage
	$(VENV)/bin/coverage run -m pytest $(PYTEST_DIST)
	$(VENV)/bin/coverage combine -q
	$(VENV)/bin/coverage json -q -o test-output/coverage/coverage.json
	$(VENV)/bin/coverage report --skip-covered

system-packages:  # PostgreSQL and Chromium for the tests, with apt-get when missing
	./tests/system-packages.sh

lint: $(VENV)/.installed lock-check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

lock-check: $(UV_STAMP)  # uv.lock agrees with pyproject.toml, and the image's requirements with uv.lock
	$(UV) lock --check --python $(PYTHON) --quiet
	$(UV) export --frozen $(IMAGE_EXPORT) | diff -u deploy/docker/requirements.txt - \
		|| (echo "deploy/docker/requirements.txt is not uv.lock's: run make lock" >&2; exit 1)

# After editing a pyproject.toml's dependencies: re-lock, moving only what the edit needs.
lock: $(UV_STAMP)
	$(UV) lock --python $(PYTHON)
	$(UV) export --frozen $(IMAGE_EXPORT) --output-file deploy/docker/requirements.txt --quiet

# Re-lock every package at the newest release pyproject.toml's ranges allow, and install it; then
# `make test`, and commit uv.lock and deploy/docker/requirements.txt with what moved in them.
upgrade-deps: $(UV_STAMP)
	$(UV) lock --upgrade --python $(PYTHON)
	$(MAKE) lock $(VENV)/.installed

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

validate: $(VENV)/.installed
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/dg check defs

bench: system-packages $(VENV)/.installed  # about five and a half hours: ten thousand tenants through deploy/run.sh, an hour-long soak
	$(VENV)/bin/python -m benchmarks

chaos: system-packages $(VENV)/.installed  # the reliability campaign (about 26 minutes), written to RELIABILITY.md
	$(VENV)/bin/python -m chaos

clean:
	rm -rf $(VENV) .uv .dev
