//! Drawing new sequences from a trained model.
//!
//! Start from `a<0>` = 0 and `x<1>` = 0 (or run the model over a prefix first); at each
//! step draw the next token from the model's distribution (a class-based output layer
//! draws a class, then a word), feed it back in as the next input, stop at `<EOS>` or
//! after `max_len` tokens. `<UNK>` is never emitted: its probability is set to zero and
//! the rest renormalized, which is the same distribution as redrawing until the draw is
//! not `<UNK>`.

pub use crate::categorical::Sampler;
use crate::model::{RnnLm, State, ZERO_INPUT};
use crate::vocab::{Tokenizer, Vocab, EOS_ID};
use anyhow::Result;
use tch::{Device, Kind, Tensor};

/// One drawn sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The prefix tokens, then the drawn ones; `<EOS>` not included.
    pub tokens: Vec<i64>,
    /// log P of the prefix and the drawn tokens, `<EOS>` included when it was drawn
    /// (natural log, under the model's full distribution, as `score` computes it).
    pub log_prob: f64,
    /// Stopped by `max_len` rather than by `<EOS>`.
    pub truncated: bool,
}

impl Sample {
    /// The sample as text, in reading order (a backward model draws from the
    /// sentence's end): detokenized, or with `tokens` its tokens separated by spaces.
    pub fn render(&self, vocab: &Vocab, tokenizer: &Tokenizer, tokens: bool) -> String {
        let words: Vec<String> = self
            .tokens
            .iter()
            .map(|&id| vocab.token(id).to_string())
            .collect();
        if tokens {
            tokenizer.reading_order(&words).join(" ")
        } else {
            tokenizer.detokenize(&words)
        }
    }
}

/// Draws `count` sequences in one batch under `no_grad`: each continues `prefix`
/// (token indices, no `<EOS>`) by at most `max_len` tokens.
pub fn sample(
    model: &RnnLm,
    prefix: &[i64],
    count: usize,
    max_len: usize,
    sampler: &mut Sampler,
) -> Result<Vec<Sample>> {
    sample_watched(model, prefix, count, max_len, sampler, &mut |_| Ok(()))
}

/// One drawing step, as [`sample_watched`] shows it to its watcher.
pub struct Step<'a> {
    /// The top layer's `a<t>` of every sequence, `[count, hidden]`: the model's next-token
    /// distribution is `model.log_probs(hidden)`.
    pub hidden: &'a Tensor,
    /// The token drawn for each sequence.
    pub drawn: &'a [i64],
    /// Whether each sequence was still running (had not drawn `<EOS>` before).
    pub running: &'a [bool],
}

/// `count` copies of `prefix` run from the zero state: the state after it, its last
/// token as the next input ([`ZERO_INPUT`] for no prefix), and its log-probability.
fn read_prefix(model: &RnnLm, prefix: &[i64], count: i64) -> (State, Tensor, Tensor) {
    let device = model.device();
    let mut state = model.zero_state(count);
    let mut input = Tensor::full([count], ZERO_INPUT, (Kind::Int64, device));
    let mut log_prob = Tensor::zeros([count], (Kind::Double, device));
    for &token in prefix {
        let (hidden, next) = model.forward_step(&input, &state);
        state = next;
        input = Tensor::full([count], token, (Kind::Int64, device));
        log_prob += model
            .target_log_probs(&hidden, &input)
            .to_kind(Kind::Double);
    }
    (state, input, log_prob)
}

/// [`sample`], calling `watch` after each step's draw; the draws are the same as
/// [`sample`]'s with the same sampler, whatever the watcher computes (it cannot
/// reach the sampler).
pub fn sample_watched(
    model: &RnnLm,
    prefix: &[i64],
    count: usize,
    max_len: usize,
    sampler: &mut Sampler,
    watch: &mut dyn FnMut(Step) -> Result<()>,
) -> Result<Vec<Sample>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let _guard = tch::no_grad_guard();
    let n = count as i64;
    let (mut state, mut input, mut log_prob) = read_prefix(model, prefix, n);
    let mut samples: Vec<Sample> = (0..count)
        .map(|_| Sample {
            tokens: prefix.to_vec(),
            log_prob: 0.0,
            truncated: true,
        })
        .collect();
    let mut running = Tensor::ones([n], (Kind::Bool, model.device()));
    for _ in 0..max_len {
        let (hidden, next) = model.forward_step(&input, &state);
        state = next;
        let (drawn, drawn_log_prob) = model.draw(&hidden, sampler);
        log_prob += drawn_log_prob.to_kind(Kind::Double) * running.to_kind(Kind::Double);
        let drawn_cpu = Vec::<i64>::try_from(drawn.to_device(Device::Cpu))?;
        let running_cpu = Vec::<bool>::try_from(running.to_device(Device::Cpu))?;
        watch(Step {
            hidden: &hidden,
            drawn: &drawn_cpu,
            running: &running_cpu,
        })?;
        for ((sample, &token), &live) in samples.iter_mut().zip(&drawn_cpu).zip(&running_cpu) {
            if !live {
                continue;
            }
            if token == EOS_ID {
                sample.truncated = false;
            } else {
                sample.tokens.push(token);
            }
        }
        running = running.logical_and(&drawn.ne(EOS_ID));
        if !running_cpu
            .iter()
            .zip(&drawn_cpu)
            .any(|(&live, &t)| live && t != EOS_ID)
        {
            break;
        }
        input = drawn;
    }
    let log_prob = Vec::<f64>::try_from(log_prob.to_device(Device::Cpu))?;
    for (sample, lp) in samples.iter_mut().zip(log_prob) {
        sample.log_prob = lp;
    }
    Ok(samples)
}
