# Kehu: `make run` to try it, `make test` to check it. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
KEHU_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/kehu
export KEHU_TEST_DATABASE_URL

.PHONY: help install install-dev catalogs migrate run test lint typecheck layers migrations-check \
        test-sqlite test-postgres bench vendor clean

help:
	@echo "make run    install, migrate, create the first admin, serve on http://127.0.0.1:8000"
	@echo "make test   install dev tools, lint, type-check, layer check, tests on SQLite then PostgreSQL"
	@echo "make bench  run the benchmarks and rewrite docs/benchmarks.md"
	@echo "make vendor refresh the vendored front-end files from pinned npm packages"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed catalogs
install-dev: $(VENV)/.installed-dev catalogs

# Translation catalogs are compiled from the committed .po files (no GNU gettext needed).
catalogs: $(VENV)/.installed
	$(PY) scripts/compile_catalogs.py

migrate: install
	$(BIN)/kehu migrate --no-input

run: migrate
	$(BIN)/kehu createadmin --no-input --if-none
	$(BIN)/kehu serve --host 127.0.0.1 --port 8000

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check kehu tests bench scripts

typecheck: install-dev
	$(BIN)/mypy kehu

layers: install-dev
	$(BIN)/lint-imports

migrations-check: install-dev
	$(BIN)/kehu manage makemigrations --check --dry-run

test-sqlite: install-dev
	@echo "== tests on SQLite =="
	KEHU_DATA_DIR=$(CURDIR)/var/test-sqlite KEHU_DATABASE_URL= scripts/run_pytest.sh

test-postgres: install-dev
	@if $(PY) scripts/postgres_reachable.py "$(KEHU_TEST_DATABASE_URL)"; then \
	  echo "== tests on PostgreSQL ($(KEHU_TEST_DATABASE_URL)) =="; \
	  KEHU_DATA_DIR=$(CURDIR)/var/test-postgres KEHU_DATABASE_URL="$(KEHU_TEST_DATABASE_URL)" scripts/run_pytest.sh; \
	else \
	  echo "== SKIPPED: PostgreSQL tests, $(KEHU_TEST_DATABASE_URL) is not reachable =="; \
	fi

test: lint typecheck layers migrations-check test-sqlite test-postgres

bench: install-dev
	$(PY) bench/run.py

vendor:
	scripts/vendor_assets.sh

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
