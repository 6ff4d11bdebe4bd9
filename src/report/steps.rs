//! `sample --steps`: sampling shown step by step, as one HTML page.
//!
//! For each sample and each step: the most likely next tokens with the probabilities
//! the draw used, the token drawn, and the share `<UNK>` had. The sampler never emits
//! `<UNK>`: its probability is set to zero and the rest renormalized, which is the
//! same distribution as drawing again whenever `<UNK>` comes up, so the page gives
//! each step's `<UNK>` share as the chance that such a redraw was needed.

use super::write_page;
use crate::model::RnnLm;
use crate::sample::{sample_watched, Sample, Sampler, Step};
use crate::vocab::{Tokenizer, Vocab, UNK_ID};
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use tch::{Device, Kind};

/// What the page shows of a sampling run.
pub struct StepsOptions<'a> {
    /// The HTML file.
    pub path: &'a Path,
    /// The model's directory, for the page's header.
    pub model_name: &'a str,
    /// Next tokens shown per step.
    pub top_k: usize,
    /// The seed of the draws, for the page's header.
    pub seed: u64,
}

#[derive(Serialize)]
struct StepView {
    /// The token drawn.
    drawn: String,
    /// Its probability in the distribution drawn from (`<UNK>` removed).
    drawn_p: f64,
    /// The most likely tokens and their probabilities in that distribution.
    top: Vec<(String, f64)>,
    /// `<UNK>`'s probability before it was removed: the chance of a redraw.
    unk_p: f64,
}

#[derive(Serialize)]
struct SampleView {
    text: String,
    log_prob: f64,
    truncated: bool,
    /// The prefix's tokens, not drawn.
    prefix: Vec<String>,
    steps: Vec<StepView>,
}

#[derive(Serialize)]
struct Page<'a> {
    model: &'a str,
    seed: u64,
    top_k: usize,
    reading_order_reversed: bool,
    samples: Vec<SampleView>,
}

/// Samples as [`crate::sample::sample`] does (the same draws for the same sampler) and
/// writes the page; returns the samples.
#[allow(clippy::too_many_arguments)]
pub fn sample_with_steps(
    model: &RnnLm,
    vocab: &Vocab,
    tokenizer: &Tokenizer,
    prefix: &[i64],
    count: usize,
    max_len: usize,
    sampler: &mut Sampler,
    options: &StepsOptions,
) -> Result<Vec<Sample>> {
    let mut steps: Vec<Vec<StepView>> = (0..count).map(|_| Vec::new()).collect();
    let top_k = options.top_k.min(vocab.len());
    let samples = sample_watched(model, prefix, count, max_len, sampler, &mut |step: Step| {
        let log_probs = model.log_probs(step.hidden).to_kind(Kind::Double);
        let probs = log_probs.exp().to_device(Device::Cpu);
        let unk = Vec::<f64>::try_from(probs.select(1, UNK_ID))?;
        // The distribution drawn from: <UNK> zeroed, the rest renormalized.
        let kept = probs.index_fill(1, &tch::Tensor::from_slice(&[UNK_ID]), 0.0);
        let kept = &kept / kept.sum_dim_intlist(1, true, Kind::Double);
        let (top_p, top_id) = kept.topk(top_k as i64, 1, true, true);
        for (i, views) in steps.iter_mut().enumerate() {
            if !step.running[i] {
                continue;
            }
            let row = i as i64;
            let ids = Vec::<i64>::try_from(top_id.get(row))?;
            let ps = Vec::<f64>::try_from(top_p.get(row))?;
            let drawn = step.drawn[i];
            views.push(StepView {
                drawn: vocab.token(drawn).to_string(),
                drawn_p: significant(kept.get(row).double_value(&[drawn])),
                top: ids
                    .iter()
                    .zip(&ps)
                    .map(|(&id, &p)| (vocab.token(id).to_string(), significant(p)))
                    .collect(),
                unk_p: significant(unk[i]),
            });
        }
        Ok(())
    })?;
    let prefix_tokens: Vec<String> = prefix
        .iter()
        .map(|&id| vocab.token(id).to_string())
        .collect();
    let page = Page {
        model: options.model_name,
        seed: options.seed,
        top_k,
        reading_order_reversed: tokenizer.reverse,
        samples: samples
            .iter()
            .zip(steps)
            .map(|(s, steps)| SampleView {
                text: s.render(vocab, tokenizer, false),
                log_prob: s.log_prob,
                truncated: s.truncated,
                prefix: prefix_tokens.clone(),
                steps,
            })
            .collect(),
    };
    let title = format!("rnnlm samples, step by step: {}", options.model_name);
    write_page(options.path, &title, &page, include_str!("steps.js"))?;
    Ok(samples)
}

/// A probability to 4 significant digits: enough to read, and small to write.
fn significant(p: f64) -> f64 {
    format!("{p:.3e}").parse().unwrap_or(p)
}
