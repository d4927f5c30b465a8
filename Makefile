# specdecode: `make demo` runs the main demo on the bundled real model, `make test` runs the tests.
# Both create the virtual environment they need (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo lint test test-all exactness simulate bench-generate llama-server clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(PY) -m pip install --quiet -e '.[dev,llama,serve]'
	# arctic-inference (the suffix drafter's C++ suffix trees) has no wheel: built against the pinned torch
	$(PY) -m pip install --quiet 'nanobind==2.9.2' ninja grpcio-tools 'protobuf==5.29.6' setuptools wheel
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pip install --quiet --no-build-isolation --no-deps arctic-inference==0.3.0
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

# llama.cpp's own llama-server, built once from the llama.cpp tree vendored in the pinned llama-cpp-python sdist
# (optional: the benches' C++ anchor; not part of make test)
llama-server: $(STAMP)
	CMAKE_BUILD_PARALLEL_LEVEL=2 PY=$(PY) scripts/build-llama-server.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
