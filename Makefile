# Two entry points: `make demo` (install, then run the whole workflow on the demo cohort)
# and `make test` (install, then lint and run the test suite).
PYTHON ?= python3
CORES ?= $(shell nproc)

.PHONY: install demo test lint

install:
	$(PYTHON) -m pip install --quiet -e '.[all,dev]'

demo: install
	$(PYTHON) -m snakemake --cores $(CORES) --profile profiles/default
	@echo "summary: results/demo/summary.csv, report: results/demo/report.html"

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m snakemake --lint --cores 1

test: install lint
	$(PYTHON) -m pytest -q
