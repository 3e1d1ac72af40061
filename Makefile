# The two commands of the README: `make demo` (main job on the embedded default) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow lint

setup:
	./scripts/setup.sh

demo: setup
	$(BIN)/dama demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
