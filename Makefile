# harmony: every target sets itself up (a local .venv with torch pinned to the CPU wheel).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo evaluate bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/harmony backtest --dataset gentd26 --policies all --cold-start 300 --sla 0.01 --sweep \
		--out results/backtest-gentd26 --force
	# a fast subset of the suite (bench/backtest_suite.py runs all of it): three traces, every policy, intervals
	$(BIN)/harmony backtest --suite --traces gentd26,servegen-m-large,servegen-m-mid --sla 0.01 \
		--out results/suite --force

evaluate: setup
	$(BIN)/harmony evaluate --dataset fisher --protocol harmony --lookback 72 \
		--models ar,ar-gauss,seasonal,last --out results/fisher_harmony_l72.csv --force

bench: setup
	$(BIN)/python bench/fisher_baselines.py
	$(BIN)/python bench/backtest_gentd26.py
	$(BIN)/python bench/decision_speed.py

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

# The built wheel, installed into a fresh venv (not editable, no test extra), run from outside the checkout.
.PHONY: wheel-check
wheel-check:
	PYTHON='$(PYTHON)' bash scripts/check_wheel.sh

# The operator's OCI image, built and smoke-run without a container registry (root, buildah, debootstrap):
# build/harmony-VERSION.oci.tar, VERSION being pyproject's. See docs/install.md.
.PHONY: image
image:
	PYTHON='$(PYTHON)' bash scripts/build_image.sh

clean:
	rm -rf $(VENV) results .pytest_cache
