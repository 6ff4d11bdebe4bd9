#!/usr/bin/env python3
"""rnnlm against the PyTorch reference, side by side in one run on this machine.

    make bench                 (about 20 minutes; BENCH_QUICK=1 make bench: a few minutes)

Measures, each run at least 3 times and reported as the median:
  - training throughput, tokens/s, rnn/gru/lstm at 256 units, batch 32, one epoch of
    the first 3,000 Brown train sentences (PyTorch with its default Adam, and for the
    LSTM also with Adam(fused=True)), and the LSTM with the class output layer against
    the same factorization in PyTorch;
  - the class output layer against the full softmax inside rnnlm, on the real word
    model's vocabulary (all of Brown train, 14,115 words): training tokens/s over the
    same shuffled batches for a fixed time, and scoring sentences/s with the two models;
  - scoring throughput, sentences/s, Brown test sentences, batched;
  - sampling throughput, tokens/s, a batch of 100 sequences;
  - start-up: wall time to load the model and score 3 sentences (`rnnlm score`, and
    the reference's `logprobs`);
  - parity: dinosaurs valid perplexity of the character recipe trained the same way by
    both, seeds 1-3 each (the means should be within 3%);
  - N-best scoring on Dask (scale/score_dask.py): rows/s of plain `rnnlm score` against
    1 worker x 2 threads and 2 workers x 1 thread on the same file, with the share of
    each run that the per-partition start-up of `rnnlm` takes, and the workers'
    in-process mode (`import rnnlm`) against their subprocess mode;
  - the Python API against the command line: `Model.score_batch` sentences/s against
    `rnnlm score`'s at the same threads, and `import rnnlm` plus loading the model
    against the binary's start-up.

  - shared-prefix scoring: `rnnlm score` sentences/s with `--prefix-sharing on`
    against `off`, same output, on the synthetic and the real dev N-best lists, with
    the networks of `make train-word` and `make train-asr` (briefly trained: speed does
    not depend on the weights).

  - deep N-best lists: `rnnlm score` wall time of the real test lists with the forward
    + backward pair at 100 candidates per utterance against 10 (`--max-candidates`),
    with the recurrent steps and output rows per token at each depth; and `rnnlm tune`
    on the real dev lists with both models, one exact line search (`--bags 1`) against
    the grid search (`--search grid`) and the default mean of 64 resampled searches, at
    10 and 100 candidates.

BENCH_ONLY=python runs the Python and Dask rows alone (a few minutes) and writes
bench/results-python.md; BENCH_ONLY=prefix the shared-prefix rows, into
bench/results-prefix.md; BENCH_ONLY=depth the deep-list rows, into
bench/results-depth.md; BENCH_ONLY=ranks the data-parallel rows, into
bench/results-ranks.md: 2 ranks x 1 thread against two independent 1-thread runs side
by side and one process x 2 threads (the make train-word network, one epoch), also
with --accumulate 4, the shares of a step spent waiting for the slower rank and
summing gradients, 4 ranks oversubscribed on the cores against one process with
--accumulate 4 (the largest parameter difference), and Gloo's all-reduce time by
buffer size on the loopback.
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
BIN = os.environ.get("RNNLM_BIN", os.path.join(ROOT, "target", "release", "rnnlm"))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
REFERENCE = os.path.join(ROOT, "bench", "reference.py")
BROWN = os.path.join(ROOT, "datasets", "brown")
QUICK = os.environ.get("BENCH_QUICK") == "1"
ONLY_PYTHON = os.environ.get("BENCH_ONLY") == "python"
ONLY_PREFIX = os.environ.get("BENCH_ONLY") == "prefix"
ONLY_DEPTH = os.environ.get("BENCH_ONLY") == "depth"
ONLY_RANKS = os.environ.get("BENCH_ONLY") == "ranks"
ASR = os.path.join(ROOT, "datasets", "asr")
# The networks of make train-word and make train-asr (Makefile's WORD_FLAGS, ASR_FLAGS).
WORD_NET = ["--cell", "lstm", "--embed", "384", "--hidden", "384", "--layers", "2", "--tie", "--softmax", "class"]
ASR_NET = ["--recognizer-form", "--cell", "lstm", "--embed", "256", "--hidden", "256", "--layers", "2", "--tie",
           "--softmax", "class"]
# make train-asr's text and vocabulary (33,092 words): the class layer's cluster widths,
# and so the scoring speed, depend on them.
ASR_TEXT = ["--extra-train", os.path.join(ROOT, "datasets", "asr", "brown-valid-train.txt"),
            "--extra-train", os.path.join(ROOT, "datasets", "gutenberg", "train.txt"), "--min-count", "2"]
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
    run([BIN, "train", "--data", data, "--out", out, "--force", "--cell", cell, "--epochs", "1",
         "--min-count", "1", "--softmax", softmax, "--device", "cpu", *flags])
    return last_tokens_per_s(out)


def reference_train_speed(data, cell, tie, cutoffs=None, fused=False):
    args = ["train-speed", "--data", data, "--cell", cell, "--min-count", "1"] + MODEL_FLAGS
    if cutoffs:
        args += ["--cutoffs", ",".join(map(str, cutoffs))]
    if fused:
        args += ["--fused"]
    return reference(*(args + (["--tie"] if tie else [])))["tokens_per_s"]


def rnnlm_brown_speed(workdir, softmax):
    """Tokens/s of the word recipe's network on all of Brown train for CLASS_SECONDS."""
    out = os.path.join(workdir, f"brown-{softmax}")
    shutil.rmtree(out, ignore_errors=True)
    run([BIN, "train", "--data", BROWN, "--out", out, "--force", "--epochs", "1", "--time-limit", str(CLASS_SECONDS),
         "--softmax", softmax, "--tie", "--device", "cpu", *MODEL_FLAGS])
    return last_tokens_per_s(out)


DASK_COPIES = 2 if QUICK else 8  # copies of the 5,000-row ASR test list
DASK_PARTITION_ROWS = 5000 if QUICK else 20000


def nbest_copies(workdir):
    """The ASR test N-best list repeated with fresh utterance ids: DASK_COPIES x 5,000 rows."""
    path = os.path.join(workdir, "nbest-big.csv")
    with open(os.path.join(ROOT, "datasets", "asr", "test.nbest.csv")) as f:
        header, *rows = f.read().splitlines()
    with open(path, "w") as out:
        out.write(header + "\n")
        for copy in range(DASK_COPIES):
            for row in rows:
                out.write(f"c{copy}-{row}\n")
    return path, DASK_COPIES * len(rows)


def dask_rows(workdir, model):
    """rows/s of plain `rnnlm score` against the Dask driver at 1 worker x 2 threads and
    2 workers x 1 thread on the same file, and the share of each Dask run that the
    per-partition start-up of `rnnlm` takes."""
    sys.path.insert(0, os.path.join(ROOT, "scale"))
    import score_dask
    from dask.distributed import Client, LocalCluster

    path, rows = nbest_copies(workdir)
    flags = ["--am-column", "am_score", "--ngram-column", "ngram_log10", "--lm-weight", "0.9"]
    output = os.path.join(workdir, "scored.csv")

    def plain():
        start = time.perf_counter()
        run([BIN, "score", "--model", model, "--input", path, "--output", output, "--device", "cpu", *flags])
        return rows / (time.perf_counter() - start)

    empty = os.path.join(workdir, "empty.csv")
    with open(path) as f, open(empty, "w") as out:
        out.write(f.readline())

    def startup():
        start = time.perf_counter()
        run([BIN, "score", "--model", model, "--input", empty, "--output", os.devnull, "--device", "cpu",
             "--threads", "1", *flags])
        return time.perf_counter() - start

    start_s = statistics.median(startup() for _ in range(REPEATS))
    partitions = math.ceil(rows / DASK_PARTITION_ROWS)
    results = {"plain": plain()}
    with open(output, "rb") as f:
        expected = f.read()
    for workers, threads in [(1, 2), (2, 1)]:
        with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            for mode in ([], ["--in-process"]):
                args = score_dask.parse_args(["--input", path, "--output", output, "--model", model, "--bin", BIN,
                                              "--workers", str(workers), "--threads", str(threads), *mode,
                                              "--partition-rows", str(DASK_PARTITION_ROWS), "--", *flags])
                if mode:  # the model is loaded once per worker: load it before the clock starts
                    client.run(_load_in_worker, model, args.device)
                done, seconds = score_dask.run(args, client)
                assert done == rows, (done, rows)
                with open(output, "rb") as f:
                    assert f.read() == expected, f"Dask {mode or 'subprocess'} output differs from rnnlm score's"
                overhead = start_s * math.ceil(partitions / workers) / seconds if not mode else None
                results[(workers, threads, bool(mode))] = (rows / seconds, overhead)
    return rows, partitions, start_s, results


def _load_in_worker(model, device):
    import rnnlm

    rnnlm.cached_model(model, device=device)


# Runs in a fresh interpreter: import, load, score, each timed.
PYTHON_SCORE = """
import json, sys, time
start = time.perf_counter()
import rnnlm, torch
imported = time.perf_counter()
torch.set_num_threads(int(sys.argv[3]))
lm = rnnlm.Model(sys.argv[1])
loaded = time.perf_counter()
with open(sys.argv[2]) as f:
    sentences = [l.rstrip("\\n") for l in f if l.strip()]
lm.score_batch(sentences[:3])
three = time.perf_counter()
lm.score_batch(sentences)
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported, "three_s": three - start,
                  "sentences_per_s": len(sentences) / (done - three)}))
"""


def python_rows(workdir, model, test):
    """The Python API against the command line, interleaved, at 2 threads each."""
    three = os.path.join(workdir, "three-lines.txt")
    with open(three, "w") as f:
        f.write("The apple and pair salad .\nThe apple and pear salad .\nHe said so .\n")

    def api(data):
        return json.loads(run([PYTHON, "-c", PYTHON_SCORE, model, data, "2"]).stdout.strip().splitlines()[-1])

    def cli_rate():
        stderr = run([BIN, "score", "--model", model, "--format", "text", "--input", test, "--output", os.devnull,
                      "--device", "cpu", "--threads", "2"]).stderr
        return logged_rate(stderr, r"([0-9.]+) sentences/s")

    def cli_wall():
        start = time.perf_counter()
        run([BIN, "score", "--model", model, "--format", "text", "--input", three, "--output", os.devnull,
             "--device", "cpu", "--threads", "2"])
        return time.perf_counter() - start

    ours, theirs = median_pair(lambda: api(test)["sentences_per_s"], cli_rate)
    rate_row = (f"score_batch on {SCORE_SENTENCES} Brown test sentences, 2 threads (sentences/s)", ours, theirs)
    timings = []
    api_wall, binary_wall = median_pair(lambda: timings.append(api(three)) or timings[-1]["three_s"], cli_wall)
    import_s = statistics.median(t["import_s"] for t in timings)
    load_s = statistics.median(t["load_s"] for t in timings)
    start_row = (f"start-up: import, load the model and score 3 sentences (s); import {import_s:.2f} s, "
                 f"load {load_s:.2f} s", api_wall, binary_wall)
    return [rate_row, start_row]


def python_section(rows, dask):
    """The Python API's rows of results.md: API against the binary, then Dask's modes."""
    lines = ["", "## The Python API (`import rnnlm`) against the command line", "",
             "Each in its own process, 2 libtorch threads, the LSTM model above; median of "
             f"{REPEATS} runs, interleaved. Above 1.00x favours the Python API for rates, the "
             "binary for times.",
             "",
             "| measure | Python API | `rnnlm` binary | ratio |",
             "| --- | ---: | ---: | ---: |"]
    for name, api, binary in rows:
        lines.append(f"| {name} | {api:,.2f} | {binary:,.2f} | {api / binary:.2f}x |")
    done, partitions, _, results = dask
    lines += ["", f"Dask, {done:,} rows in {partitions} partitions: the workers in process (one cached "
              "`rnnlm.Model` each, loaded before the run) against an `rnnlm score` process per partition.",
              "", "| setup | subprocess rows/s | in-process rows/s | in-process/subprocess |",
              "| --- | ---: | ---: | ---: |"]
    for workers, threads in [(1, 2), (2, 1)]:
        sub, inproc = results[(workers, threads, False)][0], results[(workers, threads, True)][0]
        lines.append(f"| {workers} worker(s) x {threads} thread(s) | {sub:,.1f} | {inproc:,.1f} | {inproc / sub:.2f}x |")
    return lines


def median_pair(ours, theirs):
    """Medians of REPEATS runs of each, interleaved so that drift in the machine's load
    falls on both sides alike."""
    pairs = [(ours(), theirs()) for _ in range(REPEATS)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def rnnlm_valid_ppl(workdir, seed):
    out = os.path.join(workdir, f"char-{seed}")
    shutil.rmtree(out, ignore_errors=True)
    # --patience 0: every epoch, as the reference trains.
    run([BIN, "train", "--data", DINOSAURS, "--out", out, "--force", "--level", "char", "--epochs", str(PARITY_EPOCHS),
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
    if ONLY_PYTHON:
        return main_python_only()
    if ONLY_PREFIX:
        return main_prefix_only()
    if ONLY_RANKS:
        return main_ranks_only()
    if ONLY_DEPTH:
        return main_depth_only()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        data = train_data(workdir)
        for cell in ["rnn", "gru", "lstm"]:
            tie = cell == "lstm"
            ours, theirs = median_pair(lambda: rnnlm_train_speed(data, workdir, cell, tie),
                                       lambda: reference_train_speed(data, cell, tie))
            rows.append((f"train {cell} 2x256{' tied' if tie else ''}, batch 32, {TRAIN_SENTENCES} sentences (tokens/s)", ours, theirs, ours / theirs))
        # PyTorch at its best-effort Adam too, so that the ratio is honest both ways.
        ours, theirs = median_pair(lambda: rnnlm_train_speed(data, workdir, "lstm", True),
                                   lambda: reference_train_speed(data, "lstm", True, fused=True))
        rows.append((f"train lstm 2x256 tied, batch 32, {TRAIN_SENTENCES} sentences, PyTorch with Adam(fused=True) (tokens/s)",
                     ours, theirs, ours / theirs))

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

        three = os.path.join(workdir, "three.txt")
        with open(three, "w") as f:
            f.write("The apple and pair salad .\nThe apple and pear salad .\nHe said so .\n")
        # Like for like: each side loads the model and scores the same three sentences.
        ours, theirs = median_pair(lambda: wall([BIN, "score", "--model", model, "--input", csv_path, "--device", "cpu"]),
                                   lambda: wall([PYTHON, REFERENCE, "logprobs", "--model", model, "--data", three]))
        rows.append(("start-up: load the model and score 3 sentences, rnnlm score vs the reference (s)", ours, theirs, theirs / ours))

        seeds = range(1, REPEATS + 1)
        ours_ppl = [rnnlm_valid_ppl(workdir, seed) for seed in seeds]
        theirs_ppl = [reference_valid_ppl(seed) for seed in seeds]
        ours, theirs = statistics.mean(ours_ppl), statistics.mean(theirs_ppl)
        rows.append((f"dinosaurs valid perplexity, char GRU, {PARITY_EPOCHS} epochs, mean of seeds 1-{REPEATS} (lower is better)",
                     ours, theirs, theirs / ours))
        spread = (f"Valid perplexity by seed: rnnlm {', '.join(f'{p:.3f}' for p in ours_ppl)}; "
                  f"PyTorch {', '.join(f'{p:.3f}' for p in theirs_ppl)}; "
                  f"means {abs(ours / theirs - 1) * 100:.1f}% apart.")

        dask_result = dask_rows(workdir, model)
        api_rows = python_rows(workdir, model, test)
        shared_rows = prefix_rows(workdir)
        depth_result = depth_rows(workdir)

    commit, cpu, torch_version = machine()
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
    rows, partitions, start_s, dask = dask_result
    plain = dask["plain"]
    lines += ["", "## N-best scoring on Dask against one process", "",
              f"{rows:,} rows (the ASR test list x {DASK_COPIES}), the LSTM model above, LM + am + n-gram flags; "
              f"{partitions} partitions of {DASK_PARTITION_ROWS:,} rows; one run each (LocalCluster start-up not counted). "
              f"Start-up of one `rnnlm score` (load the model, score nothing): {start_s:.2f} s.",
              "",
              "| setup | rows/s | vs plain | start-up share of the run |",
              "| --- | ---: | ---: | ---: |",
              f"| plain `rnnlm score`, 2 threads | {plain:,.1f} | 1.00x | |"]
    for (workers, threads), (rate, overhead) in ((k[:2], v) for k, v in dask.items() if k != "plain" and not k[2]):
        lines.append(f"| Dask, {workers} worker(s) x {threads} thread(s) | {rate:,.1f} | {rate / plain:.2f}x | {overhead * 100:.1f}% |")
    lines += python_section(api_rows, dask_result)
    lines += prefix_section(shared_rows)
    lines += depth_section(*depth_result)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results.md"), "w") as f:
        f.write(text)
    print(text)


def prefix_rows(workdir):
    """`rnnlm score` with shared prefixes against without, on N-best dev lists."""
    models = {}
    for name, net, reverse in [("word", WORD_NET, False), ("asr", ASR_NET + ASR_TEXT, False),
                               ("asr-back", ASR_NET + ASR_TEXT, True)]:
        out = os.path.join(workdir, f"prefix-{name}")
        run([BIN, "train", "--data", BROWN, "--out", out, "--force", "--epochs", "1", "--time-limit",
             "5" if QUICK else "20", "--device", "cpu", *net, *(["--reverse"] if reverse else [])])
        models[name] = out
    cases = [
        ("synthetic dev lists, `make train-word`'s network", os.path.join(ASR, "dev.nbest.csv"), ["word"]),
        ("real dev lists (10 best), `make train-asr`'s network", os.path.join(ASR, "real-dev.nbest.csv"), ["asr"]),
        ("real dev lists (10 best), forward + backward", os.path.join(ASR, "real-dev.nbest.csv"), ["asr", "asr-back"]),
    ]
    rows = []
    for name, path, which in cases:
        flags = ["--model", models[which[0]], "--input", path, "--am-column", "am_score",
                 "--ngram-column", "ngram_log10", "--ngram-weight", "0.3", "--device", "cpu", "--digits", "8",
                 "--max-candidates", "10"]
        if len(which) == 2:
            flags += ["--backward-model", models[which[1]], "--backward-weight", "0.3"]
        outputs, work = {}, {}

        def rate(sharing):
            output = os.path.join(workdir, f"prefix-{sharing}.csv")
            stderr = run([BIN, "score", *flags, "--output", output, "--prefix-sharing", sharing]).stderr
            with open(output) as f:
                outputs[sharing] = list(csv_rows(f))
            match = re.search(r"prefix sharing: (\d+) recurrent steps and (\d+) output rows for (\d+) tokens", stderr)
            if match:
                work["steps"], work["outputs"], work["tokens"] = map(int, match.groups())
            return logged_rate(stderr, r"([0-9.]+) sentences/s")

        shared, plain = median_pair(lambda: rate("on"), lambda: rate("off"))
        worst = max_difference(outputs["on"], outputs["off"])
        rows.append((name, shared, plain, work["tokens"] / work["steps"], work["tokens"] / work["outputs"], worst))
    return rows


def prefix_models(workdir):
    """The networks of make train-asr, forward and backward, on its text and vocabulary,
    briefly trained (speed does not depend on the weights)."""
    models = {}
    for name, reverse in [("asr", False), ("asr-back", True)]:
        out = os.path.join(workdir, f"depth-{name}")
        if not os.path.exists(out):
            run([BIN, "train", "--data", BROWN, "--out", out, "--force", "--epochs", "1", "--time-limit",
                 "5" if QUICK else "20", "--device", "cpu", *ASR_NET, *ASR_TEXT, *(["--reverse"] if reverse else [])])
        models[name] = out
    return models


def depth_rows(workdir):
    """Scoring and tuning the real lists at 10 and at 100 candidates per utterance."""
    models = prefix_models(workdir)
    pair = ["--model", models["asr"], "--backward-model", models["asr-back"], "--am-column", "am_score",
            "--ngram-column", "ngram_log10", "--device", "cpu"]
    scoring, work = {}, {}
    for depth in (10, 100):
        def timed(depth=depth):
            output = os.path.join(workdir, f"depth-{depth}.csv")
            started = time.perf_counter()
            stderr = run([BIN, "score", *pair, "--ngram-weight", "0.3", "--backward-weight", "0.3",
                          "--input", os.path.join(ASR, "real-test.nbest.csv"), "--max-candidates", str(depth),
                          "--output", output]).stderr
            match = re.search(r"prefix sharing: (\d+) recurrent steps and (\d+) output rows for (\d+) tokens", stderr)
            if match:
                work[depth] = tuple(map(int, match.groups()))
            return time.perf_counter() - started
        scoring[depth] = timed
    deep, shallow = median_pair(scoring[100], scoring[10])
    tuning = []
    searches = {"line": ["--bags", "1"], "grid": ["--search", "grid"], "bagged": []}
    for depth in (10, 100):
        times = {}
        for method, flags in searches.items():
            def timed(method=method, flags=flags, depth=depth):
                started = time.perf_counter()
                out = run([BIN, "tune", *pair, "--input", os.path.join(ASR, "real-dev.nbest.csv"),
                           "--references", os.path.join(ASR, "real-dev.refs.csv"), "--max-candidates", str(depth),
                           *flags, "--json"]).stdout
                times[method + "_wer"] = json.loads(out)["rescored_wer"]
                return time.perf_counter() - started
            times[method] = timed
        line, grid = median_pair(times["line"], times["grid"])
        bagged = statistics.median(times["bagged"]() for _ in range(REPEATS))
        tuning.append((depth, line, grid, bagged, times["line_wer"], times["grid_wer"], times["bagged_wer"]))
    return (deep, shallow, work), tuning


def depth_section(scoring, tuning):
    deep, shallow, work = scoring
    lines = ["", "## Deep N-best lists", "",
             "`rnnlm score` of the real test lists with `make train-asr`'s networks (its text and 33,092-word vocabulary, briefly trained), forward + "
             f"backward, am and n-gram columns, at `--max-candidates 100` against `--max-candidates 10`, median of {REPEATS} "
             "runs, interleaved; wall time of the whole command, model loading included.",
             "", "| candidates per utterance | wall (s) | against 10 | tokens | recurrent steps per token | output rows per token |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for depth, wall in ((10, shallow), (100, deep)):
        steps, outputs, tokens = work.get(depth, (0, 0, 1))
        lines.append(f"| {depth} | {wall:.2f} | {wall / shallow:.2f}x | {tokens:,} | {steps / tokens:.3f} | {outputs / tokens:.3f} |")
    lines += ["", "`rnnlm tune` on the real dev lists with both models (scoring included, the same in all), "
              "one exact line search (`--bags 1`) against the grid search, and the default, the mean of 64 line "
              "searches on resamples of the lists; median wall time; WER of the `rescored` row on the dev lists "
              "searched (the mean of resamples does not chase it: see docs/results.md for test).",
              "", "| candidates per utterance | line (s) | grid (s) | grid/line | default (s) | line WER | grid WER "
              "| default WER |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for depth, line, grid, bagged, line_wer, grid_wer, bagged_wer in tuning:
        lines.append(f"| {depth} | {line:.2f} | {grid:.2f} | {grid / line:.2f}x | {bagged:.2f} | {100 * line_wer:.2f}% "
                     f"| {100 * grid_wer:.2f}% | {100 * bagged_wer:.2f}% |")
    return lines


def main_depth_only():
    with tempfile.TemporaryDirectory() as workdir:
        result = depth_rows(workdir)
    write_section_page("Deep N-best lists", "results-depth.md", depth_section(*result))


def csv_rows(handle):
    import csv

    return csv.reader(handle)


def max_difference(a, b):
    """The largest difference between two outputs' log-score columns; every other
    column (text, counts, ranks) must agree exactly, perplexities to their last printed
    decimal or 1e-6 relative."""
    assert len(a) == len(b)
    header = a[0]
    logs = {"logprob", "log10prob", "backward_logprob", "lm_logprob", "score"}
    worst = 0.0
    for x, y in zip(a[1:], b[1:]):
        for name, f, g in zip(header, x, y):
            if name in logs:
                worst = max(worst, abs(float(f) - float(g)))
            elif name == "perplexity":
                # printed to 3 decimals
                assert abs(float(f) - float(g)) <= 1.001e-3 + 1e-6 * abs(float(g)), (x, y)
            else:
                assert f == g, (x, y)
    return worst


def prefix_section(rows):
    lines = ["", "## Shared-prefix N-best scoring", "",
             "`rnnlm score --prefix-sharing on` against `off` (the same command otherwise: am, n-gram and, "
             f"where named, backward columns), median of {REPEATS} runs, interleaved. Both outputs are compared "
             "field by field: ranks, counts and text equal, the log-score columns within the last column.",
             "", "| list, model | on (sentences/s) | off (sentences/s) | on/off | fewer recurrent steps | fewer output rows | largest log-score difference |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, shared, plain, steps, outputs, worst in rows:
        lines.append(f"| {name} | {shared:,.1f} | {plain:,.1f} | {shared / plain:.2f}x | {steps:.2f}x | {outputs:.2f}x | {worst:.1e} |")
    return lines


def main_prefix_only():
    with tempfile.TemporaryDirectory() as workdir:
        rows = prefix_rows(workdir)
    write_section_page("Shared-prefix scoring", "results-prefix.md", prefix_section(rows))


RANK_STEPS = 20 if QUICK else 60


def rank_run(workdir, name, threads, ranks=1, extra=(), port=29531, net=WORD_NET, data=None, length=None):
    """Starts `rnnlm train` for one epoch, or `length` (as `ranks` ranks on the loopback)."""
    length = length or (["--max-steps", str(RANK_STEPS)] if QUICK else ["--epochs", "1"])
    cmd = [BIN, "train", "--data", data or train_data(workdir), "--out", os.path.join(workdir, name), "--force",
           "--min-count", "1", *net, "--batch-size", "32", "--dropout", "0", *length,
           "--threads", str(threads), "--device", "cpu", *extra]
    if ranks > 1:
        cmd = [os.path.join(ROOT, "scale", "ranks.sh"), str(ranks), str(port), *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rank_rate(process):
    """tokens/s of a finished run, and its seconds waiting, summing and training."""
    _, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"failed: {process.args}\n{err[-2000:]}")
    rate = logged_rate(err, r"\|\s+([0-9.]+) tok/s")
    summed = re.search(r"of ([0-9.]+) s of training, ([0-9.]+) s waiting .* and ([0-9.]+) s summing"
                       r".* whose last ([0-9.]+) s", err)
    return rate, tuple(float(summed.group(i)) for i in (2, 3, 4, 1)) if summed else None


def ranks_rows(workdir):
    """Tokens/s of two independent runs side by side, 2 ranks and 2 threads, each one
    epoch, with one batch a step and with --accumulate 4; the ranks' time breakdown."""
    data = train_data(workdir)
    rates = {key: [] for key in ("alone", "ranks", "threads", "alone-4", "ranks-4")}
    shares = {"ranks": [], "ranks-4": []}
    for _ in range(REPEATS):
        for suffix, extra in (("", []), ("-4", ["--accumulate", "4"])):
            pair = [rank_run(workdir, f"alone-{i}", 1, data=data, extra=extra) for i in range(2)]
            rates["alone" + suffix].append(sum(rank_rate(p)[0] for p in pair))
            rate, (waiting, summing, overlapped, training) = rank_rate(
                rank_run(workdir, "ranks", 1, ranks=2, data=data, extra=extra))
            rates["ranks" + suffix].append(rate)
            shares["ranks" + suffix].append((waiting / training, summing / training, overlapped / training))
        rates["threads"].append(rank_rate(rank_run(workdir, "threads", 2, data=data))[0])
    median = {key: statistics.median(values) for key, values in rates.items()}
    share = {key: tuple(statistics.median(s[i] for s in values) for i in (0, 1, 2)) for key, values in shares.items()}
    return median, share, oversubscribed_gap(workdir), gloo_rows(workdir)


def oversubscribed_gap(workdir):
    """4 ranks on this machine's cores against one process with --accumulate 4 (the char
    network): the largest parameter difference, relative to the parameter's scale."""
    for name, ranks, extra in [("four", 4, ["--accumulate", "1"]), ("one", 1, ["--accumulate", "4"])]:
        rank_rate(rank_run(workdir, name, 1, ranks=ranks, extra=extra, port=29532,
                           net=["--level", "char", "--cell", "gru", "--embed", "64", "--hidden", "256", "--layers", "1"],
                           data=DINOSAURS, length=["--max-steps", str(RANK_STEPS)]))
    script = ("import sys, torch; from safetensors.torch import load_file as l; a = l(sys.argv[1]); b = l(sys.argv[2]); "
              "print(max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1e-3)) for k in a))")
    out = run([PYTHON, "-c", script, os.path.join(workdir, "four", "last.safetensors"),
               os.path.join(workdir, "one", "last.safetensors")]).stdout
    return float(out.strip())


GLOO_SIZES_MB = [1, 4, 16, 26, 64]
GLOO_ALL_REDUCE = """
import sys, time, torch, torch.distributed as dist, torch.multiprocessing as mp
def work(rank, port, sizes):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for mb in sizes:
        t = torch.ones(int(mb * 1e6 / 4))
        for _ in range(3):
            dist.all_reduce(t)
        dist.barrier()
        started = time.perf_counter()
        for _ in range(10):
            dist.all_reduce(t)
        if rank == 0:
            print(mb, (time.perf_counter() - started) / 10, flush=True)
    dist.destroy_process_group()
if __name__ == "__main__":
    mp.spawn(work, args=(int(sys.argv[1]), [float(a) for a in sys.argv[2:]]), nprocs=2)
"""


def gloo_rows(workdir):
    """Seconds of one all-reduce of each size over Gloo between 2 processes on the
    loopback (torch.distributed's Gloo, the library rnnlm's ranks use), idle cores."""
    script = os.path.join(workdir, "gloo_all_reduce.py")
    with open(script, "w") as f:
        f.write(GLOO_ALL_REDUCE)
    out = run([PYTHON, script, "29533", *map(str, GLOO_SIZES_MB)]).stdout
    return [(float(mb), float(seconds)) for mb, seconds in (line.split() for line in out.strip().splitlines())]


def ranks_section(rates, share, gap, gloo):
    alone, alone4 = rates["alone"], rates["alone-4"]
    length = f"{RANK_STEPS} steps" if QUICK else "one epoch"
    return ["", "## Training on several processes", "",
            f"The `make train-word` network (2x384 LSTM, class layer, tied), dropout off, batches of 32 sentences, "
            f"{length} of the first {TRAIN_SENTENCES} Brown train sentences; median of {REPEATS} runs, "
            "interleaved. A step of 2 ranks takes two batches, one each.", "",
            "| run | tokens/s | against two independent runs | waiting for the slower rank | summing after the backward pass | backward pass under the output layer's sum |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| two independent 1-thread runs side by side (summed) | {alone:,.0f} | 1.00x | | | |",
            f"| 2 ranks x 1 thread (scale/ranks.sh) | {rates['ranks']:,.0f} | {rates['ranks'] / alone:.2f}x | "
            + " | ".join(f"{100 * x:.1f}%" for x in share['ranks']) + " |",
            f"| 1 process x 2 threads | {rates['threads']:,.0f} | {rates['threads'] / alone:.2f}x | | | |",
            f"| two independent runs, `--accumulate 4` (summed) | {alone4:,.0f} | 1.00x | | | |",
            f"| 2 ranks, `--accumulate 4` (one sum per 8 batches) | {rates['ranks-4']:,.0f} | "
            f"{rates['ranks-4'] / alone4:.2f}x | " + " | ".join(f"{100 * x:.1f}%" for x in share['ranks-4']) + " |",
            "",
            "Shares are of rank 0's training time. The output layer's gradients (its word vectors: 16.5 of the 26.0 MB) "
            "are summed over Gloo on the loopback in the background while the rest of the last batch's backward pass "
            "runs (last column); after it, one all-reduce sums the recurrent layers' gradients and the embedding rows "
            "the ranks' batches touched, and waits for the background sum (summing); waiting is the small sum before "
            "it, which ends when the slower rank's batch does.", "",
            f"4 ranks oversubscribed on the cores against one process with `--accumulate 4` (the character network, "
            f"{RANK_STEPS} steps): largest parameter difference {gap:.1e} of the parameter's scale.", "",
            "One all-reduce over Gloo between 2 processes on the loopback, by size (torch.distributed's Gloo, "
            "the same library, cores otherwise idle):", "",
            "| buffer (MB) | ms | GB/s of buffer |", "| ---: | ---: | ---: |"] + \
        [f"| {mb:g} | {1e3 * seconds:.1f} | {mb / 1e3 / seconds:.2f} |" for mb, seconds in gloo]


def main_ranks_only():
    with tempfile.TemporaryDirectory() as workdir:
        result = ranks_rows(workdir)
    write_section_page("Training on several processes", "results-ranks.md", ranks_section(*result))


def write_section_page(title, name, section):
    """bench/NAME: one section's rows under the commit, the CPU and the torch version."""
    commit, cpu, torch_version = machine()
    lines = [f"# {title}", "", f"commit `{commit}`, {platform.machine()} {cpu}, torch {torch_version}, "
             f"CPU{', quick mode' if QUICK else ''}."]
    lines += section
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", name), "w") as f:
        f.write(text)
    print(text)


def machine():
    """The commit, the CPU and the torch version, printed beside every figure."""
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
            cpu = f"{names[0]} x {len(names)}" if names else cpu
    torch_version = run([PYTHON, "-c", "import torch; print(torch.__version__)"]).stdout.strip()
    return commit, cpu, torch_version


def main_python_only():
    """BENCH_ONLY=python: the LSTM model of the training rows, then the Python API's rows."""
    with tempfile.TemporaryDirectory() as workdir:
        data = train_data(workdir)
        rnnlm_train_speed(data, workdir, "lstm", True)
        model = os.path.join(workdir, "train-lstm-full")
        test = os.path.join(workdir, "test.txt")
        with open(os.path.join(BROWN, "test.txt")) as f, open(test, "w") as out:
            out.writelines(f.readlines()[:SCORE_SENTENCES])
        api_rows = python_rows(workdir, model, test)
        dask_result = dask_rows(workdir, model)
    commit, cpu, torch_version = machine()
    lines = ["# rnnlm's Python API against its command line", "",
             f"commit `{commit}`, {platform.machine()} {cpu}, torch {torch_version}, CPU"
             f"{', quick mode' if QUICK else ''}."]
    lines += python_section(api_rows, dask_result)
    lines += prefix_section(shared_rows)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results-python.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
