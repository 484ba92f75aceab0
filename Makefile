# Two commands set up and run everything on a fresh CPU machine (see README):
#   make demo   -> creates .venv (CPU torch pinned by constraints-cpu.txt) and runs `mepipe demo`
#   make test   -> creates .venv if needed and runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mepipe-installed
# Where the CPU torch comes from. Empty: the indexes pip is configured with (this machine serves the CPU
# build of torch==2.13.0). On a machine that sees only PyPI, where torch==2.13.0 is the CUDA build:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: demo test lint bench wheel-test clean

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PY) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/pip install --quiet --index-url $(TORCH_INDEX) torch==2.13.0)
	$(BIN)/pip install --quiet -c constraints-cpu.txt -e '.[test]'
	$(BIN)/pip install --quiet --no-deps face-alignment==1.5.0  # FAN model code only (see pyproject fan extra)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mepipe demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mepipe tests benchmarks
	$(BIN)/ruff format --check mepipe tests benchmarks

wheel-test:
	PY=$(PY) bash tests/wheel_smoke.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/build_throughput.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
