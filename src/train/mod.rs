//! Training by backpropagation through time.
//!
//! The loss of a sentence is Σ_t −log `ŷ<t>[y<t>]`; a step minimizes its mean per token
//! over the batch (the same minimizer, a learning rate that does not depend on
//! sentence length). Sentence mode starts every line from `a<0>` = 0; stream mode reads
//! the file as one token stream and backpropagates through `bptt` steps at a time,
//! carrying the state forward detached.

mod config;
mod epoch;
mod resume;

pub use config::{LrSchedule, TrainConfig};

use crate::average::WeightAverage;
use crate::checkpoint::{ModelDir, SavedConfig, Snapshot, TrainState, FORMAT};
use crate::data::Corpus;
use crate::metrics::read_metrics;
pub use crate::metrics::EpochRecord;
use crate::model::{ModelConfig, RnnLm};
use crate::oov::{OovClasses, OovScorer};
use crate::optim::Optimizer;
pub use crate::optim::OptimizerKind;
use crate::output::{choose_cutoffs, OutputConfig};
use crate::score::{evaluate, SCORE_BATCH};
use crate::vocab::{read_lines, Tokenizer, Vocab};
use anyhow::{bail, Context, Result};
use epoch::{epoch_rng, run_epoch, Diverged, EpochStart, EpochStats, Schedule, Update};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device};

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainSummary {
    /// Every epoch's record, those of earlier runs included.
    pub history: Vec<EpochRecord>,
    /// Best validation loss (nats per token).
    pub best_valid_loss: f64,
}

/// The training data, tokenized and encoded.
struct Data {
    train: Corpus,
    valid: Corpus,
}

/// What a run starts from: a fresh header, or the checkpoint it resumes.
struct Start {
    saved: SavedConfig,
    vocab: Vocab,
    oov: Option<OovClasses>,
    state: TrainState,
    history: Vec<EpochRecord>,
}

/// Trains a model as `config` says and writes its directory; returns the history.
///
/// The directory changes only at the end of an epoch whose model is worth keeping,
/// one checkpoint at a time; a run that ends before its first such epoch is an
/// error, and leaves the directory as it was.
pub fn train(config: &TrainConfig, device: Device) -> Result<TrainSummary> {
    if !config.resume {
        // Before anything is written; a resumed run's schedule is checked once it is known.
        check_schedule(config)?;
    }
    let dir = ModelDir::new(&config.out);
    let _lock = crate::swap::TrainingLock::acquire(&config.out)?;
    crate::swap::remove_abandoned_staging(&config.out)?;
    let Start {
        saved,
        vocab,
        oov,
        mut state,
        mut history,
    } = if config.resume {
        resume_start(&dir)?
    } else {
        dir.check_writable(config.force)?;
        fresh_start(config)?
    };
    let seed = *state.seed.get_or_insert(config.seed);
    let mut config = if config.resume {
        let settings = resume::settings(config, &saved, &dir)?;
        tracing::info!(
            "resuming {} after epoch {}{} at lr {}",
            dir.root.display(),
            state.epoch,
            match state.batches_done {
                0 => String::new(),
                n => format!(" and {n} batches of the next"),
            },
            state.lr
        );
        settings
    } else {
        config.clone()
    };
    config.seed = seed;
    let config = &config;
    if config.resume {
        check_schedule(config)?;
    }
    let data = load_data(config, &saved.tokenizer, &vocab)?;

    if device == Device::Cpu {
        check_memory(&saved.model)?;
    }
    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = RnnLm::new(&vs.root(), &saved.model);
    let regularization = &config.regularization;
    regularization.check()?;
    let mut optimizer = Optimizer::new(config.optimizer, vs.trainable_variables(), state.lr)
        .named(&vs)?
        .share(model.shared_parameters())?
        .with_weight_decay(regularization.weight_decay);
    let mut average =
        (regularization.ema_decay > 0.0).then(|| WeightAverage::new(&vs, regularization.ema_decay));
    let mut carried = None;
    if config.resume {
        carried = resume::weights(
            &dir,
            &mut vs,
            &mut optimizer,
            average.as_mut(),
            &model.zero_state(config.batch_size as i64),
            device,
        )?;
    }
    tracing::info!(
        "{} parameters, vocabulary {}, {} train / {} valid tokens, device {:?}",
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum::<usize>(),
        vocab.len(),
        data.train.tokens(),
        data.valid.tokens(),
        device
    );

    let start = Instant::now();
    let mut last_validation = 0.0;
    let mut committed = config.resume;
    let mut no_model_because = "--epochs is 0";
    let mut steps_left = config.max_steps;
    // With the linear schedule, --time-limit is the budget of the whole run, resumes
    // included; otherwise it is this run's.
    let seconds_before = state.seconds;
    let time_limit = match config.lr_schedule {
        LrSchedule::Linear => config.time_limit.map(|t| t - seconds_before),
        LrSchedule::Plateau => config.time_limit,
    };
    while state.epoch < config.epochs {
        let mut rng = epoch_rng(seed, state.epoch);
        let schedule = Schedule {
            config,
            epoch: state.epoch,
            start,
            deadline: time_limit.map(|limit| limit - last_validation),
            seconds_before,
        };
        let begun = EpochStart {
            batches_done: state.batches_done,
            loss_sum: state.partial_loss_sum,
            tokens: state.partial_tokens,
            seconds: state.partial_seconds,
            carried: carried.take(),
        };
        let done_before = begun.batches_done;
        let epoch_lr = schedule.rate(0.0).unwrap_or(state.lr);
        let update = Update {
            optimizer: &mut optimizer,
            average: average.as_mut(),
        };
        let epoch = match run_epoch(
            &model,
            update,
            &data.train,
            &mut rng,
            &schedule,
            begun,
            &mut steps_left,
        ) {
            Ok(epoch) => epoch,
            Err(e) if e.is::<Diverged>() => {
                let kept = if committed {
                    format!("the last checkpoint stays in {}", dir.root.display())
                } else {
                    format!("no model was written to {}", dir.root.display())
                };
                bail!("{e}; {kept}; try a lower --lr or --clip")
            }
            Err(e) => return Err(e),
        };
        if epoch.batches_done == done_before {
            no_model_because = if steps_left == Some(0) {
                "--max-steps is 0"
            } else {
                "--time-limit ran out before the first batch"
            };
            break;
        }
        let validation_start = Instant::now();
        // The averaged weights are the model that is kept, so they are the ones judged.
        let valid_loss = match average.as_mut() {
            Some(average) => {
                average.swap()?;
                let loss = validate(&model, &data.valid);
                average.swap()?;
                loss?
            }
            None => validate(&model, &data.valid)?,
        };
        last_validation = validation_start.elapsed().as_secs_f64();
        let record = EpochRecord {
            epoch: state.epoch as f64 + epoch.fraction(),
            train_loss: epoch.loss_sum / epoch.tokens as f64,
            valid_loss,
            tokens_per_s: epoch.tokens as f64 / epoch.seconds,
            seconds: epoch.seconds,
            lr: epoch_lr,
        };
        log_epoch(&record);
        history.push(record);
        let complete = epoch.complete();
        let improved = close_epoch(&mut state, &epoch, valid_loss, config);
        optimizer.set_lr(state.lr);
        if state.best_valid_loss.is_finite() {
            let mut optimizer_state = optimizer.state();
            if let Some(average) = &average {
                optimizer_state.extend(average.state());
            }
            if let (false, Some(carried)) = (complete, &epoch.carried) {
                optimizer_state.extend(resume::carried_tensors(carried));
            }
            let snapshot = Snapshot {
                config: &saved,
                vocab: &vocab,
                oov: oov.as_ref(),
                weights: &vs,
                improved,
                averaged: average.as_ref().map(WeightAverage::averaged),
                optimizer: optimizer_state,
                state: &state,
                history: &history,
            };
            dir.commit(&snapshot, !committed)?;
            committed = true;
        } else {
            no_model_because = "the valid loss was not finite in any epoch";
        }
        if config.patience > 0 && state.cuts_without_improvement >= config.patience {
            tracing::info!(
                "stopping early: {} learning-rate cuts without improvement (--patience {})",
                state.cuts_without_improvement,
                config.patience
            );
            break;
        }
        if !complete {
            let limit = if steps_left == Some(0) {
                "--max-steps"
            } else {
                "time limit"
            };
            tracing::info!(
                "{limit} reached inside epoch {}; --resume goes on from there; the best model is kept in {}",
                state.epoch + 1,
                dir.root.display()
            );
            break;
        }
        carried = None;
    }
    if !committed {
        bail!(
            "no model was written to {}: {no_model_because}",
            dir.root.display()
        );
    }
    Ok(TrainSummary {
        history,
        best_valid_loss: state.best_valid_loss,
    })
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
/// moment estimates, 16 bytes a parameter) exceeds the memory available, rather than
/// failing inside libtorch's allocator mid-epoch.
fn check_memory(model: &ModelConfig) -> Result<()> {
    let needed = model.parameter_count() * 16;
    let Some(available) = available_memory() else {
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

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u128> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn fresh_start(config: &TrainConfig) -> Result<Start> {
    let mut tokenized: Vec<Vec<String>> = Vec::new();
    for path in config.train_files() {
        let (lines, _) = read_lines(&path)?;
        tokenized.extend(lines.iter().map(|l| config.tokenizer.tokenize(l)));
    }
    let vocab = Vocab::build(&tokenized, config.vocab_limits);
    let oov_counts = OovClasses::count(&tokenized, &vocab);
    let oov = OovClasses::new(config.tokenizer.level, &vocab, oov_counts);
    let mut model = config.model.clone();
    model.vocab_size = vocab.len() as i64;
    if let OutputConfig::Class { cutoffs } = &mut model.output {
        if cutoffs.is_empty() {
            let mut counts = vec![0u64; vocab.len()];
            for sentence in &tokenized {
                for token in sentence {
                    counts[vocab.id(token) as usize] += 1;
                }
                counts[crate::vocab::EOS_ID as usize] += 1;
            }
            *cutoffs = choose_cutoffs(&counts, config.clusters);
            tracing::info!(
                "class output layer: cutoffs {cutoffs:?} (chosen from the training counts)"
            );
        }
    }
    model.check()?;
    let saved = SavedConfig {
        format: FORMAT.to_string(),
        model,
        tokenizer: config.tokenizer.clone(),
        vocab_limits: config.vocab_limits,
        training: serde_json::to_value(config)?,
    };
    let state = TrainState {
        epoch: 0,
        lr: config.lr,
        best_valid_loss: f64::INFINITY,
        seconds: 0.0,
        cuts_without_improvement: 0,
        seed: Some(config.seed),
        ..Default::default()
    };
    Ok(Start {
        saved,
        vocab,
        oov: Some(oov),
        state,
        history: Vec::new(),
    })
}

fn resume_start(dir: &ModelDir) -> Result<Start> {
    let (saved, vocab) = dir.load_header().context("--resume")?;
    let state = dir.load_state().context("--resume")?;
    let history = read_metrics(&dir.metrics()).context("--resume")?;
    let oov = match dir.oov().exists() {
        true => Some(OovClasses::load(&dir.oov(), saved.tokenizer.level, &vocab)?),
        false => None,
    };
    Ok(Start {
        saved,
        vocab,
        oov,
        state,
        history,
    })
}

fn load_data(config: &TrainConfig, tokenizer: &Tokenizer, vocab: &Vocab) -> Result<Data> {
    let mut train = Corpus::default();
    for (index, path) in config.train_files().iter().enumerate() {
        let corpus = Corpus::load(path, tokenizer, vocab)?;
        check_and_log(path, &corpus)?;
        let weight = config.train_weight(index);
        let corpus = corpus.weighted(weight, config.seed.wrapping_add(index as u64));
        if weight != 1.0 {
            tracing::info!(
                "{}: weight {weight}: {} sentences per epoch",
                path.display(),
                corpus.sentences.len()
            );
        }
        train.extend(corpus);
    }
    let valid_path = config.valid_file();
    let valid = Corpus::load(&valid_path, tokenizer, vocab)?;
    check_and_log(&valid_path, &valid)?;
    Ok(Data { train, valid })
}

/// Refuses a file with no sentences and logs what it holds.
fn check_and_log(path: &Path, corpus: &Corpus) -> Result<()> {
    if corpus.sentences.is_empty() {
        bail!("{}: no sentences", path.display());
    }
    tracing::info!(
        "{}: {} sentences, {} tokens, {} <UNK>, {} empty lines skipped",
        path.display(),
        corpus.sentences.len(),
        corpus.tokens(),
        corpus.oov_count,
        corpus.empty_lines
    );
    Ok(())
}

/// Validation loss in nats per token, every sentence from the zero state as `eval`
/// and `score` read it, whatever layout training uses: the epoch kept is the one
/// that is best the way the model is used.
fn validate(model: &RnnLm, corpus: &Corpus) -> Result<f64> {
    Ok(evaluate(model, corpus, SCORE_BATCH, &OovScorer::closed())?.nats_per_token)
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
