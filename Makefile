# weft: two commands on a fresh machine that has only Python and make.
#   make demo   set up, then run the end-to-end demo
#   make test   lint, type-check and test on the default CPython, then on a
#               free-threaded CPython with the GIL off
# For contributors:
#   make test-fast    both interpreters, without the tests marked slow (the inner loop)
#   make test-stress  the whole suite on both interpreters while a CPU hog runs on every core
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
FT_VENV := .venv-ft
FT_CONSTRAINTS := ../shared/ft-constraints.txt
FT_LOCATOR := ../shared/tools/ft-python
# ray and dask (cluster backends) publish no free-threaded wheels: GIL leg only.
# ui-test (playwright) drives the runs page in Debian's chromium; on 3.13t its greenlet
# re-enables the GIL, so the browser tests skip there.
EXTRAS := dev,serve,onnx,ray,dask,ui-test
# ruff and mypy run on the GIL leg only (mypy has no free-threaded wheel).
FT_EXTRAS := test,serve,onnx
# Test peers installed where a wheel exists for the interpreter; their tests skip otherwise.
OPTIONAL := safetensors tritonclient[http] numba onnx httptools uvloop orjson
# Test peers for the GIL leg only (on 3.13t they would re-enable the GIL on import).
GIL_ONLY := tensorboard
PIP_QUIET := --quiet --disable-pip-version-check
# Extra pytest arguments for both legs (test-fast sets -m "not slow").
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-stress test-gil test-ft lint bench clean

$(VENV)/.stamp: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV)/bin/pip install $(PIP_QUIET) -e '.[$(EXTRAS)]'
	@# torch interop and TorchScript models are tested where torch installs (CPU wheel).
	$(VENV)/bin/pip install $(PIP_QUIET) 'torch==2.13.0' || echo "weft: torch not installed; its tests will be skipped"
	for p in $(OPTIONAL) $(GIL_ONLY); do $(VENV)/bin/pip install $(PIP_QUIET) --only-binary :all: "$$p" || echo "weft: $$p not installed; its tests will be skipped"; done
	touch $@

demo: $(VENV)/.stamp
	$(VENV)/bin/weft doctor
	$(VENV)/bin/weft demo

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check src tests benchmarks examples tools
	$(VENV)/bin/mypy

# Bytecode first: the suite starts many worker processes, and where the environment
# forbids writing bytecode (PYTHONDONTWRITEBYTECODE) each would compile weft again. The
# free-threaded interpreter is unpacked without bytecode for its standard library: it is
# compiled once, as an install would (else every process compiles ast, inspect, ...).
test-gil: $(VENV)/.stamp
	$(VENV)/bin/python -m compileall -q src
	@echo "== weft tests on $$($(VENV)/bin/python -VV | head -1) =="
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The free-threaded leg: WEFT_FT_PYTHON, else the 3.13t that the shared locator prints.
test-ft:
	@ft="$${WEFT_FT_PYTHON:-}"; \
	if [ -z "$$ft" ] && [ -x "$(FT_LOCATOR)" ]; then ft=$$("$(FT_LOCATOR)") || ft=""; fi; \
	if [ -z "$$ft" ]; then \
	  echo "weft: SKIPPING the free-threaded leg: set WEFT_FT_PYTHON to a python3.13t (none found)"; exit 0; fi; \
	if [ ! -f $(FT_VENV)/.stamp ] || [ pyproject.toml -nt $(FT_VENV)/.stamp ] || [ Makefile -nt $(FT_VENV)/.stamp ]; then \
	  rm -rf $(FT_VENV) && "$$ft" -m venv $(FT_VENV) && \
	  cons=""; [ -f "$(FT_CONSTRAINTS)" ] && cons="-c $(FT_CONSTRAINTS)"; \
	  $(FT_VENV)/bin/pip install $(PIP_QUIET) --upgrade pip && \
	  $(FT_VENV)/bin/pip install $(PIP_QUIET) $$cons -e '.[$(FT_EXTRAS)]' && \
	  for p in $(OPTIONAL); do $(FT_VENV)/bin/pip install $(PIP_QUIET) --only-binary :all: $$cons "$$p" || echo "weft: $$p not installed on the free-threaded leg; its tests will be skipped"; done && \
	  touch $(FT_VENV)/.stamp || exit 1; \
	fi; \
	"$$ft" -m compileall -q -j0 -x '/(test|tests|idlelib|lib2to3|turtledemo)/' \
	  "$$("$$ft" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" >/dev/null 2>&1 || \
	  echo "weft: could not compile the free-threaded interpreter's standard library; its processes will compile what they import"; \
	$(FT_VENV)/bin/python -m compileall -q src || exit 1; \
	echo "== weft tests on $$($(FT_VENV)/bin/python -VV | head -1) ($$ft) =="; \
	$(FT_VENV)/bin/python -m pytest $(PYTEST_ARGS)

test: lint test-gil test-ft

test-fast: lint
	$(MAKE) test-gil test-ft PYTEST_ARGS='-m "not slow"'

# A busy CI runner: one CPU-bound process per usable core beside the whole suite.
test-stress: $(VENV)/.stamp
	$(PYTHON) tools/cpu_hog.py -- $(MAKE) test-gil test-ft

bench: $(VENV)/.stamp
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) $(FT_VENV) build dist .mypy_cache .ruff_cache
