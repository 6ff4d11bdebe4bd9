//! Training by backpropagation through time.
//!
//! The loss of a sentence is Σ_t −log `ŷ<t>[y<t>]`; a step minimizes its mean per token
//! over the batch (the same minimizer, a learning rate that does not depend on
//! sentence length). Sentence mode starts every line from `a<0>` = 0; stream mode reads
//! the file as one token stream and backpropagates through `bptt` steps at a time,
//! carrying the state forward detached.
//!
//! [`train`] takes the directory's lock, finds where the run starts (`start`), builds a
//! `Run` and trains it epoch by epoch over its `Batches`.

mod batches;
mod config;
mod epoch;
mod reduce;
mod resume;
mod run;
mod start;

pub use config::{LrSchedule, TrainConfig};

use crate::checkpoint::{ModelDir, TrainState};
use crate::distributed::World;
pub use crate::metrics::EpochRecord;
use crate::model::ModelConfig;
pub use crate::optim::OptimizerKind;
use crate::swap::TrainingLock;
use anyhow::{bail, Result};
use epoch::EpochStats;
use tch::Device;

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainSummary {
    /// Every epoch's record, those of earlier runs included.
    pub history: Vec<EpochRecord>,
    /// Best validation loss (nats per token).
    pub best_valid_loss: f64,
}

/// Trains a model as `config` says and writes its directory; returns the history.
///
/// The directory changes only at the end of an epoch whose model is worth keeping,
/// one checkpoint at a time; a run that ends before its first such epoch is an
/// error, and leaves the directory as it was.
pub fn train(config: &TrainConfig, device: Device) -> Result<TrainSummary> {
    train_on(config, device, &World::single())
}

/// [`train`] as one rank of `world`: each step's batches are shared among the ranks and
/// their gradients summed, so every rank takes the step one process would take on all
/// of them; rank 0 alone takes the directory's lock and writes the model.
pub fn train_on(config: &TrainConfig, device: Device, world: &World) -> Result<TrainSummary> {
    if !config.resume {
        // Before anything is written; a resumed run's schedule is checked once known.
        check_schedule(config)?;
    }
    let dir = ModelDir::new(&config.out);
    let lock = agree(world, leader_lock(config, world))?;
    let (start, config) = agree(world, start::begin(config, &dir))?;
    let data = agree(world, ready(&config, &start, world, device))?;
    check_same_run(&config, &start, world, device)?;
    let run = run::Run::new(&config, world, dir, start, device)?;
    run.log_size(&data);
    let summary = run.train(&data);
    drop(lock);
    summary
}

/// Rank 0's lock on the directory, the directory put in order under it.
fn leader_lock(config: &TrainConfig, world: &World) -> Result<Option<TrainingLock>> {
    if !world.is_leader() {
        return Ok(None);
    }
    let lock = TrainingLock::acquire(&config.out)?;
    lock.tidy()?;
    Ok(Some(lock))
}

/// The data, once the run's settings are known to fit the ranks and the memory.
fn ready(
    config: &TrainConfig,
    start: &start::Start,
    world: &World,
    device: Device,
) -> Result<start::Data> {
    if config.resume {
        check_schedule(config)?;
    }
    let per_step = world.size() * config.accumulate;
    let recorded = start.state.batches_per_step.unwrap_or(1);
    if config.resume && recorded != per_step {
        bail!(
            "{}: the run took {recorded} batches a step (ranks × --accumulate) and this one would take {per_step} ({} ranks × --accumulate {}); resume with ranks × --accumulate = {recorded}",
            config.out.display(),
            world.size(),
            config.accumulate
        );
    }
    if device != Device::Cpu && !world.sums_cuda() {
        bail!("rank {}: the ranks have no NCCL group to sum {device:?}'s gradients in; give every rank --device cpu", world.rank());
    }
    if config.stream && per_step > 1 {
        bail!("--stream reads one token stream in order, which cannot be split among ranks or --accumulate batches; train sentence by sentence");
    }
    let data = start::load_data(config, &start.saved.tokenizer, &start.vocab)?;
    if device == Device::Cpu {
        check_memory(&start.saved.model)?;
    }
    Ok(data)
}

/// A start-up phase's outcome on every rank made one: when any rank failed, every
/// rank stops, with its own error or one that says others failed.
fn agree<T>(world: &World, result: Result<T>) -> Result<T> {
    if world.size() == 1 {
        return result;
    }
    let failed = world.sum(&[f64::from(u8::from(result.is_err()))])?[0];
    match result {
        Ok(_) if failed > 0.0 => bail!(
            "rank {}: {failed} other rank(s) failed to start (see rank 0's error)",
            world.rank()
        ),
        result => result,
    }
}

/// Refuses ranks started with other settings, data or vocabulary than rank 0's: a
/// hash of them is compared, and all ranks stop together where any differs.
fn check_same_run(
    config: &TrainConfig,
    start: &start::Start,
    world: &World,
    device: Device,
) -> Result<()> {
    use std::hash::{Hash, Hasher};
    if world.size() == 1 {
        return Ok(());
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(config)?.hash(&mut hasher);
    serde_json::to_string(&start.saved)?.hash(&mut hasher);
    start.vocab.tokens().hash(&mut hasher);
    // CUDA on some ranks only would sum some gradients in NCCL and others in Gloo.
    device.is_cuda().hash(&mut hasher);
    let mine = hasher.finish() as i64;
    let leaders = tch::Tensor::from_slice(&[mine]);
    world.broadcast(std::slice::from_ref(&leaders), 0)?;
    let differs = i64::try_from(&leaders)? != mine;
    agree(
        world,
        match differs {
            true => Err(anyhow::anyhow!(
                "rank {}: started with other flags, data, vocabulary or device (CPU or CUDA) than rank 0; start every rank with the same command",
                world.rank()
            )),
            false => Ok(()),
        },
    )
}

/// Moves `state` past an epoch, or the part of one that a limit cut, whose valid loss
/// was `valid_loss`; returns whether its weights are the best so far. Only whole epochs
/// move the schedule (the plateau cut, patience), so a run cut and resumed moves it as
/// an uncut one does; a cut epoch records where it stopped.
fn close_epoch(
    state: &mut TrainState,
    epoch: &EpochStats,
    valid_loss: f64,
    config: &TrainConfig,
) -> bool {
    state.seconds += epoch.seconds - state.partial_seconds;
    let previous_best = state.best_valid_loss;
    let improved = valid_loss < state.best_valid_loss;
    if improved {
        state.best_valid_loss = valid_loss;
    }
    if !epoch.complete() {
        state.batches_done = epoch.batches_done;
        state.partial_loss_sum = epoch.loss_sum;
        state.partial_tokens = epoch.tokens;
        state.partial_seconds = epoch.seconds;
        return improved;
    }
    state.epoch += 1;
    state.batches_done = 0;
    state.partial_loss_sum = 0.0;
    state.partial_tokens = 0;
    state.partial_seconds = 0.0;
    let epoch_best = state.epoch_best_valid_loss.unwrap_or(previous_best);
    if valid_loss < epoch_best {
        state.epoch_best_valid_loss = Some(valid_loss);
        state.cuts_without_improvement = 0;
    } else {
        state.epoch_best_valid_loss = Some(epoch_best);
        if config.lr_schedule == LrSchedule::Plateau {
            state.lr *= config.lr_decay;
            state.cuts_without_improvement += 1;
        }
    }
    improved
}

/// Refuses a cooldown the schedule would ignore, or one outside (0, 1].
fn check_schedule(config: &TrainConfig) -> Result<()> {
    let cooldown = config.lr_cooldown;
    if !(cooldown > 0.0 && cooldown <= 1.0) {
        bail!("--lr-cooldown {cooldown} is not in (0, 1]");
    }
    if config.lr_schedule != LrSchedule::Linear && cooldown != 1.0 {
        bail!("--lr-cooldown {cooldown} applies to --lr-schedule linear only; add --lr-schedule linear or drop --lr-cooldown");
    }
    Ok(())
}

/// Refuses a model whose training state (weights, gradients and the optimizer's two
/// moment estimates, 16 bytes a parameter) exceeds the memory available (free memory,
/// `ulimit -v` or a container's limit, whichever is least), rather than failing inside
/// libtorch's allocator mid-epoch.
fn check_memory(model: &ModelConfig) -> Result<()> {
    let needed = model.parameter_count() * 16;
    let Some(available) = crate::memory::available() else {
        return Ok(());
    };
    if needed > available {
        const GIB: f64 = (1u64 << 30) as f64;
        bail!(
            "a model of {} parameters needs about {:.1} GiB to train (weights, gradients, Adam's moments), but {:.1} GiB of memory is available; lower --hidden, --embed, --layers or the vocabulary (--max-size, --min-count)",
            model.parameter_count(),
            needed as f64 / GIB,
            available as f64 / GIB
        );
    }
    Ok(())
}

fn log_epoch(r: &EpochRecord) {
    tracing::info!(
        "epoch {:>6.2} | train loss {:6.3} | valid loss {:6.3} | valid ppl {:9.2} | {:8.0} tok/s | {:7.1} s | lr {:.2e}",
        r.epoch,
        r.train_loss,
        r.valid_loss,
        r.valid_loss.exp(),
        r.tokens_per_s,
        r.seconds,
        r.lr
    );
}
