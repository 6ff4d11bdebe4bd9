//! One pass over the training data: batches, steps, the learning-rate schedule and
//! the random streams of each epoch.

use super::{LrSchedule, TrainConfig};
use crate::average::WeightAverage;
use crate::data::{length_batches, Corpus, SentenceBatch, TokenStream};
use crate::model::{RnnLm, State};
use crate::optim::Optimizer;
use crate::progress::Progress;
use crate::regularize::{activation_penalty, consecutive_positions};
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Instant;
use tch::Tensor;

/// The shuffling generator of epoch `epoch` (0-based) of a run seeded with `seed`.
/// It depends only on the two, so a run resumed inside epoch k shuffles as an uncut
/// run does.
pub(super) fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(splitmix64(splitmix64(seed ^ splitmix64(epoch as u64 + 1))))
}

/// Seeds libtorch's generator (dropout) for batch `batch` of epoch `epoch`: seeded
/// per batch, a run resumed at any batch draws what an uncut run draws there.
fn seed_batch(seed: u64, epoch: usize, batch: usize) {
    let mixed = splitmix64(splitmix64(seed ^ splitmix64(epoch as u64 + 1)) ^ batch as u64);
    tch::manual_seed((mixed >> 1) as i64);
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
    /// The run's settings (on `--resume`, the resumed run's).
    pub(super) config: &'a TrainConfig,
    /// Epochs completed before the current one.
    pub(super) epoch: usize,
    /// When this run started.
    pub(super) start: Instant,
    /// When this run must stop, in seconds since `start`.
    pub(super) deadline: Option<f64>,
    /// Training seconds of the runs this one resumes.
    pub(super) seconds_before: f64,
}

/// The linear schedule's rate at `progress` (the share of the budget spent): `lr` until
/// the last `cooldown` share of the budget, then a straight fall to zero at its end.
pub(super) fn cooled_rate(lr: f64, cooldown: f64, progress: f64) -> f64 {
    lr * ((1.0 - progress) / cooldown).clamp(0.0, 1.0)
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
        let by_time = c.time_limit.map_or(0.0, |budget| {
            (self.seconds_before + self.start.elapsed().as_secs_f64()) / budget.max(1e-9)
        });
        Some(cooled_rate(c.lr, c.lr_cooldown, by_epochs.max(by_time)))
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| self.start.elapsed().as_secs_f64() >= d)
    }
}

/// Where an epoch starts: at its first batch, or where a cut run stopped inside it.
#[derive(Default)]
pub(super) struct EpochStart {
    /// Batches (stream chunks) of the epoch already trained.
    pub(super) batches_done: usize,
    /// Their summed loss and token count, so that the epoch's record covers all of it.
    pub(super) loss_sum: f64,
    pub(super) tokens: usize,
    /// Their training seconds.
    pub(super) seconds: f64,
    /// In stream mode, the recurrent state carried into the next chunk.
    pub(super) carried: Option<State>,
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

/// What a pass over the training data did, counting the part of the epoch that a
/// resumed run's earlier runs did.
pub(super) struct EpochStats {
    pub(super) loss_sum: f64,
    pub(super) tokens: usize,
    pub(super) seconds: f64,
    /// Batches (stream chunks) done, and how many the epoch has.
    pub(super) batches_done: usize,
    pub(super) batches: usize,
    /// In stream mode, the recurrent state that the next chunk reads.
    pub(super) carried: Option<State>,
}

impl EpochStats {
    /// Share of the epoch's batches done: below 1 when a limit cut it short.
    pub(super) fn fraction(&self) -> f64 {
        self.batches_done as f64 / self.batches.max(1) as f64
    }

    /// Whether every batch of the epoch is done.
    pub(super) fn complete(&self) -> bool {
        self.batches_done >= self.batches
    }
}

/// What a step updates: the weights, through the optimizer, and their average.
pub(super) struct Update<'a> {
    pub(super) optimizer: &'a mut Optimizer,
    pub(super) average: Option<&'a mut WeightAverage>,
}

/// Refuses a resumed epoch that claims more batches done than the epoch has: its
/// state was changed, or the data is not the data the run was cut on.
fn check_begun(
    begun: &EpochStart,
    batches: usize,
    config: &TrainConfig,
    epoch: usize,
) -> Result<()> {
    if begun.batches_done > batches {
        bail!(
            "{}: {} batches of epoch {} are done, but the epoch has {batches}: the state was changed, or the training text is not the run's",
            config.out.join("state.json").display(),
            begun.batches_done,
            epoch + 1,
        );
    }
    Ok(())
}

/// One pass over the training data from `begun`, stopping early at the schedule's
/// deadline or when `steps_left` reaches 0.
pub(super) fn run_epoch(
    model: &RnnLm,
    update: Update,
    corpus: &Corpus,
    rng: &mut StdRng,
    schedule: &Schedule,
    begun: EpochStart,
    steps_left: &mut Option<usize>,
) -> Result<EpochStats> {
    let config = schedule.config;
    let epoch_start = Instant::now();
    let progress = Progress::tokens(corpus.tokens() as u64);
    progress.inc(begun.tokens as u64);
    let mut stats = EpochStats {
        loss_sum: begun.loss_sum,
        tokens: begun.tokens,
        seconds: begun.seconds,
        batches_done: begun.batches_done,
        batches: 0,
        carried: None,
    };
    let Update {
        optimizer,
        mut average,
    } = update;
    let regularization = &config.regularization;
    // `penalty`: the activation penalties, added to the mean loss that is minimized
    // but not to the loss that is reported.
    let mut step = |loss_sum: Tensor,
                    penalty: Option<Tensor>,
                    tokens: usize,
                    stats: &mut EpochStats,
                    steps_left: &mut Option<usize>|
     -> Result<()> {
        if let Some(lr) = schedule.rate(stats.fraction()) {
            optimizer.set_lr(lr);
        }
        let loss = f64::try_from(&loss_sum)?;
        let per_token = loss / tokens as f64;
        // Before the step, so that a non-finite loss never reaches the weights or
        // Adam's moments.
        if !per_token.is_finite() || per_token > 100.0 {
            return Err(Diverged { per_token }.into());
        }
        let objective = &loss_sum / tokens as f64;
        let objective = match penalty {
            Some(penalty) => objective + penalty,
            None => objective,
        };
        optimizer.step(&objective, config.clip)?;
        if let Some(average) = average.as_deref_mut() {
            average.update()?;
        }
        stats.loss_sum += loss;
        stats.tokens += tokens;
        stats.batches_done += 1;
        if let Some(left) = steps_left {
            *left = left.saturating_sub(1);
        }
        progress.inc(tokens as u64);
        progress.set_message(|| format!("{:.3}", stats.loss_sum / stats.tokens as f64));
        Ok(())
    };
    let stop = |steps_left: &Option<usize>| schedule.past_deadline() || *steps_left == Some(0);
    let seed = config.seed;

    if config.stream {
        let stream = TokenStream::new(corpus, config.batch_size, model.device())
            .with_context(|| config.data.join("train.txt").display().to_string())?;
        let chunks: Vec<(Tensor, Tensor)> = stream.chunks(config.bptt).collect();
        stats.batches = chunks.len();
        check_begun(&begun, stats.batches, config, schedule.epoch)?;
        let mut state = begun
            .carried
            .unwrap_or_else(|| model.zero_state(config.batch_size as i64));
        for (i, (inputs, targets)) in chunks.iter().enumerate().skip(begun.batches_done) {
            if stop(steps_left) {
                break;
            }
            seed_batch(seed, schedule.epoch, i);
            let pass = model.forward_train(inputs, &state.detach(), regularization);
            state = pass.state;
            let width = pass.output.size()[2];
            let hidden = pass.output.reshape([-1, width]);
            let log_probs = model.target_log_probs(&hidden, &targets.reshape([-1]));
            let raw = pass.raw.as_ref();
            let steps = raw.map(|raw| {
                let time = raw.size()[1];
                (raw.narrow(1, 1, time - 1), raw.narrow(1, 0, time - 1))
            });
            let penalty = activation_penalty(
                regularization,
                &hidden,
                steps.as_ref().map(|(next, previous)| (next, previous)),
            );
            step(
                -log_probs.sum(None),
                penalty,
                targets.numel(),
                &mut stats,
                steps_left,
            )?;
        }
        stats.carried = Some(state.detach());
    } else {
        let lengths: Vec<usize> = corpus.sentences.iter().map(Vec::len).collect();
        let batches = length_batches(&lengths, config.batch_size, Some(rng));
        stats.batches = batches.len();
        check_begun(&begun, stats.batches, config, schedule.epoch)?;
        for (i, rows) in batches.iter().enumerate().skip(begun.batches_done) {
            if stop(steps_left) {
                break;
            }
            seed_batch(seed, schedule.epoch, i);
            let sentences: Vec<&[i64]> = rows
                .iter()
                .map(|&r| corpus.sentences[r].as_slice())
                .collect();
            let batch = SentenceBatch::new(&sentences, model.device());
            let pass = model.forward_train(
                &batch.inputs,
                &model.zero_state(batch.size()),
                regularization,
            );
            let hidden = batch.gather(&pass.output);
            let log_probs = model.target_log_probs(&hidden, &batch.targets);
            let steps = pass.raw.as_ref().map(|raw| {
                let size = raw.size();
                let (next, previous) = consecutive_positions(&batch.lengths, size[1] as usize);
                let flat = raw.reshape([-1, size[2]]);
                let rows = |index: Vec<i64>| {
                    flat.index_select(0, &Tensor::from_slice(&index).to(flat.device()))
                };
                (rows(next), rows(previous))
            });
            let penalty = activation_penalty(
                regularization,
                &hidden,
                steps.as_ref().map(|(next, previous)| (next, previous)),
            );
            step(
                -log_probs.sum(None),
                penalty,
                batch.lengths.iter().sum(),
                &mut stats,
                steps_left,
            )?;
        }
    }
    progress.finish();
    stats.seconds += epoch_start.elapsed().as_secs_f64();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::cooled_rate;

    #[test]
    fn the_cooldown_holds_then_falls_straight_to_zero() {
        // Over the whole budget it is the plain linear fall.
        for progress in [0.0, 0.25, 0.9] {
            assert!((cooled_rate(2.0, 1.0, progress) - 2.0 * (1.0 - progress)).abs() < 1e-12);
        }
        // Over the last fifth: constant until 0.8, half at 0.9, zero at the end and past it.
        assert_eq!(cooled_rate(2.0, 0.2, 0.0), 2.0);
        assert!((cooled_rate(2.0, 0.2, 0.8) - 2.0).abs() < 1e-12);
        assert_eq!(cooled_rate(2.0, 0.2, 0.5), 2.0);
        assert!((cooled_rate(2.0, 0.2, 0.9) - 1.0).abs() < 1e-12);
        assert_eq!(cooled_rate(2.0, 0.2, 1.0), 0.0);
        assert_eq!(cooled_rate(2.0, 0.2, 1.3), 0.0);
    }
}
