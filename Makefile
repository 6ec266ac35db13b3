# Two entry points, each creating .venv on first use:
#   make demo  - install fastconv with TensorFlow, compile the common kernels, run `fastconv compare`
#   make test  - install the test extras and run the whole pytest suite (CUDA: simulator + compiler)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[tf,plot]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/fastconv warmup
	$(BIN)/fastconv compare

# The simulator run records every kernel tests/cuda launches into build/cuda-inventory; the
# main suite then compiles each of them (and the workloads' kernels) with NVVM and ptxas.
INVENTORY := build/cuda-inventory

test: $(VENV)/.test-installed
	rm -rf $(INVENTORY)
	NUMBA_ENABLE_CUDASIM=1 FASTCONV_CUDA_INVENTORY=$(INVENTORY) $(BIN)/python -m pytest -q -n auto tests/cuda
	FASTCONV_CUDA_INVENTORY=$(INVENTORY) $(BIN)/python -m pytest -q -n auto --durations=15

bench: $(VENV)/.test-installed
	$(BIN)/python -m pytest benchmarks/ --benchmark-only -q

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
