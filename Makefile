# spacehub: `make run` runs the platform; `make test` installs what the tests need and runs them all.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-lane-docker test-lane-integration test-lane-apps test-unit test-postgres test-deploy test-reference lint bench bench-proxy bench-spaces bench-control-plane bench-load images install system clean

# setup.py compiles the proxy's per-request modules and wire layer: a change to them rebuilds (else the old build would run).
# (llhttp's C sources come from the httptools sdist that setup.py pins, fetched into build/llhttp/: a new pin there rebuilds.)
SOURCES := pyproject.toml setup.py $(wildcard platform/spacehub/proxy/*.py platform/spacehub/proxy/*.pyx)
# `make run` installs what running needs and nothing more; the test extras (gradio, torch, playwright, ...) come
# with `make test` (and `make install`).
RUN_STAMP := $(VENV)/.installed-run

$(RUN_STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,postgres]'
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/spacehub serve

# System packages, then a Docker engine (installed and started; docker tests fail, never skip, without one).
# With the venv in place (as in `make test`), docker.sh also puts spacehub's sandbox in force (its network,
# egress rules and build-step hardening: `spacehub sandbox install`).
system:
	bash deploy/setup/system.sh
	SPACEHUB_CLI=$(abspath $(VENV))/bin/spacehub bash deploy/setup/docker.sh

# Three lanes at once, each a pytest of its own (they share only dockerd and the machine; every platform a test
# starts has its own data dir, ports and Redis), so the suite takes the longest lane's time, not the sum. Each
# lane's output is printed whole when it ends (--output-sync); --keep-going lets every lane finish and report.
test: $(STAMP) system images
	$(MAKE) --no-print-directory -j3 --keep-going --output-sync=target test-lane-docker test-lane-integration test-lane-apps
	$(MAKE) --no-print-directory test-reference

# Docker, the sandbox and the runtime contract, then the database-touching tests on PostgreSQL.
test-lane-docker: $(STAMP)
	$(PY) -m pytest -ra -p no:cacheprovider $(PYTEST_ARGS) tests/docker tests/security tests/contract
	$(PY) -m pytest -ra -p no:cacheprovider --db postgres $(POSTGRES_TESTS)

# The integration tests, then the production stack (tests/deploy: `make test-deploy` alone).
test-lane-integration: $(STAMP)
	$(PY) -m pytest -ra -p no:cacheprovider $(PYTEST_ARGS) tests/integration
	$(PY) -m pytest -ra -p no:cacheprovider tests/deploy

# The browser, Gradio fidelity, faults and unit tests, and the Kubernetes runtime's (no cluster needed: tests/kubernetes).
test-lane-apps: $(STAMP)
	$(PY) -m pytest -ra -p no:cacheprovider $(PYTEST_ARGS) tests/e2e tests/compat tests/faults tests/unit tests/kubernetes

# The database-touching tests once more on PostgreSQL: Debian's server (deploy/setup/system.sh), a private
# cluster started by the tests themselves (tests/support/pg.py), a fresh database per platform.
POSTGRES_TESTS := tests/integration/test_database.py tests/unit/test_spacegate.py \
	tests/integration/test_gpu_allocator.py tests/integration/test_signup_policy.py \
	tests/integration/test_hub_api.py tests/integration/test_backup.py \
	tests/integration/test_start_errors.py::test_a_password_refused_by_postgres_is_named
test-postgres: $(STAMP)
	$(PY) -m pytest -ra --db postgres $(POSTGRES_TESTS)

# The production stack of deploy/compose/ (PostgreSQL, Redis, spacehub's roles with two proxies, Caddy with TLS)
# built offline from the project's base image and driven with huggingface_hub and gradio_client over HTTPS: a
# proxy killed under traffic, a backup under writes restored into a wiped stack (tests/deploy/).
test-deploy: $(STAMP) system images
	$(PY) -m pytest -ra tests/deploy

# The reference build (plain Python, the wire layer on httptools: what a machine without a C compiler installs),
# on the proxy's own tests, from a copy of the sources alone so that no compiled module shadows its .py. (The
# parity tests, in the run above, compare the two wire layers directly. setup.py and pyproject.toml come along: the
# build test holds their httptools pins together.)
REFERENCE := build/reference
test-reference: $(STAMP)
	rm -rf $(REFERENCE) && mkdir -p $(REFERENCE)
	git ls-files -co --exclude-standard platform runner tests setup.py pyproject.toml | grep -v '\.so$$' | tar -cf - -T - | tar -xf - -C $(REFERENCE)
	cd $(REFERENCE) && SPACEHUB_PURE_PYTHON=1 PYTHONPATH=platform:runner:tests $(abspath $(PY)) -m pytest -q -p no:cacheprovider \
		--ignore=tests/unit/test_proxy_wire_parity.py tests/unit tests/integration/test_proxy_*.py \
		tests/integration/test_gateway_cached_routes.py

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check platform runner tests
	$(VENV)/bin/mypy

# Benchmarks: each measured side by side with its anchor in the same run, printed as a markdown table of
# medians and ratios (also written under artifacts/bench/). `bench` runs them all (~12 min), then prints the
# whole report again (artifacts/bench/bench.md).
bench: bench-proxy bench-spaces bench-control-plane bench-load
	cat artifacts/bench/proxy.md artifacts/bench/spaces.md artifacts/bench/control-plane.md artifacts/bench/load.md \
		> artifacts/bench/bench.md
	@echo; echo "==================== make bench ===================="; cat artifacts/bench/bench.md

# The proxy (full contract) against nginx and against no proxy, same upstream, 127.0.0.1 only (~2 min).
# BENCH_PROXY_ARGS: e.g. `--rounds 3 --duration 3` (see tests/bench/bench_proxy.py --help).
bench-proxy: $(STAMP)
	bash deploy/setup/bench.sh
	mkdir -p artifacts/bench
	$(PY) tests/bench/bench_proxy.py --out artifacts/bench/proxy.md $(BENCH_PROXY_ARGS)

# Spaces: wake (frozen, sleeping; fork-server, plain exec, docker) against a cold `python app.py` and a cold
# `docker run`; density by PSS with and without the fork-server; push-to-RUNNING builds per runtime (~10 min).
# Needs the docker images (`make images`) and /opt/wheels (torch); BENCH_SPACES_ARGS: e.g. `--rounds 3
# --skip-docker` (see tests/bench/bench_spaces.py --help).
bench-spaces: $(STAMP) images
	mkdir -p artifacts/bench
	$(PY) tests/bench/bench_spaces.py --out artifacts/bench/spaces.md $(BENCH_SPACES_ARGS)

# The control plane's cost from 10 to 1,000 registered spaces: API list latency, reconcile pass CPU, the proxy's
# space table (~2 min). BENCH_CONTROL_PLANE_ARGS: e.g. `--sizes 10,100 --requests 50`.
bench-control-plane: $(STAMP)
	mkdir -p artifacts/bench
	$(PY) tests/bench/bench_control_plane.py --out artifacts/bench/control-plane.md $(BENCH_CONTROL_PLANE_ARGS)

# The load one install holds: 10 apps under steady traffic while 50 uploads land at once (one user's 30 builds,
# another's one): /health, API and app p99, build queue fairness, the control plane's memory (~3 min).
# BENCH_LOAD_ARGS: e.g. `--running 3 --uploads 10 --heavy 6` (see tests/bench/bench_load.py --help).
bench-load: $(STAMP)
	mkdir -p artifacts/bench
	$(PY) tests/bench/bench_load.py --out artifacts/bench/load.md $(BENCH_LOAD_ARGS)

# Base and SDK images for the docker runtime, built offline once and reused (a no-op when present).
images: $(STAMP) system
	$(VENV)/bin/spacehub images bootstrap

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
