"""An rnnlm model as an ESPnet LM scorer (``espnet.nets.scorer_interface.BatchScorerInterface``).

    from rnnlm.espnet import EspnetScorer
    scorers["lm"] = EspnetScorer(rnnlm.Model("models/asr"), token_list)

ESPnet's beam search calls ``batch_score(ys, states, xs)`` with each hypothesis' token
ids so far (``<sos/eos>`` first) and wants the log-probabilities of every entry of its
token list next. The model's vocabulary is mapped onto that list by the token's text:
ESPnet's ``<sos/eos>`` is the model's ``<EOS>``, its ``<unk>`` the model's ``<UNK>``, a
token the model does not know gets the ``<UNK>`` log-probability plus its share of the
class (the model's ``oov`` policy), and ``<blank>`` gets ``LOG_ZERO``. The class follows
the interface's signatures without importing ESPnet; it can be registered as a
``BatchScorerInterface`` with ``BatchScorerInterface.register(EspnetScorer)``.
"""

import torch

# What ESPnet's CTC code uses for log 0: finite, so that a zero weight gives 0, not NaN.
LOG_ZERO = -1e10


class EspnetScorer:
    """ESPnet's ``BatchScorerInterface`` over an :class:`rnnlm.Model` (forward steps).

    A hypothesis' state is ``None`` before its first step, then an :class:`rnnlm.State`
    of batch 1.
    """

    def __init__(self, model, token_list, sos_eos="<sos/eos>", unk="<unk>", blank="<blank>"):
        if model.reverse:
            raise ValueError("EspnetScorer needs a forward model: beam search runs left to right")
        self.model = model
        self.token_list = list(token_list)
        eos, unk_id = model.token_id("<EOS>"), model.token_id("<UNK>")
        index, offset = [], []
        for token in self.token_list:
            if token == sos_eos:
                index.append(eos), offset.append(0.0)
            elif token == blank:
                index.append(unk_id), offset.append(LOG_ZERO)
            elif token == unk:
                index.append(unk_id), offset.append(0.0)
            elif token in model and token not in ("<EOS>", "<UNK>"):
                index.append(model.token_id(token)), offset.append(0.0)
            else:
                index.append(unk_id), offset.append(model.oov_log_share(token) + model.oov_penalty)
        # ESPnet id -> model id for the inputs; model log-probs -> ESPnet's list for the outputs.
        self._index = torch.tensor(index, dtype=torch.long)
        self._offset = torch.tensor(offset, dtype=torch.float32)

    # ScorerInterface
    def init_state(self, x):
        return None

    def select_state(self, state, i, new_id=None):
        return state

    def score(self, y, state, x):
        scores, states = self.batch_score(y.unsqueeze(0), [state], None)
        return scores[0], states[0]

    def final_score(self, state):
        # <sos/eos> is scored as a token of the list, as ESPnet's own LMs do.
        return 0.0

    # BatchScorerInterface
    def batch_init_state(self, x):
        return None

    def batch_score(self, ys, states, xs):
        """``ys``: ``[n_batch, ylen]`` token ids (``<sos/eos>`` first); ``states``: one per
        hypothesis. Returns ``([n_batch, len(token_list)]`` log-probs, new states)."""
        n = ys.shape[0]
        if states is None:
            states = [None] * n
        started = [s is not None for s in states]
        parts = [s if s is not None else self.model.initial_state(1) for s in states]
        batch = parts[0].concat(parts) if n > 1 else parts[0]
        last = ys[:, -1].tolist()
        inputs = [int(self._index[t]) if began else None for t, began in zip(last, started)]
        logp, next_state = self.model.step(batch, inputs)
        scores = logp[:, self._index] + self._offset
        return scores.to(ys.device), [next_state.select([i]) for i in range(n)]
