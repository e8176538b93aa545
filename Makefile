# Set-up and checks. `make demo` and `make test` do everything on a fresh machine.
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DATA := data/synthetic

.PHONY: install demo test test-fast lint bench clean-venv

install: $(STAMP)

# Re-installs only when the project's dependencies change (idempotent).
$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Synthetic data (made once), then a density classifier trained on CPU (2-4 minutes on 2 cores).
demo: install
	test -f $(DEMO_DATA)/classificacao.csv || $(VENV)/bin/mammography synth --out $(DEMO_DATA) --exams 100
	$(VENV)/bin/mammography train-density --config configs/demo.yaml
	@latest=$$(ls -d outputs/demo/results_* | sort -t_ -k2 -n | tail -1); \
	echo ""; echo "Artifacts of this run: $$latest"; ls $$latest; \
	echo "Try: jq .best_val_kappa $$latest/summary.json; grep 'New best' $$latest/run.log"

# Two workers: most tests run the CLI in its own process, so both cores stay busy. A module
# is one unit; modules sharing PostgreSQL or Ray run on one worker; the longest go first
# (tests/conftest.py).
test: install
	$(PYTHON) -m pytest -m "not gpu" -n 2 --dist loadscope --no-loadscope-reorder

test-fast: install
	$(PYTHON) -m pytest -m "not gpu and not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: install
	$(PYTHON) benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
