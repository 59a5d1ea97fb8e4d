# edge-depth: every entry point a user or CI needs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Torch is pinned to the CPU build so that `make install` never pulls gigabytes of CUDA packages.
# Where no +cpu wheel is known to pip yet, point TORCH_INDEX at PyTorch's CPU wheel index.
TORCH := torch==2.13.0+cpu
TORCH_INDEX ?=
MODELS ?= models
CONFIG ?= config/edge-depth.yaml
PYTEST_ARGS ?=
# `make soak`: how long the soak under faults runs (s).
SOAK_S ?= 3600
# `make model`: the official weights are downloaded unless WEIGHTS= (a local .pt) or ONNX= (model-small.onnx) is
# given; IRs that exist are kept unless FORCE=1.
WEIGHTS ?=
ONNX ?=
PRECISIONS ?= fp32,int8
FORCE ?=
# `make install-service`: where the service goes (see systemd/install.sh).
PREFIX ?= /usr/local
DESTDIR ?=
ACCELERATORS ?=

.PHONY: help install model run test soak lint bench clean install-service

help:
	@echo "make install   virtual environment in $(VENV) with runtime, conversion (torch CPU, NNCF) and dev tools"
	@echo "make model     download the official MiDaS v2.1 small weights and convert them to $(MODELS)/ (FP32, INT8);"
	@echo "               WEIGHTS=file.pt or ONNX=model-small.onnx to convert local weights, FORCE=1 to redo"
	@echo "make run       install, convert the model if missing, run the daemon with $(CONFIG) (broker: localhost:1883)"
	@echo "make test      the test suite (needs mosquitto, ffmpeg and GStreamer's RTSP server: see .ci/run)"
	@echo "make soak      the daemon for an hour under broker and RTSP restarts; RSS, threads and open files must stay"
	@echo "               flat (make test runs it for 10 minutes; SOAK_S=seconds to change)"
	@echo "make lint      ruff, mypy (package and tests) and the import contracts (lint-imports)"
	@echo "make bench     benchmark command (edge-depth bench)"
	@echo "make install-service   (as root) runtime-only install under $(PREFIX)/lib/edge-depth, config in"
	@echo "               /etc/edge-depth, systemd unit enabled and started; DESTDIR=dir stages it instead"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) '$(TORCH)'
	$(PY) -m pip install --quiet -e '.[convert,dev]'
	touch $@

model: install
	@if [ -f $(MODELS)/midas_small_int8.xml ] && [ -z "$(FORCE)" ]; then \
	  echo "$(MODELS)/midas_small_int8.xml exists; FORCE=1 converts again"; \
	else \
	  $(BIN)/edge-depth convert --out $(MODELS) --precision $(PRECISIONS) \
	    $(if $(WEIGHTS),--weights '$(WEIGHTS)') $(if $(ONNX),--onnx '$(ONNX)'); \
	fi

# The daemon's main job in one command: environment, model (converted once), then the daemon.
run: install $(MODELS)/midas_small_int8.xml
	$(BIN)/edge-depth run --config $(CONFIG)

$(MODELS)/midas_small_int8.xml:
	$(MAKE) model

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

soak: install
	EDGE_DEPTH_SOAK_S=$(SOAK_S) $(PY) -m pytest tests/test_soak.py -s $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

install-service: $(MODELS)/midas_small_int8.xml
	PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' MODELS='$(MODELS)' ACCELERATORS='$(ACCELERATORS)' bash systemd/install.sh

bench: install
	$(BIN)/edge-depth bench --models $(MODELS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
