# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make run    install into .venv, then run the whole pipeline on generated demo data
#   make test   install into .venv, lint (make lint), then run the test suite
# Installs take the exact versions in constraints.txt; `make lock` refreshes them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
LOCK   := constraints.txt

.PHONY: install lock run test lint bench openapi clean

install: $(VENV)/.installed

# A fresh venv holding exactly the lock. -c pins what is installed;
# --build-constraint pins the build backend of the editable install.
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet -c $(LOCK) pip setuptools
	$(BIN)/pip install --quiet -c $(LOCK) --build-constraint $(LOCK) -e '.[test,als,spark]'
	touch $@

# Newest releases that pyproject admits, in a throwaway venv, frozen into the lock
# (names normalized, sorted, without recsys). Then run the suite and commit both.
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && \
	"$$tmp/bin/pip" install --quiet --upgrade pip setuptools && \
	"$$tmp/bin/pip" install --quiet -e '.[test,als,spark]' && \
	{ echo "# The exact versions 'make install' installs: pip, setuptools (the build backend), .[test,als,spark]."; \
	  echo "# Written by 'make lock': the newest releases pyproject.toml admits, in a fresh venv."; \
	  echo "# To upgrade: widen a range in pyproject.toml if needed, 'make lock', 'make test', commit both."; \
	  "$$tmp/bin/pip" list --format=freeze --exclude-editable \
	    | awk -F'==' '{n = tolower($$1); gsub(/[-_.]+/, "-", n); print n "==" $$2}' \
	    | LC_ALL=C sort -t= -k1,1; } > $(LOCK).new && \
	mv $(LOCK).new $(LOCK)

run: install
	$(BIN)/recsys run $(ARGS)

# Lint first: CI (.ci/run = make test) fails on a lint error as on a failed test.
# Two workers, each given whole modules (their fixtures build once), the longest modules first
# (tests/conftest.py): the suite is mostly single-threaded Python.
test: install lint
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder $(ARGS)

# Not yet part of `test`: the Python is not ruff-formatted yet. sqlfluff takes its templater
# from the working directory's .sqlfluff only (dbt), so the plain-SQL queries get theirs here.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project
	$(BIN)/sqlfluff lint --templater placeholder warehouse/queries

bench: install
	$(BIN)/python -m benchmarks.run_all $(ARGS)

# The service's schema, committed so clients see it without running it (a test compares them).
openapi: install
	$(BIN)/python -c 'from ml.serving.api import openapi_json; print(openapi_json(), end="")' > docs/openapi.json

clean:
	rm -rf $(VENV) warehouse/home target logs
