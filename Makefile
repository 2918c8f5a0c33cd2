# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each builds .venv from the pinned lock when it is missing or older than the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: venv demo serve test lint lock clean bench chaos

$(STAMP): requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	DC2_DEMO_DIR=$(abspath $(DEMO_DIR)) $(BIN)/dc2 demo --workdir $(DEMO_DIR)

# airflow standalone with these DAGs, reached on http://127.0.0.1:8080 only; prints the login.
serve: $(STAMP)
	DC2_DEMO_DIR=$(abspath $(DEMO_DIR)) $(BIN)/dc2 serve --workdir $(DEMO_DIR)

# Several pytest-xdist workers: most tests wait (on Airflow, Slurm, a browser), not compute. The
# tests of the loopback cluster share one worker and one cluster (tests/conftest.py).
PYTEST_WORKERS ?= 4
test: $(STAMP)
	bash tests/cluster/system-deps.sh
	$(BIN)/ruff check dc2tasks tests benchmarks
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check dc2tasks tests benchmarks

# Whole data runs under faults on the loopback Slurm (needs root; about an hour with 20 runs): prints
# the tally and writes it to $(CHAOS_TALLY). tests/airflow/test_chaos_cluster.py says what is checked.
CHAOS_RUNS ?= 20
CHAOS_CONCURRENCY ?= 4
CHAOS_WINDOW_S ?= 1200
CHAOS_GAP_S ?= 9
CHAOS_SEED ?= $(shell date +%s)
CHAOS_TALLY ?= chaos-tally.json
chaos: $(STAMP)
	bash tests/cluster/system-deps.sh
	DC2_CHAOS_RUNS=$(CHAOS_RUNS) DC2_CHAOS_CONCURRENCY=$(CHAOS_CONCURRENCY) DC2_CHAOS_WINDOW_S=$(CHAOS_WINDOW_S) \
	DC2_CHAOS_GAP_S=$(CHAOS_GAP_S) DC2_CHAOS_SEED=$(CHAOS_SEED) DC2_CHAOS_TALLY=$(abspath $(CHAOS_TALLY)) \
	$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/airflow/test_chaos_cluster.py

bench: $(STAMP)
	$(BIN)/python benchmarks/object_pipeline.py
	$(BIN)/python benchmarks/visit_products.py
	$(BIN)/python benchmarks/inventory.py
	$(BIN)/python benchmarks/qa.py
	$(BIN)/python benchmarks/slurm_polling.py

# Rebuild the lock from requirements/requirements.in in a scratch venv.
lock:
	rm -rf /tmp/dc2-lock-venv
	$(PYTHON) -m venv /tmp/dc2-lock-venv
	/tmp/dc2-lock-venv/bin/pip install --quiet -r requirements/requirements.in
	/tmp/dc2-lock-venv/bin/pip freeze --exclude-editable > requirements/lock.txt

clean:
	rm -rf $(VENV) $(DEMO_DIR)
