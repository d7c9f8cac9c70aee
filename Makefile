# One command to set up and run the main job (`make demo`), one to set up and pass the tests (`make test`).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1

.PHONY: setup demo test bench lock clean

setup: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements/lock.txt
	$(PY) -m pip install -qq --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/worth select --input digits --objective vendi --k 20 --out demo-selection.json

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/gains.py

# Re-resolve the pinned lock from requirements/base.in (needs the registry).
lock:
	rm -rf /tmp/worth-lock && $(PYTHON) -m venv /tmp/worth-lock
	/tmp/worth-lock/bin/pip install -qq -r requirements/base.in
	/tmp/worth-lock/bin/pip freeze --exclude-editable > requirements/lock.txt

clean:
	rm -rf $(VENV) .pytest_cache
