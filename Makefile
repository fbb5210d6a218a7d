# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv with the pinned dependency set on first use and reuse it afterwards.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skelray-installed
PYTEST_ARGS ?=

export RAY_DISABLE_USAGE_STATS := 1
export WANDB_SILENT := true
# Two PyTorch thread pools spinning against each other on a 2-core machine run 10-30x slower.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo reproduce test test-slow bench venv lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/skelray sweep run sweeps/demo.yaml --set name=demo-$$(date +%Y%m%d-%H%M%S)

# The laptop-sized NW-UCLA study (about 2 h on 2 cores); the report goes to reports/nw_ucla/.
reproduce: $(STAMP)
	$(VENV)/bin/skelray study run studies/nw_ucla.yaml --size laptop --data $${SKELRAY_UCLA:-../shared/data/nw_ucla}

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^torch==' | \
	  { echo "# Pinned dependency set for skelray (regenerate with: make lock)."; \
	    echo "torch==2.13.0"; cat; echo "setuptools==$$($(PY) -c 'import setuptools; print(setuptools.__version__)')"; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
