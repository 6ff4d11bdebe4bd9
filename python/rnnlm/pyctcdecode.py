"""An rnnlm model as a pyctcdecode language model (``pyctcdecode.language_model.AbstractLanguageModel``).

    from pyctcdecode import BeamSearchDecoderCTC, Alphabet
    from rnnlm.pyctcdecode import PyctcdecodeLM
    decoder = BeamSearchDecoderCTC(Alphabet.build_alphabet(labels), PyctcdecodeLM(rnnlm.Model("models/asr")))

pyctcdecode asks for a score each time its beam completes a word, and adds it to the
beam's acoustic log score: ``alpha · ln P(word | words so far) + beta``, and at the
last word also ``alpha · ln P(<EOS> | all the words)``, as its kenlm model does (kenlm's
log10 turned into natural log). A partial word that no vocabulary word starts with
gets ``unk_score_offset``. The class follows the interface's signatures without
importing pyctcdecode.
"""

import bisect
import os

# pyctcdecode's defaults.
DEFAULT_ALPHA = 0.5
DEFAULT_BETA = 1.5
DEFAULT_UNK_LOGP_OFFSET = -10.0


class RnnlmState:
    """The model's state after the words so far, and its next-word log-probabilities."""

    __slots__ = ("state", "log_probs")

    def __init__(self, state, log_probs):
        self.state, self.log_probs = state, log_probs


class PyctcdecodeLM:
    """pyctcdecode's ``AbstractLanguageModel`` over a word-level, forward :class:`rnnlm.Model`."""

    def __init__(self, model, alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA,
                 unk_score_offset=DEFAULT_UNK_LOGP_OFFSET):
        if model.level != "word" or model.reverse:
            raise ValueError("PyctcdecodeLM needs a forward word-level model")
        self.model = model
        self.alpha, self.beta, self.unk_score_offset = alpha, beta, unk_score_offset
        words = [model.token(i) for i in range(model.vocab_size)]
        self._words = sorted(w for w in words if w not in ("<EOS>", "<UNK>"))
        self._eos = model.token_id("<EOS>")

    @property
    def order(self):
        # The whole history conditions each word; pyctcdecode reads this only to report it.
        return 0

    def get_start_state(self):
        logp, state = self.model.step(self.model.initial_state(1), [None])
        return RnnlmState(state, logp[0])

    def score_partial_token(self, partial_token):
        """``unk_score_offset`` (times alpha, as pyctcdecode) when no vocabulary word
        starts with ``partial_token``, else 0."""
        if not partial_token:
            return 0.0
        at = bisect.bisect_left(self._words, partial_token)
        known = at < len(self._words) and self._words[at].startswith(partial_token)
        return 0.0 if known else self.alpha * self.unk_score_offset

    def _word_log_prob(self, state, word):
        token_id = self.model.token_id(word)
        if token_id is None or word in ("<EOS>", "<UNK>"):
            unk = self.model.token_id("<UNK>")
            return float(state.log_probs[unk]) + self.model.oov_log_share(word) + self.model.oov_penalty
        return float(state.log_probs[token_id])

    def score(self, prev_state, word, is_last_word=False):
        """``(alpha · ln P(word | state) + beta [+ alpha · ln P(<EOS>)], next state)``."""
        log_prob = self._word_log_prob(prev_state, word)
        token_id = self.model.token_id(word)
        if token_id is None or word in ("<EOS>", "<UNK>"):
            token_id = self.model.token_id("<UNK>")
        logp, state = self.model.step(prev_state.state, [token_id])
        next_state = RnnlmState(state, logp[0])
        if is_last_word:
            log_prob += float(next_state.log_probs[self._eos])
        return self.alpha * log_prob + self.beta, next_state

    def save_to_dir(self, filepath):
        """Writes where the model is (pyctcdecode saves the LM beside the decoder)."""
        import json

        os.makedirs(filepath, exist_ok=True)
        with open(os.path.join(filepath, "rnnlm.json"), "w") as f:
            json.dump({"path": os.path.abspath(self.model.path), "device": self.model.device,
                       "oov": self.model.oov, "alpha": self.alpha, "beta": self.beta,
                       "unk_score_offset": self.unk_score_offset}, f)

    @staticmethod
    def load_from_dir(filepath, unigram_encoding=None):
        import json

        import rnnlm

        with open(os.path.join(filepath, "rnnlm.json")) as f:
            saved = json.load(f)
        model = rnnlm.Model(saved["path"], device=saved["device"], oov=saved["oov"])
        return PyctcdecodeLM(model, saved["alpha"], saved["beta"], saved["unk_score_offset"])
