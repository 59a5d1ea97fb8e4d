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

.PHONY: help install model run test lint bench clean

help:
	@echo "make install   virtual environment in $(VENV) with runtime, conversion (torch CPU, NNCF) and dev tools"
	@echo "make model     download the official MiDaS v2.1 small weights and convert them to $(MODELS)/ (FP32, INT8)"
	@echo "make run       install, convert the model if missing, run the daemon with $(CONFIG) (broker: localhost:1883)"
	@echo "make test      the test suite (needs mosquitto, ffmpeg and GStreamer's RTSP server: see .ci/run)"
	@echo "make lint      ruff and mypy"
	@echo "make bench     benchmark command (edge-depth bench)"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) '$(TORCH)'
	$(PY) -m pip install --quiet -e '.[convert,dev]'
	touch $@

model: install
	$(BIN)/edge-depth convert --out $(MODELS) --precision fp32,int8

# The daemon's main job in one command: environment, model (converted once), then the daemon.
run: install $(MODELS)/midas_small_int8.xml
	$(BIN)/edge-depth run --config $(CONFIG)

$(MODELS)/midas_small_int8.xml:
	$(MAKE) model

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/edge-depth bench --models $(MODELS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
