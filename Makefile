# mefnet: `make reproduce-table` runs the main job, `make test` the tests.
# Both create the virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Optional: dataset roots for the licensed datasets, in the environment or in local.mk
# (not tracked), e.g.
#   export MEFNET_CASME2_ROOT = /data/CASME2
#   export MEFNET_SAMM_ROOT = /data/SAMM
#   export MEFNET_SMIC_ROOT = /data/SMIC
# With all three, reproduce-table runs the paper's set (conf/reproduce/paper.yaml);
# Else, with MEFNET_FLOW_ROOT (a composite flow folder), the set `flows`
# (conf/reproduce/flows.yaml); without any, the same models and ablations on the
# built-in synthetic dataset. MEFNET_REPRODUCE_SET=paper|flows|synthetic chooses;
# ARGS='--only megc2019-am3f trainer.max_epochs=5' passes options and Hydra overrides
# (the same as `mefnet-reproduce ...`).
-include local.mk
export MEFNET_OUTPUT_DIR ?= $(CURDIR)/outputs
export MEFNET_DATA_DIR ?= $(CURDIR)/data

# Test tiers: test-unit (the tests that train nothing, read no real third-party data and
# start no console command in a new process, under a minute; tests/conftest.py marks them), test (every test but the slow ones: what
# CI runs first), test-slow (the long end-to-end runs), test-all (both).
.PHONY: install test test-unit test-slow test-all lint docs reproduce-table check-readme clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the local CPU build; a looser pin pulls GBs of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	# every other package at the version constraints.txt names (the README's figures were
	# computed with those; a dependency's new release can move them in the last digits).
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,face,onnx]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q -m "unit and not slow and not realdata and not command"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

# The synthetic set on fresh folders (about 13 min on 2 cores), then every synthetic figure
# docs/results.md quotes compared with the written table (part of test-slow, hence of CI).
# After `make reproduce-table` on the synthetic set, the comparison alone:
#   .venv/bin/python -m mefnet.report.readme_figures docs/results.md outputs/reproduce/synthetic
check-readme: $(STAMP)
	$(PY) -m pytest -q -m slow tests/test_reproduce_slow.py

# ruff, then the layer contracts of pyproject.toml ([tool.importlinter]): no subpackage
# imports one above it.
lint: $(STAMP)
	$(VENV)/bin/ruff check mefnet tests benchmarks tools
	$(VENV)/bin/lint-imports

# The documentation site into site/ (not tracked): the docs extra (MkDocs, Material,
# mkdocstrings) joins the same .venv at the versions of constraints.txt, then a strict
# build, which fails on a broken link, a page missing from the nav, an API object that
# no longer exists or a generated reference (docs/configuration.md, docs/cli.md) that is
# out of date. Nothing is downloaded at build time.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,face,onnx,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

reproduce-table: $(STAMP)
	$(PY) -m mefnet.experiment.reproduce $(ARGS)

clean:
	rm -rf outputs .pytest_cache site
