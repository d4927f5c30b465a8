# specdecode: `make demo` runs the main demo on the bundled real model, `make test` runs the tests.
# Both create the virtual environment they need (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo lint test test-all exactness simulate bench-generate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(PY) -m pip install --quiet -e '.[dev,llama,serve]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/specdecode demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

exactness: $(STAMP)
	$(VENV)/bin/specdecode exactness --mutants

simulate: $(STAMP)
	$(VENV)/bin/specdecode simulate --draft-length 5 --target-length 50 --acceptance-rate 0.75 --draft-cost 0.1 --seed 42

bench-generate: $(STAMP)
	$(VENV)/bin/specdecode bench-generate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
