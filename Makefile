# rnnlm: everything a fresh machine needs is set up from here, idempotently.
#   make demo    train a small word model, rescore the ASR candidates, sample
#   make test    fmt check, clippy, unit and end-to-end tests, docs

SHELL := /bin/bash
VENV := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
TORCH_VERSION := 2.11.0
SETUP_STAMP := $(VENV)/.torch-$(TORCH_VERSION).stamp
BIN := target/release/rnnlm

# tch builds against the torch of the project's venv.
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup build test demo train-word train-char score sample bench gpu-check datasets clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP):
	@command -v python3 >/dev/null || { echo "setup: python3 not found; install Python 3.9+ (e.g. apt-get install python3 python3-venv)" >&2; exit 1; }
	@test -x $(PYTHON) || python3 -m venv $(VENV) || { echo "setup: 'python3 -m venv .venv' failed; install python3-venv" >&2; rm -rf $(VENV); exit 1; }
	@$(PYTHON) -m pip install --quiet torch==$(TORCH_VERSION) || { echo "setup: 'pip install torch==$(TORCH_VERSION)' failed; check the connection to PyPI and free disk (~5 GB), then run make setup again" >&2; exit 1; }
	@$(PYTHON) -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" || { echo "setup: the venv's torch is not $(TORCH_VERSION)" >&2; exit 1; }
	@touch $@
	@echo "setup: torch $(TORCH_VERSION) ready in .venv"

build: $(SETUP_STAMP)
	cargo build --release

$(BIN): build

test: $(SETUP_STAMP)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo build --release
	cargo test --release
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

datasets:
	python3 datasets/regenerate.py --check

clean:
	cargo clean
