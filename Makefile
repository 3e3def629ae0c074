# Driftline: `make run` (embedded default, nothing else needed) and `make test` (the whole suite
# against a real Kafka broker and Redis server that the test session starts itself).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test kernels lint bench bench-accuracy bench-deps bench-gpu bench-throughput services-up services-down system-deps kafka-jars clean

# The environment: created once, refreshed when pyproject.toml changes.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3.x ...'"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# Debian packages the tests need: a Redis server, Java + Maven for the Kafka broker, and
# Chromium with its WebDriver for the dashboard's browser test.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Apache Kafka's broker jars, fetched once with Maven into ~/.cache/driftline.
kafka-jars: $(STAMP) system-deps
	$(PY) -c "from connectors.services import ensure_kafka_jars; print('kafka jars in', ensure_kafka_jars())"

# The neural learner's compiled passes, built once into numba's cache (about 15 s, then
# half a second to load), so that no worker or test pays for it at its first event.
kernels: $(STAMP)
	$(PY) -c "from learners.neural_kernels import warm; warm()"

run: $(STAMP) kernels
	$(VENV)/bin/driftline run $(ARGS)

test: $(STAMP) system-deps kafka-jars kernels
	$(PY) -m pytest $(PYTEST_ARGS)
	PY=$(PY) bash tests/kernels.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

services-up: $(STAMP) system-deps
	$(VENV)/bin/driftline services up

services-down: $(STAMP)
	$(VENV)/bin/driftline services down

bench: bench-throughput

# MOA (CapyMOA + its jar) for the benches' MOA rows; the tests skip those without it.
bench-deps: $(STAMP) system-deps
	$(PY) -m pip install -q -e '.[dev,bench]'

bench-throughput: $(STAMP)
	$(PY) -m bench.throughput $(ARGS)

bench-accuracy: $(STAMP)
	$(PY) -m bench.accuracy --quick --jobs 2 $(ARGS)

bench-gpu: $(STAMP)
	PYTHON=$(PY) bash bench/gpu_check.sh

clean:
	rm -rf .driftline .pytest_cache .ruff_cache
