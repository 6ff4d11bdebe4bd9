"""rnnlm's recurrent language models in process, with kenlm's conventions.

    import rnnlm
    lm = rnnlm.Model("models/word")
    lm.score("The apple and pear salad .")          # ln P(sentence), <EOS> included
    lm.score("The apple and pear salad .", base=10) # log10, as kenlm.Model.score

Scores are natural log unless ``base=10``. There is no ``<s>``: every sentence starts
from the zero state (``a<0> = 0``, ``x<1> = 0``), which is what kenlm's ``bos=True``
means, so ``bos=False`` is refused. Calls that run the network release the GIL; one
model runs one call at a time, and the libtorch threads are torch's own
(``torch.set_num_threads``).
"""

import math
import os

# The torch whose libtorch the extension is linked against. It must be imported
# before the extension: glibc then reuses the interpreter's libtorch for the
# extension's dependencies instead of loading a second copy, and two copies in one
# process crash (pytorch/pytorch#96797).
TORCH_VERSION = "2.11.0"


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"rnnlm needs torch=={TORCH_VERSION} (the libtorch it is built against), and "
            f"`import torch` failed: {e}; install it with `pip install torch=={TORCH_VERSION}` "
            "or use the project's .venv (make setup)"
        ) from e
    found = str(getattr(torch, "__version__", "unknown")).split("+")[0]
    if found != TORCH_VERSION:
        raise ImportError(
            f"rnnlm is built against torch {TORCH_VERSION}, but this interpreter has torch "
            f"{getattr(torch, '__version__', 'unknown')}; install torch=={TORCH_VERSION} "
            "(pip install torch==" + TORCH_VERSION + "), or rebuild rnnlm against this torch "
            "with `make python` after changing TORCH_VERSION in the Makefile"
        )
    return torch


torch = _import_torch()

from . import _rnnlm  # noqa: E402  (after torch, on purpose)

__all__ = ["Model", "State", "Rescored", "cached_model", "TORCH_VERSION"]


def _log_scale(base):
    """The factor from nats to `base`."""
    if base is None or base == "e" or base == math.e:
        return 1.0
    if base == 10 or base == "10":
        return 1.0 / math.log(10.0)
    raise ValueError(f"base must be math.e (the default) or 10, not {base!r}")


def _ids(token_ids):
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    return [None if t is None else int(t) for t in token_ids]


class State:
    """The recurrent state of a batch of sequences, for :meth:`Model.step`."""

    __slots__ = ("_state",)

    def __init__(self, state):
        self._state = state

    @property
    def batch(self):
        """Sequences in the batch."""
        return self._state.batch

    def select(self, indices):
        """The rows ``indices`` (repeats allowed), as beam search keeps and copies them."""
        return State(self._state.select(_ids(indices)))

    @staticmethod
    def concat(states):
        """The rows of several states, one after another."""
        return State(_rnnlm.State.concat([s._state for s in states]))

    def __repr__(self):
        return f"rnnlm.State(batch={self.batch})"


class Rescored:
    """One utterance's hypotheses scored and ranked as ``rnnlm score`` does.

    ``logprob``, ``backward_logprob`` (``None`` without a backward model),
    ``lm_logprob`` (the interpolated LM score) and ``score`` per hypothesis, natural
    log; ``rank`` per hypothesis (1 = best, ties to the earlier one); ``best`` the
    index of the chosen one.
    """

    __slots__ = ("logprob", "backward_logprob", "lm_logprob", "score", "rank", "best")

    def __init__(self, logprob, backward_logprob, lm_logprob, score, rank, best):
        self.logprob, self.backward_logprob = logprob, backward_logprob
        self.lm_logprob, self.score, self.rank, self.best = lm_logprob, score, rank, best

    def __repr__(self):
        return f"rnnlm.Rescored(best={self.best}, score={self.score})"


class Model:
    """A trained model directory (``rnnlm train``'s output), loaded for scoring.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``. ``oov``: how a word
    outside the vocabulary is scored, ``"divide"`` (its share of the ``<UNK>`` class,
    as ``rnnlm score``) or ``"unk"`` (the class itself); ``oov_penalty`` is added per
    such word. ``backward``: a model trained with ``--reverse``, combined by
    :meth:`rescore` and :meth:`rescore_file` as ``rnnlm score --backward-model`` does.
    Raises ``OSError`` naming the file when the directory cannot be loaded.
    """

    def __init__(self, path, device="cpu", oov="divide", oov_penalty=0.0, backward=None,
                 batch_size=64):
        self.path = os.fspath(path)
        self.backward_path = None if backward is None else os.fspath(backward)
        self.device, self.oov, self.oov_penalty = device, oov, float(oov_penalty)
        self.batch_size = int(batch_size)
        self._model = _rnnlm.Model(self.path, device, oov, self.oov_penalty,
                                   self.backward_path, self.batch_size)

    # Dask and Ray ship the path and settings, never the weights.
    def __reduce__(self):
        return (Model, (self.path, self.device, self.oov, self.oov_penalty, self.backward_path,
                        self.batch_size))

    def __repr__(self):
        backward = f", backward={self.backward_path!r}" if self.backward_path else ""
        return f"rnnlm.Model({self.path!r}, device={self.device!r}, oov={self.oov!r}{backward})"

    def __contains__(self, word):
        return self._model.contains(word)

    @property
    def level(self):
        """``"word"`` or ``"char"``."""
        return self._model.level

    @property
    def vocab_size(self):
        """Tokens in the vocabulary, ``<EOS>`` and ``<UNK>`` included."""
        return self._model.vocab_size

    @property
    def reverse(self):
        """Whether this model reads sentences right to left (trained with ``--reverse``)."""
        return self._model.reverse

    def token_id(self, token):
        """The index of ``token`` (``None`` outside the vocabulary)."""
        return self._model.token_id(token)

    def token(self, token_id):
        """The token of index ``token_id``."""
        return self._model.token(int(token_id))

    def tokenize(self, sentence):
        """``sentence`` as the model's own tokenizer splits it (its text form)."""
        return self._model.tokenize(sentence)

    @staticmethod
    def _check_bos(bos):
        if not bos:
            raise ValueError("bos=False: rnnlm models always start a sentence from the zero "
                             "state; there is no context to continue from")

    def score(self, sentence, bos=True, eos=True, base=None):
        """log P(sentence), ``<EOS>`` included unless ``eos=False``; natural log unless
        ``base=10``."""
        self._check_bos(bos)
        if eos:
            return self._model.log_probs([sentence])[0] * _log_scale(base)
        return sum(lp for _, lp, _ in self.full_scores(sentence, eos=False, base=base))

    def full_scores(self, sentence, bos=True, eos=True, base=None):
        """``[(token, logprob, is_oov), ...]``, one per token in the order the model
        reads them, ``<EOS>`` last (left out with ``eos=False``); they sum to
        :meth:`score`. An out-of-vocabulary token's logprob follows the ``oov`` policy."""
        self._check_bos(bos)
        scale = _log_scale(base)
        scored = self._model.token_scores(sentence)
        if not eos:
            scored = scored[:-1]
        return [(token, lp * scale, share is not None) for token, lp, share in scored]

    def perplexity(self, sentence):
        """exp(−ln P(sentence) / tokens), ``<EOS>`` counted, as kenlm counts ``</s>``."""
        scored = self._model.token_scores(sentence)
        return math.exp(-sum(lp for _, lp, _ in scored) / len(scored))

    def score_batch(self, sentences, base=None, model="forward"):
        """Each sentence's log-probability, as :meth:`score`; ``model="backward"`` for
        the backward model's. The GIL is released; Ctrl-C raises ``KeyboardInterrupt``
        between chunks of 512 sentences."""
        if isinstance(sentences, str):
            raise TypeError("score_batch takes a list of sentences, not one string")
        scale = _log_scale(base)
        return [lp * scale for lp in self._model.log_probs(list(sentences), model)]

    def evaluate(self, path_or_lines, oov="unk", oov_penalty=0.0):
        """``rnnlm eval --json`` of a text file (a path) or of an iterable of lines: a dict
        with ``tokens``, ``oov_count``, ``sentences``, ``nats_per_token``,
        ``bits_per_token`` and ``perplexity``. ``oov="unk"`` by default, as ``rnnlm eval``."""
        import json

        if isinstance(path_or_lines, (str, bytes, os.PathLike)):
            text = self._model.evaluate(path=os.fspath(path_or_lines), oov=oov,
                                        oov_penalty=oov_penalty)
        else:
            text = self._model.evaluate(lines=list(path_or_lines), oov=oov, oov_penalty=oov_penalty)
        return json.loads(text)

    def rescore(self, hypotheses, am=None, ngram=None, lm_weight=1.0, length_penalty=0.0,
                ngram_weight=0.0, backward_weight=0.0, ngram_base=10):
        """One utterance's N-best hypotheses combined and ranked as ``rnnlm score``:

            lm    = (1 − b − n)·forward + b·backward + n·ngram
            score = am + lm_weight·lm + length_penalty·words

        ``am`` in natural log, ``ngram`` in ``ngram_base`` (10 by default, as ARPA tools
        print). Returns a :class:`Rescored`."""
        result = self._model.rescore(
            list(hypotheses), None if am is None else [float(a) for a in am],
            None if ngram is None else [float(n) for n in ngram], str(ngram_base),
            float(lm_weight), float(length_penalty), float(ngram_weight), float(backward_weight))
        return Rescored(*result)

    def rescore_file(self, input, output, am_column=None, ngram_column=None,
                     text_column="sentence", group_column=None, ngram_base=10, format="csv",
                     columns=None, lm_weight=1.0, length_penalty=0.0, ngram_weight=0.0,
                     backward_weight=0.0, per_token=None, skip_bad=False, digits=4, prefix_sharing=True):
        """``rnnlm score`` on a file, in process: the same output byte for byte. ``columns``
        names the columns of a CSV without a header row (``--no-header --columns``).
        Returns a dict of counts; the output appears whole or not at all."""
        rows, bad_rows, tokens, oov_count, log_prob = self._model.rescore_file(
            os.fspath(input), os.fspath(output), format, text_column, group_column, am_column,
            ngram_column, str(ngram_base), None if columns is None else list(columns),
            float(lm_weight), float(length_penalty), float(ngram_weight), float(backward_weight),
            None if per_token is None else os.fspath(per_token), bool(skip_bad), int(digits),
            bool(prefix_sharing))
        return {"rows": rows, "bad_rows": bad_rows, "tokens": tokens, "oov_count": oov_count,
                "logprob": log_prob}

    def initial_state(self, batch=1):
        """``a<0> = 0`` for ``batch`` sequences."""
        return State(self._model.initial_state(int(batch)))

    def step(self, state, token_ids):
        """One step of the forward model for a batch: ``token_ids`` are each row's previous
        token (``None`` at a sentence's first step, for the zero vector ``x<1>``).
        Returns ``(logp, state)``: ``logp`` is a ``[batch, vocab]`` float32 CPU tensor of
        ln P(next token), ``state`` the state after reading ``token_ids``."""
        data, next_state = self._model.step(state._state, _ids(token_ids))
        logp = torch.frombuffer(data, dtype=torch.float32).view(state.batch, self.vocab_size)
        return logp, State(next_state)

    def oov_log_share(self, token):
        """ln P(token | ``<UNK>``) under the ``oov`` policy (0 for ``"unk"``)."""
        return self._model.oov_log_share(token)


_CACHE = {}
_CACHE_LOCK = __import__("threading").Lock()


def cached_model(path, **settings):
    """One :class:`Model` per path and settings per process: what a Dask or Ray worker
    calls in each task, so that the model is loaded once per worker, not per task."""
    key = (os.path.abspath(os.fspath(path)), tuple(sorted(settings.items())))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = _CACHE[key] = Model(path, **settings)
        return model
