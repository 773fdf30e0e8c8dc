# fruit360: `make train` runs the main job, `make test` checks everything (CPU, no internet needed).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install train test check-sync readme demo browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## The main job: get Fruits-360, check it, train and evaluate, export to ONNX and ship it, package it for MLflow.
train: install
	$(BIN)/fruit360 data
	$(BIN)/fruit360 train
	$(BIN)/fruit360 export --ship
	$(BIN)/fruit360 package

## The upload-and-classify demo, served by Voila at http://127.0.0.1:8866
demo: install
	$(BIN)/voila apps/demo.ipynb --no-browser --port=8866 --Voila.ip=127.0.0.1

## Debian's Chromium for the browser test (Playwright drives it; no browser is downloaded).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "warning: could not install Debian's chromium (needs root): the browser test will be skipped"


## Notebooks and modules in sync, then the notebook tests and pytest.
test: install check-sync browser
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
