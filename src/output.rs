//! The output layer: hidden state `a<t>` → log `ŷ<t>` over the vocabulary.
//!
//! Training, scoring and sampling reach it only through [`SoftmaxOutput::log_probs`]
//! (the whole distribution) and [`SoftmaxOutput::target_log_probs`] (the log-probability
//! of given targets), so a factored or class-based softmax can take its place without
//! touching them.

use tch::{nn, Tensor};

/// A full softmax: one linear map to the vocabulary, then log-softmax.
#[derive(Debug)]
pub struct SoftmaxOutput {
    /// `[vocab, hidden]`; the embedding matrix itself when weights are tied.
    weight: Tensor,
    /// `[vocab]`.
    bias: Tensor,
}

impl SoftmaxOutput {
    /// Creates `weight` (unless `tied` gives it) and `bias` under `vs`.
    pub fn new(vs: &nn::Path, hidden: i64, vocab: i64, tied: Option<Tensor>) -> Self {
        let weight = tied.unwrap_or_else(|| {
            vs.var(
                "weight",
                &[vocab, hidden],
                nn::Init::Uniform { lo: -0.1, up: 0.1 },
            )
        });
        let bias = vs.var("bias", &[vocab], nn::Init::Const(0.0));
        SoftmaxOutput { weight, bias }
    }

    /// Log-probabilities over the vocabulary: `[..., hidden]` → `[..., vocab]`.
    pub fn log_probs(&self, hidden: &Tensor) -> Tensor {
        hidden
            .linear(&self.weight, Some(&self.bias))
            .log_softmax(-1, None)
    }

    /// Log-probability of each target: hidden `[n, hidden]`, targets `[n]` → `[n]`.
    pub fn target_log_probs(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        self.log_probs(hidden)
            .gather(-1, &targets.unsqueeze(-1), false)
            .squeeze_dim(-1)
    }
}
