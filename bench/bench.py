#!/usr/bin/env python3
"""rnnlm against the PyTorch reference, side by side in one run on this machine.

    make bench                 (BENCH_QUICK=1 make bench: under 3 minutes)

Measures, each run at least 3 times and reported as the median:
  - training throughput, tokens/s, rnn/gru/lstm at 256 units, batch 32, Brown train;
  - scoring throughput, sentences/s, Brown test sentences, batched;
  - sampling throughput, tokens/s, a batch of 100 sequences;
  - start-up: wall time of `rnnlm score` on a 3-row CSV (and of the reference's import).
Writes bench/results.md and prints it. Ratios are rnnlm/PyTorch for throughputs (higher
means rnnlm is faster) and PyTorch/rnnlm for times, so above 1.00x always favours rnnlm.
"""
import json
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
TRAIN_SECONDS = 4 if QUICK else 20
SCORE_SENTENCES = 1000 if QUICK else 10127
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
    """Brown train with a short valid file, so a training run is almost all training."""
    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    shutil.copy(os.path.join(BROWN, "train.txt"), data)
    with open(os.path.join(BROWN, "valid.txt")) as f, open(os.path.join(data, "valid.txt"), "w") as out:
        out.writelines(f.readlines()[:20])
    return data


def rnnlm_train_speed(data, workdir, cell, tie):
    out = os.path.join(workdir, f"train-{cell}")
    shutil.rmtree(out, ignore_errors=True)
    flags = MODEL_FLAGS + (["--tie"] if tie else [])
    run([BIN, "train", "--data", data, "--out", out, "--cell", cell, "--epochs", "1",
         "--time-limit", str(TRAIN_SECONDS), "--device", "cpu", *flags])
    with open(os.path.join(out, "metrics.csv")) as f:
        return float(f.read().splitlines()[-1].split(",")[4])


def reference_train_speed(data, cell, tie):
    args = ["train-speed", "--data", data, "--cell", cell, "--seconds", str(TRAIN_SECONDS)] + MODEL_FLAGS
    return reference(*(args + (["--tie"] if tie else [])))["tokens_per_s"]


def median_of(measure):
    return statistics.median(measure() for _ in range(REPEATS))


def main():
    for path in (BIN, PYTHON):
        if not os.path.exists(path):
            sys.exit(f"{path} missing: run make build")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        data = train_data(workdir)
        for cell in ["rnn", "gru", "lstm"]:
            tie = cell == "lstm"
            ours = median_of(lambda: rnnlm_train_speed(data, workdir, cell, tie))
            theirs = median_of(lambda: reference_train_speed(data, cell, tie))
            rows.append((f"train {cell} 2x256{' tied' if tie else ''}, batch 32 (tokens/s)", ours, theirs, ours / theirs))

        model = os.path.join(workdir, "train-lstm")  # the last LSTM run's model
        test = os.path.join(workdir, "test.txt")
        with open(os.path.join(BROWN, "test.txt")) as f, open(test, "w") as out:
            out.writelines(f.readlines()[:SCORE_SENTENCES])

        def ours_score():
            stderr = run([BIN, "score", "--model", model, "--format", "text", "--input", test,
                          "--output", os.devnull, "--device", "cpu"]).stderr
            return logged_rate(stderr, r"([0-9.]+) sentences/s")

        def theirs_score():
            return reference("score-speed", "--model", model, "--data", test)["sentences_per_s"]

        ours, theirs = median_of(ours_score), median_of(theirs_score)
        rows.append((f"score {SCORE_SENTENCES} Brown test sentences, batched (sentences/s)", ours, theirs, ours / theirs))

        def ours_sample():
            stderr = run([BIN, "sample", "--model", model, "--count", "100", "--max-len", "50",
                          "--device", "cpu"]).stderr
            return logged_rate(stderr, r"([0-9.]+) tokens/s")

        def theirs_sample():
            return reference("sample-speed", "--model", model, "--count", "100", "--max-len", "50")["tokens_per_s"]

        ours, theirs = median_of(ours_sample), median_of(theirs_sample)
        rows.append(("sample 100 sequences, at most 50 tokens (tokens/s)", ours, theirs, ours / theirs))

        csv_path = os.path.join(workdir, "three.csv")
        with open(csv_path, "w") as f:
            f.write("utterance_id,sentence\nu1,The apple and pair salad .\nu1,The apple and pear salad .\nu2,He said so .\n")

        def wall(cmd):
            start = time.perf_counter()
            run(cmd)
            return time.perf_counter() - start

        ours = median_of(lambda: wall([BIN, "score", "--model", model, "--input", csv_path, "--device", "cpu"]))
        theirs = median_of(lambda: wall([PYTHON, "-c", "import torch"]))
        rows.append(("start-up: rnnlm score on a 3-row CSV vs python -c 'import torch' (s)", ours, theirs, theirs / ours))

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
        f"median of {REPEATS} runs{', quick mode' if QUICK else ''}.",
        "Ratio above 1.00x favours rnnlm (rnnlm/PyTorch for rates, PyTorch/rnnlm for times).",
        "",
        "| measure | rnnlm | PyTorch | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, ours, theirs, ratio in rows:
        lines.append(f"| {name} | {ours:,.2f} | {theirs:,.2f} | {ratio:.2f}x |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
