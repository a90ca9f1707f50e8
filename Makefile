# Two entry points for a fresh clone: `make run` (the dashboard) and `make test` (the whole suite).
# Both create .venv on first use and reinstall only when a requirements file changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

# One local user: only this machine can connect, and server paths may name anything in the
# home folder (unless ATTRIBUTION_DASHBOARD_DATA_ROOTS says otherwise; set it empty for none).
run: $(VENV)/.runtime-installed
	ATTRIBUTION_DASHBOARD_DATA_ROOTS="$${ATTRIBUTION_DASHBOARD_DATA_ROOTS-$$HOME}" \
		$(BIN)/streamlit run serve.py --server.address 127.0.0.1

test: $(VENV)/.test-installed
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy
	tools/ensure_chromium.sh
	$(BIN)/python -m pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.runtime-installed
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@

clean:
	rm -rf $(VENV)
