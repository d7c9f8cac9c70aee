# One command to set up and run the main job (`make demo`), one to set up and pass the tests (`make test`).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1

.PHONY: setup system-deps demo test test-fast bench lock clean

setup: $(STAMP) system-deps

# Fashion-MNIST ships as a Debian package (not a pip one): installed when we can (root + apt), else a note.
system-deps:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian package dataset-fashion-mnist"; \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) || \
	  echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	else echo "note: 'sudo apt-get install dataset-fashion-mnist' enables the Fashion-MNIST source"; fi
	@sh infra/system-deps.sh

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements/lock.txt
	$(PY) -m pip install -qq --no-deps -e .
	touch $(STAMP)

# The main job on an embedded default: nightly curation of scikit-learn's digits delivered in two nights (1,000
# items, then 1,797), with one local Prefect server, a Dask LocalCluster, a Zarr store and MLflow on SQLite, all
# under demo/. Prints what was curated (ids, classes), writes demo/curated.png and how to open both UIs.
# Rerunning changes nothing; `rm -rf demo` starts over.
demo: setup
	$(VENV)/bin/worth demo --out demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The developer's loop: no Prefect server, no Dask cluster, nothing marked slow (flow tests are marked `flow`
# automatically, by the session fixtures they use). `make test` stays the full suite, as CI runs it.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not flow and not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/gains.py

# Re-resolve the pinned lock from requirements/base.in (needs the registry).
lock:
	rm -rf /tmp/worth-lock && $(PYTHON) -m venv /tmp/worth-lock
	/tmp/worth-lock/bin/pip install -qq -r requirements/base.in
	/tmp/worth-lock/bin/pip freeze --exclude-editable > requirements/lock.txt

clean:
	rm -rf $(VENV) .pytest_cache
