"""The ESPnet and pyctcdecode adapters, held to their interfaces' contracts in plain Python."""
import math

import pytest
import rnnlm
import torch
from rnnlm.espnet import LOG_ZERO, EspnetScorer
from rnnlm.pyctcdecode import PyctcdecodeLM


@pytest.fixture(scope="module")
def forward(models):
    return rnnlm.Model(models[0])


def espnet_token_list(model):
    """An ESPnet-style list: <blank> first, <unk>, the model's words, a word the model
    does not know, <sos/eos> last."""
    words = [model.token(i) for i in range(model.vocab_size)]
    words = [w for w in words if w not in ("<EOS>", "<UNK>")]
    return ["<blank>", "<unk>"] + words + ["zebra", "<sos/eos>"]


def test_espnet_batch_score_follows_the_interface(forward):
    tokens = espnet_token_list(forward)
    scorer = EspnetScorer(forward, tokens)
    sos = len(tokens) - 1
    ys = torch.tensor([[sos], [sos]])
    states = [scorer.init_state(None), scorer.init_state(None)]
    scores, states = scorer.batch_score(ys, states, None)
    assert scores.shape == (2, len(tokens)) and len(states) == 2
    assert float(scores[0, 0]) < LOG_ZERO / 2  # <blank> is never predicted
    # The model's own words keep their log-probabilities; the list's mass (without the
    # unknown word's extra share) is the model's.
    logp, _ = forward.step(forward.initial_state(1), [None])
    for j, token in enumerate(tokens):
        if token in forward and token not in ("<EOS>", "<UNK>"):
            assert abs(float(scores[0, j]) - float(logp[0, forward.token_id(token)])) < 1e-6
    assert abs(float(scores[0, sos]) - float(logp[0, forward.token_id("<EOS>")])) < 1e-6
    assert abs(float(scores[0, 1]) - float(logp[0, forward.token_id("<UNK>")])) < 1e-6
    zebra = tokens.index("zebra")
    expected = float(logp[0, forward.token_id("<UNK>")]) + forward.oov_log_share("zebra")
    assert abs(float(scores[0, zebra]) - expected) < 1e-4
    assert scorer.final_score(states[0]) == 0.0


def test_espnet_beam_of_different_histories_equals_one_at_a_time(forward):
    tokens = espnet_token_list(forward)
    scorer = EspnetScorer(forward, tokens)
    sos = len(tokens) - 1
    sentences = [["the", "pear", "is"], ["a", "pair", "of"], ["we", "ate", "zebra"]]
    ys = [[sos] for _ in sentences]
    states = [None] * len(sentences)
    totals = [0.0] * len(sentences)
    for step in range(4):
        scores, states = scorer.batch_score(torch.tensor(ys), states, None)
        for i, sentence in enumerate(sentences):
            word = sentence[step] if step < len(sentence) else "<sos/eos>"
            j = tokens.index(word)
            totals[i] += float(scores[i, j])
            ys[i].append(j)
    for sentence, total in zip(sentences, totals):
        assert abs(total - forward.score(" ".join(sentence))) < 1e-4, sentence


def test_espnet_score_is_the_batch_row(forward):
    tokens = espnet_token_list(forward)
    scorer = EspnetScorer(forward, tokens)
    sos = len(tokens) - 1
    the = tokens.index("the")
    first, state = scorer.score(torch.tensor([sos]), None, None)
    second, _ = scorer.score(torch.tensor([sos, the]), state, None)
    batch, states = scorer.batch_score(torch.tensor([[sos]]), [None], None)
    batch2, _ = scorer.batch_score(torch.tensor([[sos, the]]), states, None)
    assert torch.allclose(first, batch[0]) and torch.allclose(second, batch2[0])
    assert scorer.select_state(state, 0) is state


def test_pyctcdecode_scores_add_up_to_the_sentence(forward):
    lm = PyctcdecodeLM(forward, alpha=0.5, beta=1.5)
    words = "the apple and pear zebra".split()
    state = lm.get_start_state()
    total = 0.0
    for i, word in enumerate(words):
        score, state = lm.score(state, word, is_last_word=(i == len(words) - 1))
        total += (score - lm.beta) / lm.alpha
    assert abs(total - forward.score(" ".join(words))) < 1e-4


def test_pyctcdecode_partial_tokens_and_saving(forward, tmp_path):
    lm = PyctcdecodeLM(forward, alpha=0.5, unk_score_offset=-10.0)
    assert lm.score_partial_token("pe") == 0.0  # "pear"
    assert lm.score_partial_token("") == 0.0
    assert lm.score_partial_token("qx") == pytest.approx(-5.0)
    lm.save_to_dir(str(tmp_path))
    again = PyctcdecodeLM.load_from_dir(str(tmp_path))
    assert (again.alpha, again.beta, again.unk_score_offset) == (lm.alpha, lm.beta, lm.unk_score_offset)
    a, _ = lm.score(lm.get_start_state(), "pear")
    b, _ = again.score(again.get_start_state(), "pear")
    assert math.isclose(a, b, abs_tol=1e-9)


def test_adapters_refuse_a_backward_model(models):
    backward = rnnlm.Model(models[1])
    with pytest.raises(ValueError, match="forward"):
        EspnetScorer(backward, ["<sos/eos>"])
    with pytest.raises(ValueError, match="forward word-level"):
        PyctcdecodeLM(backward)
