//! Sentence probabilities by the chain rule.
//!
//! log P(`y<1>…y<T>`) = Σ_t log P(`y<t>` | `y<1>…y<t-1>`), natural log, where `y<T>` is the
//! `<EOS>` that ends every sentence and the model starts from `a<0>` = 0 and `x<1>` = 0.
//! Sentences are scored in batches of similar length; each one's score is independent
//! of its batch because the model is causal, the padding is never read, and no batch
//! is run with fewer than [`crate::rows::MIN_ROWS`] rows.

use crate::data::{length_batches, Corpus, SentenceBatch};
use crate::model::RnnLm;
use crate::oov::OovScorer;
use anyhow::Result;
use rand_chacha::ChaCha12Rng;
use serde::Serialize;

/// Sentences per forward pass when scoring.
pub const SCORE_BATCH: usize = 64;

/// The chain rule: a sentence's log-probability (nats) is the sum of its tokens'
/// conditional log-probabilities, `<EOS>` included.
pub fn sentence_log_prob(token_log_probs: &[f32]) -> f64 {
    token_log_probs.iter().map(|&lp| lp as f64).sum()
}

/// log P(`y<t>` | `y<1>…y<t-1>`) for every token of every sentence, in input order.
///
/// Runs under `no_grad` with dropout off, `batch_size` sentences per forward pass.
pub fn token_log_probs(
    model: &RnnLm,
    sentences: &[Vec<i64>],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let _guard = tch::no_grad_guard();
    let lengths: Vec<usize> = sentences.iter().map(Vec::len).collect();
    let mut result = vec![Vec::new(); sentences.len()];
    for batch_rows in length_batches(&lengths, batch_size, None::<&mut ChaCha12Rng>) {
        // A short batch runs with its first sentence repeated after the real ones, whose
        // results come first and alone are read (see `crate::rows`).
        let rows: Vec<&[i64]> = crate::rows::padded(&batch_rows)
            .iter()
            .map(|&i| sentences[i].as_slice())
            .collect();
        let batch = SentenceBatch::new(&rows, model.device());
        let (hidden, _) = model.forward(&batch.inputs, &model.zero_state(batch.size()), false);
        let hidden = batch.gather(&hidden);
        let block = model.output_rows_per_call();
        let blocks: Vec<tch::Tensor> = hidden
            .split(block, 0)
            .iter()
            .zip(batch.targets.split(block, 0))
            .map(|(hidden, targets)| model.target_log_probs(hidden, &targets))
            .collect();
        let flat = tch::Tensor::cat(&blocks, 0).to_device(tch::Device::Cpu);
        let flat = Vec::<f32>::try_from(flat)?;
        let mut offset = 0;
        for (&row, &len) in batch_rows.iter().zip(&batch.lengths) {
            result[row] = flat[offset..offset + len].to_vec();
            offset += len;
        }
    }
    Ok(result)
}

/// Perplexity and friends of a corpus, as `rnnlm eval` prints them.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Evaluation {
    /// Tokens scored, `<EOS>` included.
    pub tokens: usize,
    /// Tokens that were `<UNK>` (scored as `<UNK>`).
    pub oov_count: usize,
    /// Sentences scored.
    pub sentences: usize,
    /// Mean negative log-probability per token, natural log.
    pub nats_per_token: f64,
    /// The same in bits.
    pub bits_per_token: f64,
    /// exp(nats per token).
    pub perplexity: f64,
}

/// `N sentences, T tokens (<EOS> included), U <UNK>` and, on a second line, the
/// perplexity, nats and bits per token: what `rnnlm eval` prints.
impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{} sentences, {} tokens (<EOS> included), {} <UNK>\nperplexity {:.2} | {:.4} nats/token | {:.4} bits/token",
            self.sentences,
            self.tokens,
            self.oov_count,
            self.perplexity,
            self.nats_per_token,
            self.bits_per_token
        )
    }
}

impl Evaluation {
    /// Summarizes a total log-probability over `tokens` tokens.
    pub fn from_total(log_prob: f64, tokens: usize, oov_count: usize, sentences: usize) -> Self {
        let nats = -log_prob / tokens.max(1) as f64;
        Evaluation {
            tokens,
            oov_count,
            sentences,
            nats_per_token: nats,
            bits_per_token: nats / std::f64::consts::LN_2,
            perplexity: nats.exp(),
        }
    }
}

/// Scores every sentence of a corpus on its own from zero state, out-of-vocabulary
/// tokens as `oov` says. A corpus with no sentences is an error: its perplexity would
/// come out as 1, the best possible.
pub fn evaluate(
    model: &RnnLm,
    corpus: &Corpus,
    batch_size: usize,
    oov: &OovScorer,
) -> Result<Evaluation> {
    if corpus.sentences.is_empty() {
        anyhow::bail!("no sentences to evaluate");
    }
    let model_total: f64 = token_log_probs(model, &corpus.sentences, batch_size)?
        .iter()
        .map(|lps| sentence_log_prob(lps))
        .sum();
    // The share of an unknown token does not depend on its history, so the
    // open-vocabulary total is the closed one plus every unknown token's share.
    let oov_total: f64 = corpus
        .oov_tokens
        .iter()
        .map(|(token, &n)| n as f64 * oov.adjustment(token))
        .sum();
    let total = model_total + oov_total;
    Ok(Evaluation::from_total(
        total,
        corpus.tokens(),
        corpus.oov_count,
        corpus.sentences.len(),
    ))
}
