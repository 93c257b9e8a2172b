# APG Central Configuration: `make test` sets everything up and runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-unit test-integration test-load lint bench faults docs screenshot clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/apgcfg run

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

test-unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

test-integration: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

test-load: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m load tests

lint: install
	$(BIN)/ruff check apgcfg config_core workers connectors tests bench
	$(BIN)/mypy apgcfg config_core connectors workers

faults: install
	$(BIN)/python -m tests.faults.run

bench: install
	$(BIN)/python -m bench.run

screenshot: install
	APGCFG_UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/integration/test_flower.py

docs: install
	$(BIN)/python -m connectors.docs > docs/connectors.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
