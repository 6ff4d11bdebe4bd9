//! What an epoch is made of: where it starts, what it did, the learning-rate schedule
//! and the random streams of each epoch.

use super::{LrSchedule, TrainConfig};
use crate::model::State;
use anyhow::{bail, Result};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::time::Instant;

/// The shuffling generator of epoch `epoch` (0-based) of a run seeded with `seed`:
/// ChaCha stream 2·`epoch` under the seed's key. It depends only on the two, so a run
/// resumed inside epoch k shuffles as an uncut run does.
pub(super) fn epoch_rng(seed: u64, epoch: usize) -> ChaCha12Rng {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(2 * epoch as u64);
    rng
}

/// Seeds libtorch's generator (dropout) for batch `batch` of epoch `epoch` from the
/// `batch`-th number of ChaCha stream 2·`epoch` + 1: seeded per batch, a run resumed at
/// any batch draws what an uncut run draws there.
pub(super) fn seed_batch(seed: u64, epoch: usize, batch: usize) {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(2 * epoch as u64 + 1);
    // A u64 is two of the stream's 32-bit words.
    rng.set_word_pos(2 * batch as u128);
    tch::manual_seed((rng.next_u64() >> 1) as i64);
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

    pub(super) fn past_deadline(&self) -> bool {
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
    /// The learning rate at the epoch's start, as the history records it.
    pub(super) lr: f64,
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

/// Refuses a resumed epoch that claims more batches done than the epoch has (its
/// state was changed, or the data is not the data the run was cut on), or that stopped
/// inside a step of another size (the ranks × `--accumulate` changed).
pub(super) fn check_begun(
    begun: &EpochStart,
    batches: usize,
    per_step: usize,
    config: &TrainConfig,
    epoch: usize,
) -> Result<()> {
    let state = config.out.join("state.json");
    if begun.batches_done > batches {
        bail!(
            "{}: {} batches of epoch {} are done, but the epoch has {batches}: the state was changed, or the training text is not the run's",
            state.display(),
            begun.batches_done,
            epoch + 1,
        );
    }
    if !begun.batches_done.is_multiple_of(per_step) && begun.batches_done != batches {
        bail!(
            "{}: the run stopped after {} batches of epoch {}, inside a step of {per_step} batches (ranks × --accumulate); resume with the run's ranks × --accumulate",
            state.display(),
            begun.batches_done,
            epoch + 1,
        );
    }
    Ok(())
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
