#!/usr/bin/env python3
"""rnnlm against the PyTorch reference, side by side in one run on this machine.

    make bench                 (about 20 minutes; BENCH_QUICK=1 make bench: a few minutes)

Measures, each run at least 3 times and reported as the median:
  - training throughput, tokens/s, rnn/gru/lstm at 256 units, batch 32, one epoch of
    the first 3,000 Brown train sentences, and the LSTM with the class output layer
    against the same factorization in PyTorch;
  - the class output layer against the full softmax inside rnnlm, on the real word
    model's vocabulary (all of Brown train, 14,115 words): training tokens/s over the
    same shuffled batches for a fixed time, and scoring sentences/s with the two models;
  - scoring throughput, sentences/s, Brown test sentences, batched;
  - sampling throughput, tokens/s, a batch of 100 sequences;
  - start-up: wall time of `rnnlm score` on a 3-row CSV (and of the reference's import);
  - parity: dinosaurs valid perplexity of the character recipe trained the same way by
    both, seeds 1-3 each (the means should be within 3%).
Writes bench/results.md and prints it. Ratios are rnnlm/PyTorch for throughputs (higher
means rnnlm is faster) and PyTorch/rnnlm for times, so above 1.00x always favours rnnlm.
"""
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "rnnlm")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
REFERENCE = os.path.join(ROOT, "bench", "reference.py")
BROWN = os.path.join(ROOT, "datasets", "brown")
QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEATS = 3
# Training throughput is measured over one whole epoch of the first TRAIN_SENTENCES
# Brown train sentences, every type kept (--min-count 1: 10,726 words for 3,000
# sentences), so that both sides train on exactly the same padded batch shapes; a
# timed slice of a shuffled epoch would compare different mixes of sentence lengths.
TRAIN_SENTENCES = 400 if QUICK else 3000
SCORE_SENTENCES = 1000 if QUICK else 10127
DINOSAURS = os.path.join(ROOT, "datasets", "dinosaurs")
# The character recipe of `make train-char`, trained the same way on both sides for the
# perplexity-parity check; each side runs seeds 1..REPEATS and the means are compared.
CHAR_FLAGS = ["--cell", "gru", "--embed", "64", "--hidden", "256", "--layers", "1", "--dropout", "0.5",
              "--batch-size", "32", "--lr", "0.003", "--clip", "1.0"]
PARITY_EPOCHS = 4 if QUICK else 80
MODEL_FLAGS = ["--embed", "256", "--hidden", "256", "--layers", "2", "--dropout", "0.3", "--batch-size", "32"]


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return result


def reference(*args):
    return json.loads(run([PYTHON, REFERENCE, *args]).stdout.strip().splitlines()[-1])


def logged_rate(stderr, pattern):
    match = re.search(pattern, stderr)
    if not match:
        sys.exit(f"no timing line matching {pattern!r} in:\n{stderr[-2000:]}")
    return float(match.group(1))


def train_data(workdir):
    """The head of Brown train with a short valid file, so a run is almost all training."""
    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(BROWN, "train.txt")) as f, open(os.path.join(data, "train.txt"), "w") as out:
        out.writelines(f.readlines()[:TRAIN_SENTENCES])
    with open(os.path.join(BROWN, "valid.txt")) as f, open(os.path.join(data, "valid.txt"), "w") as out:
        out.writelines(f.readlines()[:20])
    return data


# The class-against-full comparison: seconds of training per run on all of Brown train.
CLASS_SECONDS = 10 if QUICK else 40


def last_tokens_per_s(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        return float(f.read().splitlines()[-1].split(",")[4])


def cutoffs_of(out):
    with open(os.path.join(out, "config.json")) as f:
        return json.load(f)["model"]["output"]["cutoffs"]


def rnnlm_train_speed(data, workdir, cell, tie, softmax="full"):
    out = os.path.join(workdir, f"train-{cell}-{softmax}")
    shutil.rmtree(out, ignore_errors=True)
    flags = MODEL_FLAGS + (["--tie"] if tie else [])
    run([BIN, "train", "--data", data, "--out", out, "--cell", cell, "--epochs", "1",
         "--min-count", "1", "--softmax", softmax, "--device", "cpu", *flags])
    return last_tokens_per_s(out)


def reference_train_speed(data, cell, tie, cutoffs=None):
    args = ["train-speed", "--data", data, "--cell", cell, "--min-count", "1"] + MODEL_FLAGS
    if cutoffs:
        args += ["--cutoffs", ",".join(map(str, cutoffs))]
    return reference(*(args + (["--tie"] if tie else [])))["tokens_per_s"]


def rnnlm_brown_speed(workdir, softmax):
    """Tokens/s of the word recipe's network on all of Brown train for CLASS_SECONDS."""
    out = os.path.join(workdir, f"brown-{softmax}")
    shutil.rmtree(out, ignore_errors=True)
    run([BIN, "train", "--data", BROWN, "--out", out, "--epochs", "1", "--time-limit", str(CLASS_SECONDS),
         "--softmax", softmax, "--tie", "--device", "cpu", *MODEL_FLAGS])
    return last_tokens_per_s(out)


def median_pair(ours, theirs):
    """Medians of REPEATS runs of each, interleaved so that drift in the machine's load
    falls on both sides alike."""
    pairs = [(ours(), theirs()) for _ in range(REPEATS)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def rnnlm_valid_ppl(workdir, seed):
    out = os.path.join(workdir, f"char-{seed}")
    shutil.rmtree(out, ignore_errors=True)
    # --patience 0: every epoch, as the reference trains.
    run([BIN, "train", "--data", DINOSAURS, "--out", out, "--level", "char", "--epochs", str(PARITY_EPOCHS),
         "--seed", str(seed), "--patience", "0", "--device", "cpu", *CHAR_FLAGS])
    with open(os.path.join(out, "metrics.csv")) as f:
        return math.exp(min(float(line.split(",")[2]) for line in f.read().splitlines()[1:]))


def reference_valid_ppl(seed):
    return reference("train", "--data", DINOSAURS, "--level", "char", "--min-count", "1",
                     "--epochs", str(PARITY_EPOCHS), "--seed", str(seed), *CHAR_FLAGS)["best_valid_ppl"]


def main():
    for path in (BIN, PYTHON):
        if not os.path.exists(path):
            sys.exit(f"{path} missing: run make build")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        data = train_data(workdir)
        for cell in ["rnn", "gru", "lstm"]:
            tie = cell == "lstm"
            ours, theirs = median_pair(lambda: rnnlm_train_speed(data, workdir, cell, tie),
                                       lambda: reference_train_speed(data, cell, tie))
            rows.append((f"train {cell} 2x256{' tied' if tie else ''}, batch 32, {TRAIN_SENTENCES} sentences (tokens/s)", ours, theirs, ours / theirs))

        cutoffs = []

        def ours_class():
            speed = rnnlm_train_speed(data, workdir, "lstm", True, "class")
            cutoffs[:] = cutoffs_of(os.path.join(workdir, "train-lstm-class"))
            return speed

        ours, theirs = median_pair(ours_class, lambda: reference_train_speed(data, "lstm", True, cutoffs))
        rows.append((f"train lstm 2x256 tied, class output layer (cutoffs {cutoffs}), batch 32, {TRAIN_SENTENCES} sentences (tokens/s)",
                     ours, theirs, ours / theirs))

        # Class against full inside rnnlm, on the word model's own vocabulary.
        class_rows = []
        test_all = os.path.join(BROWN, "test.txt")
        full, cls = median_pair(lambda: rnnlm_brown_speed(workdir, "full"), lambda: rnnlm_brown_speed(workdir, "class"))
        class_rows.append((f"train lstm 2x256 tied, batch 32, Brown train ({CLASS_SECONDS} s a run) (tokens/s)", cls, full))

        def score_rate(softmax):
            stderr = run([BIN, "score", "--model", os.path.join(workdir, f"brown-{softmax}"), "--format", "text",
                          "--input", test_all, "--output", os.devnull, "--oov", "unk", "--device", "cpu"]).stderr
            return logged_rate(stderr, r"([0-9.]+) sentences/s")

        full, cls = median_pair(lambda: score_rate("full"), lambda: score_rate("class"))
        class_rows.append(("score the 10127 Brown test sentences, batched (sentences/s)", cls, full))

        model = os.path.join(workdir, "train-lstm-full")  # the last LSTM run's model
        test = os.path.join(workdir, "test.txt")
        with open(os.path.join(BROWN, "test.txt")) as f, open(test, "w") as out:
            out.writelines(f.readlines()[:SCORE_SENTENCES])

        def ours_score():
            stderr = run([BIN, "score", "--model", model, "--format", "text", "--input", test,
                          "--output", os.devnull, "--device", "cpu"]).stderr
            return logged_rate(stderr, r"([0-9.]+) sentences/s")

        def theirs_score():
            return reference("score-speed", "--model", model, "--data", test)["sentences_per_s"]

        ours, theirs = median_pair(ours_score, theirs_score)
        rows.append((f"score {SCORE_SENTENCES} Brown test sentences, batched (sentences/s)", ours, theirs, ours / theirs))

        def ours_sample():
            stderr = run([BIN, "sample", "--model", model, "--count", "100", "--max-len", "50",
                          "--device", "cpu"]).stderr
            return logged_rate(stderr, r"([0-9.]+) tokens/s")

        def theirs_sample():
            return reference("sample-speed", "--model", model, "--count", "100", "--max-len", "50")["tokens_per_s"]

        ours, theirs = median_pair(ours_sample, theirs_sample)
        rows.append(("sample 100 sequences, at most 50 tokens (tokens/s)", ours, theirs, ours / theirs))

        csv_path = os.path.join(workdir, "three.csv")
        with open(csv_path, "w") as f:
            f.write("utterance_id,sentence\nu1,The apple and pair salad .\nu1,The apple and pear salad .\nu2,He said so .\n")

        def wall(cmd):
            start = time.perf_counter()
            run(cmd)
            return time.perf_counter() - start

        ours, theirs = median_pair(lambda: wall([BIN, "score", "--model", model, "--input", csv_path, "--device", "cpu"]),
                                   lambda: wall([PYTHON, "-c", "import torch"]))
        rows.append(("start-up: rnnlm score on a 3-row CSV vs python -c 'import torch' (s)", ours, theirs, theirs / ours))

        seeds = range(1, REPEATS + 1)
        ours_ppl = [rnnlm_valid_ppl(workdir, seed) for seed in seeds]
        theirs_ppl = [reference_valid_ppl(seed) for seed in seeds]
        ours, theirs = statistics.mean(ours_ppl), statistics.mean(theirs_ppl)
        rows.append((f"dinosaurs valid perplexity, char GRU, {PARITY_EPOCHS} epochs, mean of seeds 1-{REPEATS} (lower is better)",
                     ours, theirs, theirs / ours))
        spread = (f"Valid perplexity by seed: rnnlm {', '.join(f'{p:.3f}' for p in ours_ppl)}; "
                  f"PyTorch {', '.join(f'{p:.3f}' for p in theirs_ppl)}; "
                  f"means {abs(ours / theirs - 1) * 100:.1f}% apart.")

    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
            cpu = f"{names[0]} x {len(names)}" if names else cpu
    torch_version = run([PYTHON, "-c", "import torch; print(torch.__version__)"]).stdout.strip()
    lines = [
        "# rnnlm vs PyTorch",
        "",
        f"commit `{commit}`, {platform.machine()} {cpu}, torch {torch_version}, CPU, "
        f"median of {REPEATS} runs, interleaved{', quick mode' if QUICK else ''}.",
        "Ratio above 1.00x favours rnnlm (rnnlm/PyTorch for rates, PyTorch/rnnlm for times and perplexities).",
        "",
        "| measure | rnnlm | PyTorch | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, ours, theirs, ratio in rows:
        lines.append(f"| {name} | {ours:,.2f} | {theirs:,.2f} | {ratio:.2f}x |")
    lines += ["", spread, "",
              "## Class output layer against the full softmax, inside rnnlm",
              "",
              f"Vocabulary 14,115 (all of Brown train, words seen 4 times or more), cutoffs chosen by `train`; median of {REPEATS} runs, interleaved.",
              "",
              "| measure | class | full | class/full |",
              "| --- | ---: | ---: | ---: |"]
    for name, cls, full in class_rows:
        lines.append(f"| {name} | {cls:,.2f} | {full:,.2f} | {cls / full:.2f}x |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
