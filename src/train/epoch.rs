//! One pass over the training data: batches, steps, the learning-rate schedule and
//! the random streams of each epoch.

use super::{LrSchedule, TrainConfig};
use crate::data::{length_batches, Corpus, SentenceBatch, TokenStream};
use crate::model::RnnLm;
use crate::optim::Optimizer;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::io::IsTerminal;
use std::time::Instant;
use tch::Tensor;

/// Seeds libtorch's generator (dropout) and returns the shuffling generator for
/// epoch `epoch` (0-based) of a run seeded with `seed`. Each epoch's streams depend
/// only on the two, so a run resumed after epoch k draws what an uncut run draws.
pub(super) fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    let mixed = splitmix64(seed ^ splitmix64(epoch as u64 + 1));
    tch::manual_seed((mixed >> 1) as i64);
    StdRng::seed_from_u64(splitmix64(mixed))
}

/// SplitMix64's finalizer: nearby inputs give unrelated outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The learning rate at a point of the run.
pub(super) struct Schedule<'a> {
    pub(super) config: &'a TrainConfig,
    /// Epochs completed before the current one.
    pub(super) epoch: usize,
    pub(super) start: Instant,
    /// When this run must stop, in seconds since `start`.
    pub(super) deadline: Option<f64>,
}

impl Schedule<'_> {
    /// The rate for the next step, `done` being the share of the current epoch done;
    /// `None` when the schedule leaves the rate alone.
    pub(super) fn rate(&self, done: f64) -> Option<f64> {
        let c = self.config;
        if c.lr_schedule != LrSchedule::Linear {
            return None;
        }
        let by_epochs = (self.epoch as f64 + done) / c.epochs.max(1) as f64;
        let by_time = self
            .deadline
            .map_or(0.0, |d| self.start.elapsed().as_secs_f64() / d.max(1e-9));
        Some(c.lr * (1.0 - by_epochs.max(by_time)).max(0.0))
    }
}

/// What one pass over the training data did.
pub(super) struct EpochStats {
    pub(super) loss_sum: f64,
    pub(super) tokens: usize,
    pub(super) seconds: f64,
    /// Share of the epoch's batches done: below 1 when the time limit cut it short.
    pub(super) fraction: f64,
}

/// A batch whose loss is not finite, or beyond any model's (100 nats per token).
#[derive(Debug)]
pub(super) struct Diverged {
    pub(super) per_token: f64,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "training diverged (loss {:.3e} nats/token)",
            self.per_token
        )
    }
}

impl std::error::Error for Diverged {}

/// One pass over the training data, stopping early at the schedule's deadline.
pub(super) fn run_epoch(
    model: &RnnLm,
    optimizer: &mut Optimizer,
    corpus: &Corpus,
    rng: &mut StdRng,
    schedule: &Schedule,
) -> Result<EpochStats> {
    let config = schedule.config;
    let epoch_start = Instant::now();
    let progress = progress_bar(corpus.tokens() as u64);
    let mut stats = EpochStats {
        loss_sum: 0.0,
        tokens: 0,
        seconds: 0.0,
        fraction: 1.0,
    };
    let mut step =
        |loss_sum: Tensor, tokens: usize, stats: &mut EpochStats, lr: Option<f64>| -> Result<()> {
            if let Some(lr) = lr {
                optimizer.set_lr(lr);
            }
            let loss = f64::try_from(&loss_sum)?;
            let per_token = loss / tokens as f64;
            // Before the step, so that a non-finite loss never reaches the weights or
            // Adam's moments.
            if !per_token.is_finite() || per_token > 100.0 {
                return Err(Diverged { per_token }.into());
            }
            optimizer.step(&(&loss_sum / tokens as f64), config.clip)?;
            stats.loss_sum += loss;
            stats.tokens += tokens;
            progress.inc(tokens as u64);
            progress.set_message(format!("{:.3}", stats.loss_sum / stats.tokens as f64));
            Ok(())
        };
    let past_deadline = || {
        schedule
            .deadline
            .is_some_and(|d| schedule.start.elapsed().as_secs_f64() >= d)
    };

    if config.stream {
        let stream = TokenStream::new(corpus, config.batch_size, model.device())
            .with_context(|| config.data.join("train.txt").display().to_string())?;
        let chunks: Vec<(Tensor, Tensor)> = stream.chunks(config.bptt).collect();
        let mut state = model.zero_state(config.batch_size as i64);
        for (i, (inputs, targets)) in chunks.iter().enumerate() {
            if past_deadline() {
                stats.fraction = i as f64 / chunks.len() as f64;
                break;
            }
            let lr = schedule.rate(i as f64 / chunks.len() as f64);
            let (hidden, next) = model.forward(inputs, &state.detach(), true);
            state = next;
            let width = hidden.size()[2];
            let log_probs =
                model.target_log_probs(&hidden.reshape([-1, width]), &targets.reshape([-1]));
            step(-log_probs.sum(None), targets.numel(), &mut stats, lr)?;
        }
    } else {
        let lengths: Vec<usize> = corpus.sentences.iter().map(Vec::len).collect();
        let batches = length_batches(&lengths, config.batch_size, Some(rng));
        for (i, rows) in batches.iter().enumerate() {
            if past_deadline() {
                stats.fraction = i as f64 / batches.len() as f64;
                break;
            }
            let lr = schedule.rate(i as f64 / batches.len() as f64);
            let sentences: Vec<&[i64]> = rows
                .iter()
                .map(|&r| corpus.sentences[r].as_slice())
                .collect();
            let batch = SentenceBatch::new(&sentences, model.device());
            let (hidden, _) = model.forward(&batch.inputs, &model.zero_state(batch.size()), true);
            let log_probs = model.target_log_probs(&batch.gather(&hidden), &batch.targets);
            step(
                -log_probs.sum(None),
                batch.lengths.iter().sum(),
                &mut stats,
                lr,
            )?;
        }
    }
    progress.finish_and_clear();
    stats.seconds = epoch_start.elapsed().as_secs_f64();
    Ok(stats)
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{bar:30} {percent:>3}% {human_pos}/{human_len} tokens {per_sec:>12} loss {msg} ETA {eta}",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}
