# rnnlm: everything a fresh machine needs is set up from here, idempotently.
#   make demo    train a small word model, rescore the ASR candidates, sample
#   make test    fmt check, clippy, unit and end-to-end tests, docs

SHELL := /bin/bash
VENV := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
TORCH_VERSION := 2.11.0
SAFETENSORS_VERSION := 0.8.0
SETUP_STAMP := $(VENV)/.setup-torch-$(TORCH_VERSION)-safetensors-$(SAFETENSORS_VERSION).stamp
BIN := target/release/rnnlm
# The Dask driver's packages (scale/), installed by `make score-dask` and `make test`.
DASK_PACKAGES := dask[dataframe]==2026.8.0 distributed==2026.8.0 pyarrow==26.0.1
DASK_STAMP := $(VENV)/.dask-2026.8.0-pyarrow-26.0.1.stamp

# tch builds against the torch of the project's venv.
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup build test demo train-word train-char score score-dask tune sample bench gpu-check datasets clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP):
	@command -v python3 >/dev/null || { echo "setup: python3 not found; install Python 3.9+ (e.g. apt-get install python3 python3-venv)" >&2; exit 1; }
	@test -x $(PYTHON) || python3 -m venv $(VENV) || { echo "setup: 'python3 -m venv .venv' failed; install python3-venv" >&2; rm -rf $(VENV); exit 1; }
	@$(PYTHON) -m pip install --quiet torch==$(TORCH_VERSION) safetensors==$(SAFETENSORS_VERSION) || { echo "setup: 'pip install torch==$(TORCH_VERSION) safetensors==$(SAFETENSORS_VERSION)' failed; check the connection to PyPI and free disk (~5 GB), then run make setup again" >&2; exit 1; }
	@$(PYTHON) -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" || { echo "setup: the venv's torch is not $(TORCH_VERSION)" >&2; exit 1; }
	@touch $@
	@echo "setup: torch $(TORCH_VERSION) ready in .venv"

build: $(SETUP_STAMP)
	@$(CHECK_DEV_NULL)
	cargo build --release

$(BIN): build

# cargo probes rustc with standard input opened from /dev/null. Where /dev/null is a
# regular file it holds whatever programs wrote "to" it, rustc compiles that text, and
# every build fails with "failed to run `rustc` to learn about target-specific information".
CHECK_DEV_NULL := test -c /dev/null || { echo "make: /dev/null is a regular file, which breaks cargo; as root: mknod -m 666 /dev/null.new c 1 3 && mv -f /dev/null.new /dev/null" >&2; exit 1; }

test: $(SETUP_STAMP) $(DASK_STAMP)
	@$(CHECK_DEV_NULL)
	cargo fmt --check
	cargo clippy --all-targets --target-dir target/clippy -- -D warnings
	cargo build --release
	cargo test --release
	$(PYTHON) -m unittest scale/test_score_dask.py
	RUSTDOCFLAGS='-D warnings' cargo doc --no-deps

$(DASK_STAMP): $(SETUP_STAMP)
	@$(PYTHON) -m pip install --quiet $(DASK_PACKAGES) || { echo "setup: 'pip install $(DASK_PACKAGES)' failed; check the connection to PyPI" >&2; exit 1; }
	@touch $@

# Score an N-best list on Dask: make score-dask INPUT=nbest.csv OUTPUT=scored.csv
#   [MODEL=models/word] [WORKERS=2] [THREADS=n] [SCHEDULER=tcp://host:8786] [FLAGS='--am-column am_score']
# Without SCHEDULER a LocalCluster of WORKERS processes starts on 127.0.0.1.
WORKERS ?= 2
score-dask: build $(DASK_STAMP)
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score-dask INPUT=nbest.csv OUTPUT=scored.csv [MODEL=dir] [WORKERS=n] [SCHEDULER=address] [FLAGS='...']" >&2; exit 2; }
	$(PYTHON) scale/score_dask.py --input $(INPUT) --output $(OUTPUT) --model $(MODEL) --workers $(WORKERS) \
		$(if $(THREADS),--threads $(THREADS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) -- $(FLAGS)

datasets:
	python3 datasets/regenerate.py --check
	$(PYTHON) datasets/make_nbest.py --check

clean:
	cargo clean

# The word model on Brown: the recipe and why are in the README. The time limit leaves
# room for the test-set evaluation inside 30 minutes.
WORD_FLAGS := --cell lstm --embed 384 --hidden 384 --layers 2 --tie --softmax class --dropout 0.4 \
	--batch-size 32 --lr 0.002 --clip 1.0 --epochs 40
# The demo's 5 minutes buy more epochs of a smaller network than of the word model's.
DEMO_FLAGS := --cell lstm --embed 256 --hidden 256 --layers 2 --tie --softmax class --dropout 0.35 \
	--batch-size 32 --lr 0.002 --clip 1.0 --epochs 40
CHAR_FLAGS := --level char --cell gru --embed 64 --hidden 256 --layers 1 --dropout 0.5 \
	--batch-size 32 --lr 0.003 --clip 1.0 --epochs 80

train-word: build
	$(BIN) train --data datasets/brown --out models/word --force $(WORD_FLAGS) --time-limit 1680
	$(BIN) eval --model models/word --data datasets/brown/test.txt

train-char: build
	$(BIN) train --data datasets/dinosaurs --out models/char --force $(CHAR_FLAGS) --time-limit 280
	$(BIN) eval --model models/char --data datasets/dinosaurs/valid.txt
	@echo "10 new names (* = already in the training list):"
	@$(BIN) sample --model models/char --count 10 --seed $$RANDOM | \
		while read -r name; do if grep -qx -- "$$name" datasets/dinosaurs/train.txt; then echo "$$name *"; else echo "$$name"; fi; done

score: build
	@test -f models/word/weights.safetensors || { echo "no models/word yet: run make demo or make train-word first" >&2; exit 1; }
	$(BIN) score --model models/word --input datasets/asr/candidates.csv --am-column am_score --output models/word/candidates.scored.csv
	@cat models/word/candidates.scored.csv

# N-best rescoring weights: tuned by WER on the dev lists, then applied to the test lists.
MODEL ?= models/word
TUNE_FLAGS := --model $(MODEL) --am-column am_score --ngram-column ngram_log10

tune: build
	@test -f $(MODEL)/weights.safetensors || { echo "no $(MODEL) yet: run make demo or make train-word first" >&2; exit 1; }
	@echo "== dev (datasets/asr/dev.nbest.csv): weights tuned here"
	@$(BIN) tune $(TUNE_FLAGS) --input datasets/asr/dev.nbest.csv --references datasets/asr/dev.refs.csv | tee $(MODEL)/tune.dev.txt
	@set -- $$(sed -n 's/^weights: lm_weight \(.*\) length_penalty \(.*\) ngram_weight \(.*\)$$/\1 \2 \3/p' $(MODEL)/tune.dev.txt); \
	echo "== test (datasets/asr/test.nbest.csv): the dev weights applied"; \
	$(BIN) tune $(TUNE_FLAGS) --input datasets/asr/test.nbest.csv --references datasets/asr/test.refs.csv \
		--lm-weights "$$1" --length-penalties "$$2" --ngram-weights "$$3"

sample: build
	$(BIN) sample --model models/word --count 5 --max-len 40

demo: build
	$(BIN) train --data datasets/brown --out models/word --force $(DEMO_FLAGS) --time-limit 300
	$(BIN) eval --model models/word --data datasets/brown/test.txt
	$(MAKE) --no-print-directory score tune sample

bench: build
	$(PYTHON) bench/bench.py

# On a machine with an NVIDIA GPU: short training, scoring and sampling on CUDA,
# log-probabilities checked against the CPU.
gpu-check: build
	bash bench/gpu-check.sh $(BIN)
