# The verbs of the project. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
GEN := gen
PROTO_FILES := $(shell find protos -name '*.proto')
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help venv gen dist lint typecheck fmt test test-unit run migrate bench emulator clean chat demo conformance restore-drill

help: ## List the verbs.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# uv installs the locked requirements in seconds where pip took over a minute; pip installs
# uv itself, pinned, into the venv.
UV_VERSION := 0.13.9
UV := $(BIN)/uv

$(UV):
	@echo "[1/4] Creating the virtualenv $(VENV) and installing uv $(UV_VERSION) with pip"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# Every install is from a lock: each requirements*.txt (the direct pins) compiled by `make lock`
# into a .lock with every transitive dependency and the sha256 of each file, installed with
# --require-hashes. tests/packaging fails when a .txt changed and its lock was not recompiled.
LOCKS := requirements.lock requirements-dev.lock deploy/requirements-check.lock \
	deploy/docker/build-requirements.lock deploy/docker/emulators-requirements.lock \
	clients/build-requirements.lock
.PHONY: lock
lock: $(UV) ## Recompile the locks (hashes) after a requirements*.txt changed; keeps unchanged pins.
	for lock in $(LOCKS); do \
		$(UV) pip compile -q --universal --python-version 3.11.13 --generate-hashes \
			--custom-compile-command "make lock" "$${lock%.lock}.txt" -o "$$lock" || exit 1; \
	done

# Not -q: uv shows what it resolves, downloads and installs, so a first install (a minute
# or more on a cold cache) is seen to progress.
$(VENV)/.stamp: requirements-dev.lock cli/pyproject.toml | $(UV)
	@echo "[2/4] Installing the locked requirements (hash-checked) into $(VENV)"
	$(UV) pip install --python $(PY) --require-hashes -r requirements-dev.lock
	@echo "[3/4] Installing the admin CLI (.venv/bin/askvault) and the repository's paths"
	# The admin CLI: .venv/bin/askvault (its dependencies are pinned in requirements.txt).
	$(UV) pip install -q --python $(PY) --no-deps -e cli
	# Put the repository's packages on the venv's path: the runtime, the services, the emulators, generated code, the client package.
	printf '%s\n' "$(CURDIR)" "$(CURDIR)/services" "$(CURDIR)/emulators" "$(CURDIR)/$(GEN)" "$(CURDIR)/clients/src" \
		> "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/askvault-paths.pth"
	touch $@

venv: $(VENV)/.stamp ## Create the virtualenv with every pinned dependency.

$(GEN)/.stamp: $(VENV)/.stamp $(PROTO_FILES)
	@echo "[4/4] Generating Python code and typed stubs from protos/ into $(GEN)"
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=$(GEN) --grpc_python_out=$(GEN) \
		--mypy_out=$(GEN) --mypy_grpc_out=$(GEN) $(PROTO_FILES)
	find $(GEN)/askvault -type d -exec touch {}/__init__.py \;
	touch $@

gen: $(GEN)/.stamp ## Generate Python code and typed stubs from protos/.

# The typed client package (clients/): the package's own code plus the modules and typed
# stubs generated from protos/ at build time, as one wheel in dist/.
CLIENT_BUILD := build/clients
dist: $(VENV)/.stamp ## Build the typed Python client wheel (askvault-clients) into dist/.
	rm -rf $(CLIENT_BUILD) && mkdir -p $(CLIENT_BUILD)
	cp -R clients/pyproject.toml clients/README.md clients/src $(CLIENT_BUILD)/
	find $(CLIENT_BUILD) -name __pycache__ -prune -exec rm -rf {} +
	$(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=$(CLIENT_BUILD)/src --grpc_python_out=$(CLIENT_BUILD)/src \
		--mypy_out=$(CLIENT_BUILD)/src --mypy_grpc_out=$(CLIENT_BUILD)/src $(PROTO_FILES)
	find $(CLIENT_BUILD)/src/askvault -type d -exec touch {}/__init__.py \;
	touch $(CLIENT_BUILD)/src/askvault/py.typed
	$(UV) build -q --wheel --out-dir dist --require-hashes \
		--build-constraints clients/build-requirements.lock $(CLIENT_BUILD)
	@ls dist/askvault_clients-*.whl

# The contracts are compared with the last commit that landed (passed CI), written in
# protos/BREAKING_BASELINE: comparing main with itself would prove nothing. After a stop lands,
# the next change sets the file to that commit.
BUF_BASELINE := $(shell head -n1 protos/BREAKING_BASELINE)
lint: gen ## ruff, buf lint and buf breaking against the last landed commit.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd protos && ../$(BIN)/buf lint
	@git cat-file -e $(BUF_BASELINE)^{commit} || { echo "buf breaking: baseline $(BUF_BASELINE) (protos/BREAKING_BASELINE) is not in this clone: fetch the full history"; exit 1; }
	cd protos && ../$(BIN)/buf breaking --against '../.git#ref=$(BUF_BASELINE),subdir=protos'

typecheck: gen ## mypy over the runtime, services, emulators, the CLI and tests.
	$(BIN)/mypy runtime services emulators tests devstack bench chaos soak conformance cli conftest.py clients/src

fmt: venv ## Format the code.
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two pytest-xdist workers, whole files each: the suite waits on servers and PostgreSQL as
# much as on the CPU, so two workers on two cores finish in about half the time. Files go
# in the order conftest.py gives (the longest first), not xdist's (the most tests first),
# which left the one-test chaos file, among the longest, for the end.
TEST_WORKERS ?= 2
test: gen ## Everything CI runs: lint, types, unit, integration and contract tests.
	# The three checks are independent and single-threaded: side by side on two cores (each
	# one's output kept together), then the suite.
	$(MAKE) --no-print-directory -j2 --output-sync=target lint typecheck deploy-check
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not soak"

# Kubernetes manifests and the image recipe: their tools live in their own virtualenv so that
# checkov's many dependencies never touch the pins of .venv.
DEPLOY_VENV := .venv-deploy
.PHONY: deploy-check
$(DEPLOY_VENV)/.stamp: deploy/requirements-check.lock $(VENV)/.stamp
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	@echo "Installing the manifest checkers (locked, hash-checked) into $(DEPLOY_VENV)"
	$(UV) pip install --python $(DEPLOY_VENV)/bin/python --require-hashes -r deploy/requirements-check.lock
	touch $@

deploy-check: $(DEPLOY_VENV)/.stamp ## Render, validate (k8s 1.30-1.34) and scan the overlays; lint the Dockerfile.
	$(DEPLOY_VENV)/bin/python deploy/tools/check.py

# conftest.py marks a test `unit` when it uses no server fixture and is not marked slow or
# integration; a unit test that starts a server, a process or reaches PostgreSQL fails.
test-unit: gen ## Only the tests that need no server, PostgreSQL or process (seconds).
	env -u DATABASE_URL $(BIN)/pytest -q -m unit

run: gen ## Start the whole system locally with embedded defaults (LLM=1: LLM mode on the scripted model emulator); Ctrl-C stops it.
	$(PY) -m devstack $(if $(filter 1 yes true,$(LLM)),--llm)

migrate: gen ## Apply every service's migrations to DATABASE_URL.
	for s in identity policy billing_gateway notifier edge; do \
		test -d services/$$s && $(PY) -m $$s migrate || exit 1; done

emulator: gen ## Start the Stripe emulator alone.
	$(PY) -m stripe_emulator

bench: gen ## Run the benchmarks; figures go to bench/results.
	$(PY) -m bench

clean: ## Remove the virtualenv, generated code and local data.
	rm -rf $(VENV) $(GEN) build dist .data .mypy_cache .ruff_cache .pytest_cache

# DEMO_USER, not USER: the shell sets USER to the login name.
chat: gen ## Chat in the terminal as a demo customer (DEMO_USER=bob; default alice) with a running `make run`.
	$(PY) -m devstack.chat --user "$${DEMO_USER:-alice}"

demo: gen ## Play the seed's journey against a running `make run` and print the transcript.
	$(PY) -m devstack.chat --demo

# TARGET (the edge's URL) and GRPC (identity=host:port,policy=...,billing_gateway=...,
# notifier=...) name a deployment, its credentials in CONFORMANCE_* (deploy/README.md); with
# neither, the local `make run` is checked with its own credentials.
conformance: gen ## Check a running deployment against the contracts (TARGET=<edge URL> GRPC=<hosts>; default: make run).
	$(PY) -m conformance $(if $(TARGET),--edge "$(TARGET)") $(if $(GRPC),--grpc "$(GRPC)") --report bench/results/conformance.json

.PHONY: chaos
chaos: gen ## Kill, crash and fault the whole system under load, then reconcile every ledger.
	$(PY) -m chaos

# Not in `make test`: SOAK_MINUTES (20 by default) of the fixed mixed load on the whole
# system as processes; the report goes to bench/results/soak.{json,md}, and a failed
# criterion (RSS growth, p99 drift, lost, duplicated, reconciliation) exits non-zero.
SOAK_MINUTES ?= 20
.PHONY: soak
soak: gen ## Soak the whole system SOAK_MINUTES (default 20) under mixed load; RSS, connections, p99 per minute.
	# First the soak's own machinery, run for seconds (tests/soak, marked soak: not in make test).
	$(BIN)/pytest -q -p no:randomly -m soak tests/soak
	$(PY) -m soak --minutes $(SOAK_MINUTES)

restore-drill: gen ## Back up every schema under load, restore into a new database, reconcile with Stripe; report in bench/results/.
	$(PY) -m chaos.restore_drill --report bench/results
