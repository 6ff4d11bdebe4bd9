//! Training by backpropagation through time.
//!
//! The loss of a sentence is Σ_t −log `ŷ<t>[y<t>]`; a step minimizes its mean per token
//! over the batch (the same minimizer, a learning rate that does not depend on
//! sentence length). Sentence mode starts every line from `a<0>` = 0; stream mode reads
//! the file as one token stream and backpropagates through `bptt` steps at a time,
//! carrying the state forward detached.

use crate::checkpoint::{write_atomic, ModelDir, SavedConfig, TrainState, FORMAT};
use crate::data::{length_batches, Corpus, SentenceBatch, TokenStream};
use crate::model::{ModelConfig, RnnLm};
use crate::oov::{OovClasses, OovScorer};
use crate::optim::Optimizer;
pub use crate::optim::OptimizerKind;
use crate::output::{choose_cutoffs, OutputConfig};
use crate::score::{evaluate, SCORE_BATCH};
use crate::vocab::{read_lines, Tokenizer, Vocab, VocabLimits};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use tch::{nn, Device, Tensor};

/// How the learning rate moves during training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Constant, multiplied by `lr_decay` after each epoch whose valid loss does not improve.
    Plateau,
    /// Falls linearly from `lr` to zero over the run's budget: `--time-limit` when given
    /// (whichever of time and epochs runs out first), else `--epochs`. Best when the
    /// budget, not convergence, ends training.
    Linear,
}

/// Everything `rnnlm train` takes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Directory with train.txt and valid.txt.
    pub data: PathBuf,
    /// Model directory to write.
    pub out: PathBuf,
    /// Tokenizer settings.
    pub tokenizer: Tokenizer,
    /// Vocabulary cut.
    pub vocab_limits: VocabLimits,
    /// Network shape; `vocab_size` is filled in from the vocabulary.
    pub model: ModelConfig,
    /// Sentences (or stream rows) per batch.
    pub batch_size: usize,
    /// Read the file as one token stream with truncated BPTT.
    pub stream: bool,
    /// Steps per truncated-BPTT chunk in stream mode.
    pub bptt: usize,
    /// Adam or SGD.
    pub optimizer: OptimizerKind,
    /// Initial learning rate.
    pub lr: f64,
    /// Factor applied to the learning rate when the valid loss does not improve.
    pub lr_decay: f64,
    /// Plateau decay or a linear fall to zero over the budget.
    pub lr_schedule: LrSchedule,
    /// Maximum gradient norm (0 = no clipping).
    pub clip: f64,
    /// With a class output layer and no cutoffs in `model.output`: how many clusters,
    /// the cutoffs then chosen from the training counts.
    pub clusters: usize,
    /// Stop after this many learning-rate cuts in a row without improvement (0: never).
    pub patience: usize,
    /// Total epochs (counting those of a resumed run).
    pub epochs: usize,
    /// Wall-clock budget in seconds for this run, the last validation included.
    pub time_limit: Option<f64>,
    /// Seed for initialization, dropout and shuffling.
    pub seed: u64,
    /// Continue the model in `out`.
    pub resume: bool,
}

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// Epochs completed (fractional when a run stopped mid-epoch).
    pub epoch: f64,
    /// Mean training loss, nats per token.
    pub train_loss: f64,
    /// Validation loss, nats per token.
    pub valid_loss: f64,
    /// Training tokens per second of training time.
    pub tokens_per_s: f64,
    /// Training seconds in this epoch.
    pub seconds: f64,
    /// Learning rate used in the epoch.
    pub lr: f64,
}

const METRICS_HEADER: &str = "epoch,train_loss,valid_loss,valid_ppl,tokens_per_s,seconds,lr";

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

/// Trains a model as `config` says and writes its directory; returns the history.
pub fn train(config: &TrainConfig, device: Device) -> Result<TrainSummary> {
    tch::manual_seed(config.seed as i64);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let dir = ModelDir::new(&config.out);
    let (saved, vocab, oov, mut state, mut history) = if config.resume {
        let (saved, vocab, state, history) = resume_header(&dir)?;
        (saved, vocab, None, state, history)
    } else {
        let (saved, vocab, oov, state) = fresh_header(config)?;
        (saved, vocab, Some(oov), state, Vec::new())
    };
    let data = load_data(config, &saved.tokenizer, &vocab)?;

    let mut vs = nn::VarStore::new(device);
    let model = RnnLm::new(&vs.root(), &saved.model);
    if config.resume {
        crate::checkpoint::load_weights(&mut vs, &dir.weights())?;
    } else if let Some(oov) = &oov {
        dir.save_header(&saved, &vocab, oov)?;
    }
    let mut optimizer = Optimizer::new(config.optimizer, vs.trainable_variables(), state.lr);
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
    while state.epoch < config.epochs {
        let deadline = config.time_limit.map(|limit| limit - last_validation);
        let schedule = Schedule {
            config,
            epoch: state.epoch,
            start,
            deadline,
        };
        let epoch_lr = schedule.rate(0.0).unwrap_or(state.lr);
        let epoch = run_epoch(&model, &mut optimizer, &data.train, &mut rng, &schedule)?;
        if epoch.tokens == 0 {
            break;
        }
        let validation_start = Instant::now();
        let valid_loss = validate(config, &model, &data.valid)?;
        last_validation = validation_start.elapsed().as_secs_f64();
        let record = EpochRecord {
            epoch: state.epoch as f64 + epoch.fraction,
            train_loss: epoch.loss_sum / epoch.tokens as f64,
            valid_loss,
            tokens_per_s: epoch.tokens as f64 / epoch.seconds,
            seconds: epoch.seconds,
            lr: epoch_lr,
        };
        log_epoch(&record);
        history.push(record);
        state.seconds += epoch.seconds;
        if epoch.fraction >= 1.0 {
            state.epoch += 1;
        }
        if valid_loss < state.best_valid_loss {
            state.best_valid_loss = valid_loss;
            state.cuts_without_improvement = 0;
            dir.save_weights(&vs, &state)?;
        } else {
            if config.lr_schedule == LrSchedule::Plateau {
                state.lr *= config.lr_decay;
                optimizer.set_lr(state.lr);
                state.cuts_without_improvement += 1;
            }
            // The state file follows even when the weights do not: the epoch and rate move on.
            write_atomic(&dir.state(), |w| {
                Ok(serde_json::to_writer_pretty(w, &state)?)
            })?;
        }
        write_metrics(&dir, &history)?;
        if let Err(e) = crate::plot::plot_losses(&dir.plot(), &history) {
            tracing::warn!("cannot draw {}: {e:#}", dir.plot().display());
        }
        if config.patience > 0 && state.cuts_without_improvement >= config.patience {
            tracing::info!(
                "stopping early: {} learning-rate cuts without improvement (--patience {})",
                state.cuts_without_improvement,
                config.patience
            );
            break;
        }
        if epoch.fraction < 1.0 {
            tracing::info!(
                "time limit reached; the best model is kept in {}",
                dir.root.display()
            );
            break;
        }
    }
    Ok(TrainSummary {
        history,
        best_valid_loss: state.best_valid_loss,
    })
}

fn fresh_header(config: &TrainConfig) -> Result<(SavedConfig, Vocab, OovClasses, TrainState)> {
    if config.model.tie && config.model.embed != config.model.hidden {
        bail!(
            "--tie needs --embed equal to --hidden (got {} and {})",
            config.model.embed,
            config.model.hidden
        );
    }
    let train_path = config.data.join("train.txt");
    let (lines, _) = read_lines(&train_path)?;
    let tokenized: Vec<Vec<String>> = lines.iter().map(|l| config.tokenizer.tokenize(l)).collect();
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
    model.output.check(model.vocab_size).context("--cutoffs")?;
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
    };
    Ok((saved, vocab, oov, state))
}

fn resume_header(dir: &ModelDir) -> Result<(SavedConfig, Vocab, TrainState, Vec<EpochRecord>)> {
    let (saved, vocab) = dir.load_header().context("--resume")?;
    let state = dir.load_state().context("--resume")?;
    let history = read_metrics(dir)?;
    tracing::info!(
        "resuming {} after epoch {} at lr {}",
        dir.root.display(),
        state.epoch,
        state.lr
    );
    Ok((saved, vocab, state, history))
}

fn load_data(config: &TrainConfig, tokenizer: &Tokenizer, vocab: &Vocab) -> Result<Data> {
    let train = Corpus::load(&config.data.join("train.txt"), tokenizer, vocab)?;
    let valid = Corpus::load(&config.data.join("valid.txt"), tokenizer, vocab)?;
    for (name, corpus) in [("train", &train), ("valid", &valid)] {
        if corpus.sentences.is_empty() {
            bail!(
                "{}: no sentences",
                config.data.join(format!("{name}.txt")).display()
            );
        }
        tracing::info!(
            "{name}.txt: {} sentences, {} tokens, {} <UNK>, {} empty lines skipped",
            corpus.sentences.len(),
            corpus.tokens(),
            corpus.unknown,
            corpus.empty_lines
        );
    }
    Ok(Data { train, valid })
}

/// The learning rate at a point of the run.
struct Schedule<'a> {
    config: &'a TrainConfig,
    /// Epochs completed before the current one.
    epoch: usize,
    start: Instant,
    /// When this run must stop, in seconds since `start`.
    deadline: Option<f64>,
}

impl Schedule<'_> {
    /// The rate for the next step, `done` being the share of the current epoch done;
    /// `None` when the schedule leaves the rate alone.
    fn rate(&self, done: f64) -> Option<f64> {
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
struct EpochStats {
    loss_sum: f64,
    tokens: usize,
    seconds: f64,
    /// Share of the epoch's batches done: below 1 when the time limit cut it short.
    fraction: f64,
}

/// One pass over the training data, stopping early at the schedule's deadline.
fn run_epoch(
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
    let mut step = |loss_sum: Tensor,
                    tokens: usize,
                    stats: &mut EpochStats,
                    lr: Option<f64>|
     -> Result<()> {
        if let Some(lr) = lr {
            optimizer.set_lr(lr);
        }
        let loss = f64::try_from(&loss_sum)?;
        optimizer.step(&(&loss_sum / tokens as f64), config.clip)?;
        let per_token = loss / tokens as f64;
        if !per_token.is_finite() || per_token > 100.0 {
            bail!(
                "training diverged (loss {per_token:.3e} nats/token); the last good model stays in {}; try a lower --lr or --clip",
                config.out.display()
            );
        }
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

/// Validation loss in nats per token, read the way training reads.
fn validate(config: &TrainConfig, model: &RnnLm, corpus: &Corpus) -> Result<f64> {
    if !config.stream {
        return Ok(evaluate(model, corpus, SCORE_BATCH, &OovScorer::closed())?.nats_per_token);
    }
    let _guard = tch::no_grad_guard();
    let stream = TokenStream::new(corpus, config.batch_size, model.device())
        .with_context(|| config.data.join("valid.txt").display().to_string())?;
    let mut state = model.zero_state(config.batch_size as i64);
    let mut total = 0.0;
    for (inputs, targets) in stream.chunks(config.bptt) {
        let (hidden, next) = model.forward(&inputs, &state, false);
        state = next;
        let width = hidden.size()[2];
        let log_probs =
            model.target_log_probs(&hidden.reshape([-1, width]), &targets.reshape([-1]));
        total -= f64::try_from(log_probs.sum(None))?;
    }
    Ok(total / stream.tokens().max(1) as f64)
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

fn write_metrics(dir: &ModelDir, history: &[EpochRecord]) -> Result<()> {
    write_atomic(&dir.metrics(), |w| {
        writeln!(w, "{METRICS_HEADER}")?;
        for r in history {
            writeln!(
                w,
                "{:.4},{:.6},{:.6},{:.4},{:.1},{:.2},{:.6e}",
                r.epoch,
                r.train_loss,
                r.valid_loss,
                r.valid_loss.exp(),
                r.tokens_per_s,
                r.seconds,
                r.lr
            )?;
        }
        Ok(())
    })
}

fn read_metrics(dir: &ModelDir) -> Result<Vec<EpochRecord>> {
    let path = dir.metrics();
    let mut reader =
        csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut history = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: row {}", path.display(), n + 2))?;
        let field = |i: usize| -> Result<f64> {
            record.get(i).and_then(|v| v.parse().ok()).with_context(|| {
                format!(
                    "{}: row {}: column {} is not a number",
                    path.display(),
                    n + 2,
                    i + 1
                )
            })
        };
        history.push(EpochRecord {
            epoch: field(0)?,
            train_loss: field(1)?,
            valid_loss: field(2)?,
            tokens_per_s: field(4)?,
            seconds: field(5)?,
            lr: field(6)?,
        });
    }
    Ok(history)
}
