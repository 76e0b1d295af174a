# Two entry points: `make demo` (install, then run the whole workflow on the demo cohort)
# and `make test` (system packages and install, then lint and run the test suite).
PYTHON ?= python3
CORES ?= $(shell nproc)

.PHONY: install system-packages demo test lint

install:
	$(PYTHON) -m pip install --quiet -e '.[all,dev]'

demo: install
	$(PYTHON) -m snakemake --cores $(CORES) --profile profiles/default
	@echo "summary: results/demo/summary.csv, report: results/demo/report.html"

# Debian packages of the test suite (SLURM cluster with accounting, Chromium); only what is missing.
system-packages:
	bash ci/system-packages.sh

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m snakemake --lint --cores 1

test: system-packages install lint
	$(PYTHON) -m pytest -q
