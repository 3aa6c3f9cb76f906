# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap .venv first.
# `make check` is the quick loop while working: lint and the fast tests.
PYTHON ?= python3
# Parallel pytest workers. The suite mostly waits (sockets, PostgreSQL, simulated meters,
# Chromium), so more workers than cores pays off, up to a point: on 2 cores 4 workers took
# 944 s (922 CPU-s), 8 took 976 s (1,138 CPU-s, and two benches timed out under the load).
WORKERS ?= 4
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The exact versions `make` installs (and CI tests): requirements/*.lock, made from
# pyproject.toml's ranges by `make lock`, on purpose, never as a side effect.
LOCK   := requirements/dev.lock
EXTRAS := dev gateway server
COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --quiet \
          --custom-compile-command "make lock"
# openadr3-client, the independent client the OpenADR VTN is tested with, needs Python 3.12+
# and Kenshin runs on 3.11: its own environment (scripts/ensure-openadr-client).
OADR_VENV  := .venv-openadr
OADR_STAMP := $(OADR_VENV)/.stamp
OADR_LOCK  := requirements/openadr-client.lock

.PHONY: demo test check lint bench clean lock

$(STAMP): pyproject.toml $(LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (3.11 or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Renew the lock files from pyproject.toml: the newest versions its ranges allow. Commit
# them with the change that needed them (a new dependency, a raised floor), or on their
# own as "update locked dependencies" after `make test` passed on them.
# requirements/server.lock and gateway.lock are what a production install takes
# (docs/deploy.md).
lock: $(STAMP)
	$(COMPILE) $(addprefix --extra ,$(EXTRAS)) -o $(LOCK)
	$(COMPILE) --extra server -o requirements/server.lock
	$(COMPILE) --extra gateway -o requirements/gateway.lock
	$(BIN)/uv pip compile requirements/openadr-client.in --universal --python-version 3.12 \
	  --quiet --custom-compile-command "make lock" -o $(OADR_LOCK)
	$(BIN)/python -m pip install --quiet -r $(LOCK)

# Not made (and its test skipped) where no Python 3.12+ is found, unless CI=true.
$(OADR_STAMP): $(OADR_LOCK) scripts/ensure-openadr-client | $(STAMP)
	scripts/ensure-openadr-client $(OADR_VENV) $(OADR_LOCK)

demo: $(STAMP)
	$(BIN)/kenshin demo

test: $(STAMP) $(OADR_STAMP)
	scripts/ensure-services
	scripts/ensure-chromium
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup --durations=15

# The fast tests: not the slow or browser ones, and the storage tests on SQLite only
# (markers in pyproject.toml). Under two minutes on 2 cores; `make test` before pushing.
check: lint
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup -m "not slow and not browser and not postgresql"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(OADR_VENV) build .pytest_cache .hypothesis
