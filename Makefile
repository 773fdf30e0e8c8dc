# fruit360: `make train` runs the main job, `make test` checks everything (CPU, no internet needed).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install train test check-sync readme demo browser java docs docs-serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps imagecorruptions==1.1.2  # ImageNet-C's code (bench/imagenet_c.py); its metadata asks for the desktop OpenCV
	touch $@

install: $(VENV)/.installed

## The main job: get Fruits-360, check it, train and evaluate, export to ONNX and ship it, package it for MLflow.
## Training (02c_train): 26 epochs from scratch, then the last layer fitted anew to the training images' features.
train: install
	$(BIN)/fruit360 data
	$(BIN)/fruit360 train --refit-head
	$(BIN)/fruit360 export --ship
	$(BIN)/fruit360 package

## The upload-and-classify demo, served by Voila at http://127.0.0.1:8866
demo: install
	$(BIN)/voila apps/demo.ipynb --no-browser --port=8866 --Voila.ip=127.0.0.1

## Debian's Chromium for the browser test (Playwright drives it; no browser is downloaded).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "warning: could not install Debian's chromium (needs root): the browser test will be skipped"

## Debian's Java runtime for the Spark tests (pyspark starts a JVM; tests/test_spark.py).
java:
	@command -v java >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; } \
	  || echo "warning: could not install Debian's openjdk-17-jre-headless (needs root): the Spark tests will be skipped"


## Notebooks and modules in sync, then the notebook tests and pytest.
test: install check-sync browser java
	$(BIN)/nbdev-test
	$(BIN)/pytest

## nbdev-export and the README must leave the repository unchanged.
check-sync: install
	@tmp=$$(mktemp -d) && cp -r fruit360 README.md $$tmp/ && \
	$(BIN)/nbdev-export && $(MAKE) -s readme && \
	diff -r -x __pycache__ $$tmp/fruit360 fruit360 && diff $$tmp/README.md README.md || \
	{ echo "nbdev-export or the README changed files: commit what the notebooks generate"; exit 1; }

## README.md is generated from nbs/index.ipynb.
readme: install
	$(BIN)/jupyter nbconvert --log-level=ERROR --to markdown nbs/index.ipynb --output-dir . --output README

## The documentation site in _site/, from the notebooks and without Quarto (nbdev processes, MkDocs Material renders).
## With Quarto installed, nbdev-docs still builds nbdev's own Quarto site into _docs/.
docs: install
	$(BIN)/python tools/build_docs.py --out _site

## Serve the built site for reading at http://127.0.0.1:$(DOCS_PORT)
DOCS_PORT ?= 8000
docs-serve: docs
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory _site $(DOCS_PORT)

## The GPU check (one command on a GPU machine, which has no network and no fastai):
## `make gpu-pack` here fills $(GPU_DIR) with the wheels it lacks and a sample of the data, and refuses an upload over the limit;
## `make gpu-check` there installs them offline and runs the gpu tests, the throughput bench and a short training (results
## in $$GPU_CHECK_OUT, else $$OUT, else $(GPU_DIR)/results). `make test` runs both on the CPU (tests/test_gpu_check.py).
.PHONY: gpu-pack gpu-check
GPU_DIR ?= .gpu
GPU_TRAIN ?= 80
GPU_TEST ?= 20
GPU_LIMIT_MIB ?= 60
GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=

gpu-pack:
	@test -f $(VENV)/.installed || $(MAKE) install
	$(BIN)/python bench/gpu_pack.py --out $(GPU_DIR) --train $(GPU_TRAIN) --test $(GPU_TEST) --limit-mib $(GPU_LIMIT_MIB)

gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py --pack $(GPU_DIR) $(GPU_CHECK_ARGS)
