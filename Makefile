# cnnlab: `make demo` trains the default model on scikit-learn's digits; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cnnlab-installed
TCMALLOC := /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4

.PHONY: install demo test test-all lint system-deps clean bench-env bench

# torch first and pinned: the CPU wheel; an unpinned torch pulls gigabytes of CUDA packages
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP) system-deps

# Best effort, where we run as root with apt: tcmalloc (faster training, docs/benchmarks.md)
# and Chromium (the test that renders report.html). cnnlab and its tests work without them.
SYSTEM_PACKAGES := libtcmalloc-minimal4 chromium
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	   { [ ! -f $(TCMALLOC) ] || ! command -v chromium >/dev/null; }; then \
		(apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1)) \
		|| echo "note: could not install $(SYSTEM_PACKAGES); cnnlab runs slower and the browser test skips"; \
	fi

demo: install
	$(BIN)/cnnlab train --model lenet5 --data digits --epochs 15 --out runs

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

# The Keras/TensorFlow reference for benchmarks/throughput.py lives in its own virtual
# environment so that TensorFlow's libraries never share a process with cnnlab's torch.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
$(BENCH_STAMP): benchmarks/keras_reference/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -r benchmarks/keras_reference/requirements.txt
	touch $@

bench-env: $(BENCH_STAMP)

bench: install bench-env
	$(BIN)/python benchmarks/throughput.py --keras-python $(BENCH_VENV)/bin/python

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs .pytest_cache .ruff_cache
