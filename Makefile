# crdswatch: `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck bench bench-fanout bench-scale clean

$(VENV)/.ok-base: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "crdswatch needs Python >= 3.11 (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e .
	@touch $@

$(VENV)/.ok-test: $(VENV)/.ok-base
	$(PIP) install -e '.[test,postgres]'
	@touch $@

$(VENV)/.ok-demo: $(VENV)/.ok-base
	$(PIP) install -e '.[demo]'
	@touch $@

demo: $(VENV)/.ok-demo
	$(VENV)/bin/crdswatch demo $(ARGS)  # make demo ARGS=--follow: keep serving, print the status page URL

test: $(VENV)/.ok-test
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory lint typecheck

lint: $(VENV)/.ok-test
	$(VENV)/bin/ruff check daemon tests bench

typecheck: $(VENV)/.ok-test
	$(VENV)/bin/mypy

bench: $(VENV)/.ok-test
	$(PY) bench/diff_vs_crds.py
	$(PY) bench/notice_sizes.py

# Fan-out to 1,000 and 10,000 e-mail subscribers on SQLite and PostgreSQL (CRDSWATCH_TEST_PG_URL,
# a database of its own: it is emptied) vs a naive smtplib sender; loopback only, ~5 minutes.
bench-fanout: $(VENV)/.ok-test
	$(PY) bench/fanout.py --list-members 10000

# Issue 10's figures: the fan-out above, the whole-history replay, latency, command-line start-up.
bench-scale: bench-fanout
	$(PY) bench/replay_history.py
	$(PY) bench/latency.py
	$(PY) bench/cli_start.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
