"""rnnlm.Model against the command line and against the chain rule."""
import csv
import io
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import pytest
import rnnlm
import torch
from conftest import SENTENCES, rnnlm_cli

HYPOTHESES = ["the apple and pear salad", "the apple and pair salad", "the zebra ate a pear",
              "a pear", "we ate the cat"]


def cli_rows(model, rows, *flags):
    """`rnnlm score` on a CSV of `rows` (dicts); its output rows as dicts."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out = rnnlm_cli("score", "--model", model, "--digits", "12", *flags, input=buffer.getvalue().encode())
    return list(csv.DictReader(io.StringIO(out)))


def test_score_batch_equals_the_command_line(lm, models):
    sentences = SENTENCES + HYPOTHESES
    cli = cli_rows(models[0], [{"sentence": s} for s in sentences])
    ours = lm.score_batch(sentences)
    assert len(ours) == len(cli)
    for row, value in zip(cli, ours):
        assert abs(float(row["logprob"]) - value) < 1e-5, (row, value)
    # One at a time or batched: the same numbers up to float rounding.
    assert max(abs(a - lm.score(s)) for a, s in zip(ours, sentences)) < 1e-5


def test_full_scores_sum_to_score_and_mark_the_unknown_word(lm):
    for sentence in HYPOTHESES:
        scored = lm.full_scores(sentence)
        assert scored[-1][0] == "<EOS>"
        assert abs(sum(lp for _, lp, _ in scored) - lm.score(sentence)) < 1e-9
        assert [oov for _, _, oov in scored] == [t not in lm for t, _, _ in scored]
    assert [t for t, _, oov in lm.full_scores("the zebra ate a pear") if oov] == ["zebra"]
    without_eos = lm.full_scores("a pear", eos=False)
    assert [t for t, _, _ in without_eos] == ["a", "pear"]
    assert abs(lm.score("a pear", eos=False) - sum(lp for _, lp, _ in without_eos)) < 1e-9


def test_bases_and_perplexity_follow_kenlm(lm):
    s = "the pear is ripe"
    assert abs(lm.score(s, base=10) - lm.score(s) / math.log(10)) < 1e-12
    tokens = len(lm.full_scores(s))
    assert abs(lm.perplexity(s) - math.exp(-lm.score(s) / tokens)) < 1e-9
    with pytest.raises(ValueError, match="bos=False"):
        lm.score(s, bos=False)
    with pytest.raises(ValueError, match="base"):
        lm.score(s, base=2)


def test_vocabulary_lookups(lm):
    assert lm.level == "word" and lm.vocab_size > 5
    assert "pear" in lm and "zebra" not in lm
    assert lm.token(lm.token_id("pear")) == "pear"
    assert lm.token_id("zebra") is None
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.token(lm.vocab_size)


def test_stepping_through_a_sentence_sums_to_its_score(lm):
    for sentence in HYPOTHESES:
        tokens = lm.tokenize(sentence) + ["<EOS>"]
        unk = lm.token_id("<UNK>")
        state, previous, total = lm.initial_state(1), None, 0.0
        for token in tokens:
            logp, state = lm.step(state, [previous])
            assert logp.shape == (1, lm.vocab_size) and logp.dtype == torch.float32
            assert abs(float(logp.exp().sum()) - 1.0) < 1e-5
            token_id = lm.token_id(token)
            if token_id is None:  # the divide policy's share of <UNK>
                total += float(logp[0, unk]) + lm.oov_log_share(token)
                token_id = unk
            else:
                total += float(logp[0, token_id])
            previous = token_id
        assert abs(total - lm.score(sentence)) < 1e-4, sentence


def test_select_picks_the_rows_of_the_state(lm):
    ids = [lm.token_id(w) for w in ["the", "a", "we"]]
    state = lm.initial_state(3)
    _, state = lm.step(state, [None, None, None])
    logp, after = lm.step(state, ids)
    picked = state.select(torch.tensor([2, 0, 0]))
    assert picked.batch == 3
    logp_picked, _ = lm.step(picked, [ids[2], ids[0], ids[0]])
    assert torch.equal(logp_picked, logp[[2, 0, 0]])
    joined = rnnlm.State.concat([state.select([1]), state.select([2])])
    logp_joined, _ = lm.step(joined, ids[1:])
    assert torch.allclose(logp_joined, logp[1:], atol=1e-6)
    with pytest.raises(ValueError, match="outside the batch"):
        state.select([3])
    with pytest.raises(ValueError, match="token ids for a state of batch 3"):
        lm.step(state, ids[:2])


def test_rescore_combines_and_ranks_as_the_command_line(lm, models):
    am = [-10.0, -9.5, -12.0, -15.0, -11.0]
    ngram = [-6.0, -6.5, -8.0, -3.0, -5.0]
    weights = dict(lm_weight=0.8, length_penalty=0.3, ngram_weight=0.2, backward_weight=0.35)
    ours = lm.rescore(HYPOTHESES, am=am, ngram=ngram, **weights)
    rows = [{"utterance_id": "u1", "sentence": h, "am": a, "lm": n}
            for h, a, n in zip(HYPOTHESES, am, ngram)]
    cli = cli_rows(models[0], rows, "--am-column", "am", "--ngram-column", "lm",
                   "--backward-model", models[1], *[f"--{k.replace('_', '-')}={v}" for k, v in weights.items()])
    for i, row in enumerate(cli):
        assert abs(float(row["logprob"]) - ours.logprob[i]) < 1e-5
        assert abs(float(row["backward_logprob"]) - ours.backward_logprob[i]) < 1e-5
        assert abs(float(row["score"]) - ours.score[i]) < 1e-5
        assert int(row["rank"]) == ours.rank[i]
        assert (row["best"] == "1" or row["best"].lower() == "true") == (i == ours.best)
    assert ours.backward_logprob == lm.score_batch(HYPOTHESES, model="backward")
    expected = [a + 0.8 * ((1 - 0.35 - 0.2) * f + 0.35 * b + 0.2 * n * math.log(10)) + 0.3 * len(h.split())
                for a, f, b, n, h in zip(am, ours.logprob, ours.backward_logprob, ngram, HYPOTHESES)]
    assert max(abs(x - y) for x, y in zip(expected, ours.score)) < 1e-9


def test_rescore_file_writes_what_the_command_line_writes(lm, models, tmp_path):
    source = tmp_path / "nbest.csv"
    with open(source, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["utterance_id", "sentence", "am_score"])
        for u in range(3):
            for i, h in enumerate(HYPOTHESES):
                writer.writerow([f"u{u}", h, -10.0 - i * 0.25 - u])
    ours = tmp_path / "ours.csv"
    summary = lm.rescore_file(source, ours, am_column="am_score", lm_weight=0.7, backward_weight=0.4)
    cli = tmp_path / "cli.csv"
    rnnlm_cli("score", "--model", models[0], "--backward-model", models[1], "--input", str(source),
              "--output", str(cli), "--am-column", "am_score", "--lm-weight", "0.7",
              "--backward-weight", "0.4")
    assert ours.read_bytes() == cli.read_bytes()
    assert summary["rows"] == 15 and summary["bad_rows"] == 0


def test_evaluate_gives_the_keys_and_numbers_of_eval_json(lm, models, tmp_path):
    text = tmp_path / "valid.txt"
    text.write_text("\n".join(HYPOTHESES) + "\n\n")
    cli = json.loads(rnnlm_cli("eval", "--model", models[0], "--data", str(text), "--json"))
    from_path = lm.evaluate(text)
    from_lines = lm.evaluate(HYPOTHESES + [""])
    assert set(from_path) == set(cli)
    for key in cli:
        assert abs(from_path[key] - cli[key]) < 1e-9, key
        assert abs(from_lines[key] - cli[key]) < 1e-9, key


def test_evaluate_of_no_sentences_is_an_error_not_a_perplexity_of_one(lm, tmp_path):
    with pytest.raises(ValueError, match="^no sentences to evaluate$"):
        lm.evaluate(["", "  "])
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    with pytest.raises(OSError, match="blank.txt: no sentences to evaluate"):
        lm.evaluate(blank)


def test_pickle_reloads_by_path(lm):
    blob = pickle.dumps(lm)
    assert len(blob) < 1000, "the weights must not travel"
    again = pickle.loads(blob)
    assert again.score_batch(HYPOTHESES) == lm.score_batch(HYPOTHESES)
    assert again.backward_path == lm.backward_path


def test_two_threads_at_once_score_as_one(lm):
    sentences = (SENTENCES + HYPOTHESES) * 40
    alone = lm.score_batch(sentences)
    results = [None, None]

    def work(i):
        results[i] = lm.score_batch(sentences)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == alone and results[1] == alone


def test_the_gil_is_released_while_scoring(lm):
    # A second thread, woken as the call starts, must get to run before the call
    # returns. With the GIL held through the call, it could run only after it.
    sentences = (SENTENCES + HYPOTHESES) * 4000
    calling = threading.Event()
    returned = [False]
    ran_during_the_call = []

    def watch():
        calling.wait()
        ran_during_the_call.append(not returned[0])

    watcher = threading.Thread(target=watch)
    watcher.start()
    calling.set()
    lm.score_batch(sentences)
    returned[0] = True
    watcher.join()
    assert ran_during_the_call == [True]


def test_ctrl_c_interrupts_a_long_batch(models):
    # A shell's background job inherits SIGINT ignored, and Python then keeps it
    # ignored: give the child the handler an interactive user has.
    script = (
        "import rnnlm, signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"lm = rnnlm.Model({models[0]!r})\n"
        "sentences = ['the apple and pear salad and the pear is ripe'] * 2_000_000\n"
        "print('ready', flush=True)\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    lm.score_batch(sentences)\n"
        "except KeyboardInterrupt:\n"
        "    print(f'interrupted after {time.perf_counter() - start:.2f}', flush=True)\n"
        "    sys.exit(3)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    try:
        out, _ = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("score_batch went on after Ctrl-C")
    assert child.returncode == 3, out
    assert "interrupted after" in out


def test_bad_input_raises_the_one_line_message(lm, tmp_path):
    with pytest.raises(ValueError, match="sentence 2 is empty"):
        lm.score_batch(["a pear", "  "])
    with pytest.raises(ValueError, match="hypothesis 2: am score NaN is not a finite number"):
        lm.rescore(["a pear", "the pear"], am=[-1.0, float("nan")])
    with pytest.raises(ValueError, match="am has 1 scores for 2 hypotheses"):
        lm.rescore(["a pear", "the pear"], am=[-1.0])
    with pytest.raises(ValueError, match="sum to more than 1"):
        lm.rescore(["a pear"], ngram=[-1.0], ngram_weight=0.7, backward_weight=0.5)
    with pytest.raises(OSError, match="config.json"):
        rnnlm.Model(tmp_path)
    with pytest.raises(ValueError, match="oov: .keep. is not one of divide, unk"):
        rnnlm.Model(lm.path, oov="keep")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.step(lm.initial_state(1), [lm.vocab_size + 3])
    with pytest.raises(OSError, match="cannot open"):
        lm.rescore_file(tmp_path / "missing.csv", tmp_path / "out.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,am\na pear,-1\nthe pear,oops\n")
    with pytest.raises(ValueError, match="line 3 \\(row 2\\): am score 'oops' is not a finite number"):
        lm.rescore_file(bad, tmp_path / "out.csv", am_column="am")
    assert not (tmp_path / "out.csv").exists()


def test_a_state_of_another_model_is_refused(models):
    forward = rnnlm.Model(models[0])
    backward = rnnlm.Model(models[1])
    with pytest.raises(ValueError, match="does not belong to this model"):
        forward.step(backward.initial_state(1), [None])


def test_the_extension_is_built_against_the_torch_it_checks():
    assert rnnlm._rnnlm.built_torch().split("+")[0] == rnnlm.TORCH_VERSION
    assert torch.__version__.split("+")[0] == rnnlm.TORCH_VERSION


def run_python(code, env=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_import_without_torch_is_a_clear_import_error():
    result = run_python("import sys; sys.modules['torch'] = None; import rnnlm")
    assert result.returncode != 0
    assert "ImportError: rnnlm needs torch==2.11.0" in result.stderr, result.stderr


def test_import_with_another_torch_is_a_clear_import_error(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '2.5.1+cpu'\n")
    result = run_python("import rnnlm", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert "rnnlm is built against torch 2.11.0, but this interpreter has torch 2.5.1+cpu" in result.stderr


def test_the_extension_alone_refuses_to_load_before_torch():
    code = ("import importlib.util, sys, rnnlm._rnnlm as loaded\n"
            "path = loaded.__file__\n"
            "for name in [n for n in sys.modules if n == 'torch' or n.startswith('torch.')]:\n"
            "    del sys.modules[name]\n"
            "spec = importlib.util.spec_from_file_location('rnnlm._rnnlm', path)\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "try:\n"
            "    spec.loader.exec_module(module)\n"
            "except ImportError as e:\n"
            "    print('ImportError:', e)\n")
    result = run_python(code)
    assert "ImportError: rnnlm._rnnlm was imported before torch" in result.stdout, result.stdout + result.stderr
