# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench system-deps clean

$(BIN)/whaled: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/whaled
	$(BIN)/whaled demo $(DEMO_ARGS)

system-deps:
	bash scripts/install-system-deps.sh

lint: $(BIN)/whaled
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/whaled
	$(BIN)/mypy

unit: $(BIN)/whaled
	$(BIN)/pytest $(PYTEST_ARGS)

test: system-deps lint typecheck unit

bench: $(BIN)/whaled
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache artifacts
