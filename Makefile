# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make run    install into .venv, then run the whole pipeline on generated demo data
#   make test   install into .venv, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: install run test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: install
	$(BIN)/recsys run $(ARGS)

test: install
	$(BIN)/pytest $(ARGS)

bench: install
	$(BIN)/python -m benchmarks.run_all $(ARGS)

clean:
	rm -rf $(VENV) warehouse/home target logs
