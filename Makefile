# The two commands a new user needs: `make demo` and `make test`. Everything else is optional.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test lint typecheck unit slow bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

demo: $(STAMP)  ## the daemon on the embedded default (SQLite + bundled simulator) with the TUI attached
	$(BIN)/storesync demo

test: $(STAMP) lint typecheck unit  ## everything CI runs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy daemon channels tui tests $(wildcard bench)

unit: $(STAMP)
	$(BIN)/pytest -q

slow: $(STAMP)  ## the long soak and chaos runs
	$(BIN)/pytest -q -m slow

bench: $(STAMP)  ## prints the figures quoted in the README
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var build *.egg-info
