//! A training run: the model, its optimizer and weight average, the run's state and
//! history, and its directory; [`Run::step`], [`Run::validate`] and
//! [`Run::checkpoint`] are everything an epoch does to them.

use super::batches::{epoch_batches, Batches};
use super::epoch::{
    check_begun, epoch_rng, seed_batch, Diverged, EpochStart, EpochStats, Schedule,
};
use super::reduce::{added, sum_step, BatchObjective, ReduceSeconds};
use super::start::{Data, Start};
use super::{close_epoch, resume, EpochRecord, LrSchedule, TrainConfig, TrainSummary};
use crate::average::WeightAverage;
use crate::checkpoint::{ModelDir, SavedConfig, Snapshot, TrainState};
use crate::data::Corpus;
use crate::distributed::World;
use crate::model::{RnnLm, State};
use crate::oov::{OovClasses, OovScorer};
use crate::optim::Optimizer;
use crate::progress::Progress;
use crate::score::{evaluate, sentence_log_prob, token_log_probs, SCORE_BATCH};
use crate::vocab::Vocab;
use anyhow::{bail, Result};
use std::ops::Range;
use std::time::Instant;
use tch::{nn, Device, Tensor};

/// Everything a training run holds between its steps.
pub(super) struct Run<'a> {
    config: &'a TrainConfig,
    /// The processes training together: this one alone, or the ranks of a run.
    world: &'a World,
    dir: ModelDir,
    saved: SavedConfig,
    vocab: Vocab,
    oov: Option<OovClasses>,
    state: TrainState,
    history: Vec<EpochRecord>,
    vs: nn::VarStore,
    model: RnnLm,
    optimizer: Optimizer,
    average: Option<WeightAverage>,
    /// A stream epoch's state where a resumed run was cut inside it.
    carried: Option<State>,
    /// Whether the directory holds this run's model (always, when resuming).
    committed: bool,
    /// Seconds spent summing gradients across the ranks, and waiting for them.
    reduce_seconds: ReduceSeconds,
    budget: Budget,
}

/// What limits this run besides its epochs: its clock and its step count.
struct Budget {
    start: Instant,
    /// Seconds the last validation took, kept free before the deadline.
    last_validation: f64,
    steps_left: Option<usize>,
    /// This run's share of `--time-limit`, in seconds.
    time_limit: Option<f64>,
    /// Training seconds of the runs this one resumes.
    seconds_before: f64,
}

impl Budget {
    /// The budget of a run whose earlier runs trained `seconds_before` seconds. With the
    /// linear schedule, --time-limit is the budget of the whole run, resumes included;
    /// otherwise it is this run's.
    fn new(config: &TrainConfig, seconds_before: f64) -> Self {
        let time_limit = match config.lr_schedule {
            LrSchedule::Linear => config.time_limit.map(|t| t - seconds_before),
            LrSchedule::Plateau => config.time_limit,
        };
        Budget {
            start: Instant::now(),
            last_validation: 0.0,
            steps_left: config.max_steps,
            time_limit,
            seconds_before,
        }
    }
}

impl<'a> Run<'a> {
    /// Builds the network from `start` (seeded by the run's seed) and, on `--resume`,
    /// loads its weights, optimizer state, average and carried stream state.
    pub(super) fn new(
        config: &'a TrainConfig,
        world: &'a World,
        dir: ModelDir,
        start: Start,
        device: Device,
    ) -> Result<Self> {
        tch::manual_seed(config.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let model = RnnLm::new(&vs.root(), &start.saved.model);
        let regularization = &config.regularization;
        regularization.check()?;
        let mut optimizer =
            Optimizer::new(config.optimizer, vs.trainable_variables(), start.state.lr)
                .named(&vs)?
                .share(model.shared_parameters())?
                .with_weight_decay(regularization.weight_decay);
        let mut average = (regularization.ema_decay > 0.0)
            .then(|| WeightAverage::new(&vs, regularization.ema_decay));
        let zero = model.zero_state(config.batch_size as i64);
        let carried = match config.resume {
            true => resume::weights(
                &dir,
                &mut vs,
                &mut optimizer,
                average.as_mut(),
                &zero,
                device,
            )?,
            false => None,
        };
        let budget = Budget::new(config, start.state.seconds);
        // Every rank seeds alike and builds the same weights; rank 0's go to all anyway,
        // so that no rank can start from others.
        world.broadcast(&vs.trainable_variables(), 0)?;
        let Start {
            saved,
            vocab,
            oov,
            state,
            history,
        } = start;
        Ok(Run {
            config,
            world,
            dir,
            saved,
            vocab,
            oov,
            state,
            history,
            vs,
            model,
            optimizer,
            average,
            carried,
            committed: config.resume,
            reduce_seconds: ReduceSeconds::default(),
            budget,
        })
    }

    /// Logs the network's size and the data's.
    pub(super) fn log_size(&self, data: &Data) {
        let parameters: usize = self
            .vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum();
        tracing::info!(
            "{parameters} parameters, vocabulary {}, {} train / {} valid tokens, device {:?}",
            self.vocab.len(),
            data.train.tokens(),
            data.valid.tokens(),
            self.vs.device()
        );
    }

    /// Trains epoch after epoch until the epochs, the patience, the time or the steps
    /// run out; each epoch worth keeping is checkpointed.
    pub(super) fn train(mut self, data: &Data) -> Result<TrainSummary> {
        let mut no_model_because = "--epochs is 0";
        if self.config.resume && self.state.epoch >= self.config.epochs {
            tracing::info!(
                "{}: its {} epochs are done; --epochs N trains on to epoch N",
                self.dir.root.display(),
                self.config.epochs
            );
        }
        while self.state.epoch < self.config.epochs {
            let done_before = self.state.batches_done;
            let epoch = self.epoch(&data.train).map_err(|e| self.diverged(e))?;
            if epoch.batches_done == done_before {
                no_model_because = match self.budget.steps_left {
                    Some(0) => "--max-steps is 0",
                    _ => "--time-limit ran out before the first batch",
                };
                break;
            }
            let valid_loss = self.validate(&data.valid)?;
            let improved = self.record(&epoch, valid_loss);
            if self.state.best_valid_loss.is_finite() {
                self.checkpoint(
                    improved,
                    epoch.carried.as_ref().filter(|_| !epoch.complete()),
                )?;
            } else {
                no_model_because = "the valid loss was not finite in any epoch";
            }
            if self.stops_after(&epoch) {
                break;
            }
        }
        if self.world.size() > 1 {
            let training: f64 = self.history.iter().map(|r| r.seconds).sum();
            let ReduceSeconds {
                waiting,
                summing,
                overlapped,
            } = self.reduce_seconds;
            let share = |seconds: f64| 100.0 * seconds / training.max(1e-9);
            tracing::info!(
                "{} ranks: of {training:.1} s of training, {waiting:.1} s waiting for the slowest rank ({:.1}%) and {summing:.1} s summing gradients ({:.1}%) after the backward pass, whose last {overlapped:.1} s ({:.1}%) ran while the output layer's were summed",
                self.world.size(),
                share(waiting),
                share(summing),
                share(overlapped)
            );
        }
        if !self.committed {
            bail!(
                "no model was written to {}: {no_model_because}",
                self.dir.root.display()
            );
        }
        Ok(TrainSummary {
            history: self.history,
            best_valid_loss: self.state.best_valid_loss,
        })
    }

    /// One pass over the training data, from where the state says the epoch stands,
    /// until its end, the deadline or the last step.
    fn epoch(&mut self, corpus: &Corpus) -> Result<EpochStats> {
        let (config, epoch) = (self.config, self.state.epoch);
        let mut rng = epoch_rng(config.seed, epoch);
        let per_step = self.batches_per_step();
        let mut batches = epoch_batches(
            config,
            corpus,
            &self.model,
            &mut rng,
            per_step,
            self.carried.take(),
        )?;
        let begun = self.begun();
        check_begun(
            &begun,
            batches.len(),
            self.batches_per_step(),
            config,
            epoch,
        )?;
        let deadline = self
            .budget
            .time_limit
            .map(|limit| limit - self.budget.last_validation);
        let schedule = Schedule {
            config,
            epoch,
            start: self.budget.start,
            deadline,
            seconds_before: self.budget.seconds_before,
        };
        let mut stats = EpochStats {
            loss_sum: begun.loss_sum,
            tokens: begun.tokens,
            seconds: begun.seconds,
            batches_done: begun.batches_done,
            batches: batches.len(),
            carried: None,
            lr: schedule.rate(0.0).unwrap_or(self.state.lr),
        };
        let progress = Progress::tokens(corpus.tokens() as u64);
        progress.inc(begun.tokens as u64);
        let started = Instant::now();
        let per_step = self.batches_per_step();
        while stats.batches_done < stats.batches && !self.must_stop(&schedule)? {
            let step = stats.batches_done..(stats.batches_done + per_step).min(stats.batches);
            let rate = schedule.rate(stats.fraction());
            let (loss_sum, tokens) = self.step(batches.as_mut(), step.clone(), rate)?;
            stats.loss_sum += loss_sum;
            stats.tokens += tokens;
            stats.batches_done = step.end;
            progress.inc(tokens as u64);
            progress.set_message(|| format!("{:.3}", stats.loss_sum / stats.tokens as f64));
        }
        progress.finish();
        stats.carried = batches.carried();
        stats.seconds += started.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Where the current epoch starts: its first batch, or where a cut run stopped.
    fn begun(&self) -> EpochStart {
        let state = &self.state;
        EpochStart {
            batches_done: state.batches_done,
            loss_sum: state.partial_loss_sum,
            tokens: state.partial_tokens,
            seconds: state.partial_seconds,
        }
    }

    /// One optimizer step over the batches `step` of the epoch, at learning rate `lr`
    /// (`None`: the optimizer's own); returns their summed loss and their tokens. It
    /// minimizes the mean loss per token of all the step's batches plus the
    /// penalties. This process runs its share of them (every `ranks`-th) and sums
    /// their gradients; between the gradients and the update the ranks sum theirs, so
    /// every rank takes the update one process would take on all of them.
    pub(super) fn step(
        &mut self,
        batches: &mut dyn Batches,
        step: Range<usize>,
        lr: Option<f64>,
    ) -> Result<(f64, usize)> {
        if let Some(lr) = lr {
            self.optimizer.set_lr(lr);
        }
        let (config, world) = (self.config, self.world);
        let total_tokens: usize = step.clone().map(|i| batches.tokens(i)).sum();
        let mine: Vec<usize> = step.skip(world.rank()).step_by(world.size()).collect();
        let mut gradients: Option<Vec<Tensor>> = None;
        let mut last = None;
        let mut loss_sum = 0.0;
        for (k, &index) in mine.iter().enumerate() {
            seed_batch(config.seed, self.state.epoch, index);
            let loss = batches.forward(index, &self.model, &config.regularization);
            loss_sum += f64::try_from(&loss.sum)?;
            let batch = BatchObjective::of(loss, total_tokens);
            if world.size() > 1 && k + 1 == mine.len() {
                // Its backward pass runs while the ranks sum the output layer's part.
                last = Some(batch);
                break;
            }
            let mut these = self.optimizer.backward(&batch.objective());
            if self.batches_per_step() > 1 {
                these = self.optimizer.zero_filled(these);
            }
            gradients = Some(added(these, gradients));
        }
        let gradients = match world.size() {
            1 => gradients.unwrap_or_else(|| self.optimizer.zero_gradients()),
            _ => {
                let output = self
                    .optimizer
                    .output_leaves(&self.model.output_parameters());
                let (summed, summed_loss, seconds) =
                    sum_step(world, &self.optimizer, &output, last, gradients, loss_sum)?;
                self.reduce_seconds.waiting += seconds.waiting;
                self.reduce_seconds.summing += seconds.summing;
                self.reduce_seconds.overlapped += seconds.overlapped;
                loss_sum = summed_loss;
                summed
            }
        };
        let per_token = loss_sum / total_tokens as f64;
        // Before the update, so that a non-finite loss never reaches the weights or
        // Adam's moments.
        if !per_token.is_finite() || per_token > 100.0 {
            return Err(Diverged { per_token }.into());
        }
        self.optimizer.apply(gradients, config.clip)?;
        if let Some(average) = self.average.as_mut() {
            average.update()?;
        }
        if let Some(left) = &mut self.budget.steps_left {
            *left = left.saturating_sub(1);
        }
        Ok((loss_sum, total_tokens))
    }

    /// Batches a step takes: `accumulate` on each rank.
    fn batches_per_step(&self) -> usize {
        self.world.size() * self.config.accumulate
    }

    /// Whether the step about to start should not: the deadline passed (on any rank:
    /// the ranks decide together) or the steps ran out.
    fn must_stop(&self, schedule: &Schedule) -> Result<bool> {
        if self.budget.steps_left == Some(0) {
            return Ok(true);
        }
        let late = schedule.past_deadline();
        match self.world.size() {
            1 => Ok(late),
            _ => Ok(self.world.sum(&[f64::from(u8::from(late))])?[0] > 0.0),
        }
    }

    /// Validation loss in nats per token, every sentence from the zero state as `eval`
    /// and `score` read it, whatever layout training uses, and of the averaged weights
    /// where there are any: the epoch kept is the one best the way the model is used.
    pub(super) fn validate(&mut self, corpus: &Corpus) -> Result<f64> {
        let started = Instant::now();
        let (model, world) = (&self.model, self.world);
        let loss = || sharded_loss(model, corpus, world);
        let valid_loss = match self.average.as_mut() {
            Some(average) => {
                average.swap()?;
                let valid_loss = loss();
                average.swap()?;
                valid_loss?
            }
            None => loss()?,
        };
        self.budget.last_validation = started.elapsed().as_secs_f64();
        Ok(valid_loss)
    }

    /// Records the epoch (or its part) in the history and the state, moves the
    /// learning rate as the schedule says; returns whether the weights are the best.
    fn record(&mut self, epoch: &EpochStats, valid_loss: f64) -> bool {
        let record = EpochRecord {
            epoch: self.state.epoch as f64 + epoch.fraction(),
            train_loss: epoch.loss_sum / epoch.tokens as f64,
            valid_loss,
            tokens_per_s: epoch.tokens as f64 / epoch.seconds,
            seconds: epoch.seconds,
            lr: epoch.lr,
        };
        super::log_epoch(&record);
        self.history.push(record);
        let improved = close_epoch(&mut self.state, epoch, valid_loss, self.config);
        self.optimizer.set_lr(self.state.lr);
        improved
    }

    /// Writes the model directory: the best weights when `improved`, the last ones,
    /// the optimizer's state and average, and a cut stream epoch's `carried` state.
    pub(super) fn checkpoint(&mut self, improved: bool, carried: Option<&State>) -> Result<()> {
        let per_step = self.batches_per_step();
        self.state.batches_per_step = (per_step > 1).then_some(per_step);
        if !self.world.is_leader() {
            // Rank 0 alone writes; its weights, state and optimizer are every rank's.
            self.committed = true;
            return Ok(());
        }
        let mut optimizer_state = self.optimizer.state();
        if let Some(average) = &self.average {
            optimizer_state.extend(average.state());
        }
        if let Some(carried) = carried {
            optimizer_state.extend(resume::carried_tensors(carried));
        }
        let snapshot = Snapshot {
            config: &self.saved,
            vocab: &self.vocab,
            oov: self.oov.as_ref(),
            weights: &self.vs,
            improved,
            averaged: self.average.as_ref().map(WeightAverage::averaged),
            optimizer: optimizer_state,
            state: &self.state,
            history: &self.history,
        };
        self.dir.commit(&snapshot, !self.committed)?;
        self.committed = true;
        Ok(())
    }

    /// Whether the run ends after `epoch`: patience spent, or a limit cut the epoch.
    fn stops_after(&self, epoch: &EpochStats) -> bool {
        let (config, state) = (self.config, &self.state);
        if config.patience > 0 && state.cuts_without_improvement >= config.patience {
            tracing::info!(
                "stopping early: {} learning-rate cuts without improvement (--patience {})",
                state.cuts_without_improvement,
                config.patience
            );
            return true;
        }
        if !epoch.complete() {
            let limit = match self.budget.steps_left {
                Some(0) => "--max-steps",
                _ => "time limit",
            };
            tracing::info!(
                "{limit} reached inside epoch {}; --resume goes on from there; the best model is kept in {}",
                state.epoch + 1,
                self.dir.root.display()
            );
        }
        !epoch.complete()
    }

    /// A divergence as the user reads it: what stays in the directory, what to try.
    fn diverged(&self, e: anyhow::Error) -> anyhow::Error {
        if !e.is::<Diverged>() {
            return e;
        }
        let kept = match self.committed {
            true => format!("the last checkpoint stays in {}", self.dir.root.display()),
            false => format!("no model was written to {}", self.dir.root.display()),
        };
        anyhow::anyhow!("{e}; {kept}; try a lower --lr or --clip")
    }
}

/// Validation loss in nats per token, every sentence from the zero state (closed
/// vocabulary, as `eval --oov unk`): each rank scores every `ranks`-th sentence and
/// the sums are shared, so every rank gets the same loss.
fn sharded_loss(model: &RnnLm, corpus: &Corpus, world: &World) -> Result<f64> {
    if world.size() == 1 {
        return Ok(evaluate(model, corpus, SCORE_BATCH, &OovScorer::closed())?.nats_per_token);
    }
    let shard: Vec<Vec<i64>> = corpus
        .sentences
        .iter()
        .skip(world.rank())
        .step_by(world.size())
        .cloned()
        .collect();
    let log_prob: f64 = token_log_probs(model, &shard, SCORE_BATCH)?
        .iter()
        .map(|lps| sentence_log_prob(lps))
        .sum();
    let tokens = shard.iter().map(Vec::len).sum::<usize>() as f64;
    let sums = world.sum(&[log_prob, tokens])?;
    Ok(-sums[0] / sums[1])
}
