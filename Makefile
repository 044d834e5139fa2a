# The two commands: `make run` (embedded stack) and `make test` (the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test unit reliability lint system-deps bench clean

# torch 2.13.0 first: the CPU build (a bare `torch` would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip check
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/astrostream up

# docker-compose validates compose.yaml and promtool the Prometheus config (no engine needed);
# chromium + chromium-driver drive the web app's browser test (no browser download).
system-deps:
	@command -v docker-compose >/dev/null && command -v promtool >/dev/null \
	  && command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends docker-compose prometheus chromium chromium-driver >/dev/null; }

# The import contract (pyproject's [tool.importlinter]) makes a new dependency cycle fail CI.
lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The fast loop: pure-logic tests, no broker, no worker process, no deployment tools.
unit: $(STAMP)
	$(VENV)/bin/pytest -q -m "not integration and not deploy" tests/unit

test: $(STAMP) system-deps lint
	$(VENV)/bin/pytest -q -ra -m "not reliability"

# Kills, 5,000 poison records, a lost worker (~15 min on 2 cores); results: docs/reliability.md.
reliability: $(STAMP)
	$(VENV)/bin/pytest -q -ra -s --timeout 3600 -m reliability tests/reliability

bench: $(STAMP)
	$(VENV)/bin/astrostream bench pipeline

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
