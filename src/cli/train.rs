//! `rnnlm train`.

use super::args::{DeviceArgs, TokenizerArgs};
use super::values::{decay, dropout_rate, non_negative, positive, positive_number, weighted_path};
use anyhow::{bail, Result};
use clap::Args;
use rnnlm::distributed::{Launch, World};
use rnnlm::model::{Cell, ModelConfig, MAX_LAYERS, MAX_WIDTH};
use rnnlm::output::OutputConfig;
use rnnlm::regularize::Regularization;
use rnnlm::train::{LrSchedule, OptimizerKind, TrainConfig};
use rnnlm::vocab::{Level, Tokenizer, VocabLimits};
use std::path::PathBuf;

/// The output layer `train` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SoftmaxKind {
    /// A softmax over the whole vocabulary.
    Full,
    /// A head of frequent words and clusters of rarer ones.
    Class,
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Directory with train.txt and valid.txt, one sequence per line.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// More training text beside DIR/train.txt, one sequence per line (repeatable):
    /// trained on and counted for the vocabulary, while validation stays DIR/valid.txt
    /// (or --valid). FILE:WEIGHT trains on it WEIGHT times per epoch (2: twice; 0.5: a
    /// seeded half of its sentences).
    #[arg(long, value_name = "FILE[:WEIGHT]", value_parser = weighted_path)]
    pub(crate) extra_train: Vec<(PathBuf, f64)>,
    /// Validate on this file instead of DIR/valid.txt, one sequence per line.
    #[arg(long, value_name = "FILE")]
    pub(crate) valid: Option<PathBuf>,
    /// Model directory to write.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) tokenizer: TokenizerArgs,
    /// Recurrent cell.
    #[arg(long, value_enum, default_value_t = defaults().model.cell)]
    pub(crate) cell: Cell,
    /// Embedding size.
    #[arg(long, default_value_t = defaults().model.embed, value_parser = clap::value_parser!(i64).range(1..=MAX_WIDTH))]
    pub(crate) embed: i64,
    /// Hidden units per layer.
    #[arg(long, default_value_t = defaults().model.hidden, value_parser = clap::value_parser!(i64).range(1..=MAX_WIDTH))]
    pub(crate) hidden: i64,
    /// Recurrent layers.
    #[arg(long, default_value_t = defaults().model.layers, value_parser = clap::value_parser!(i64).range(1..=MAX_LAYERS))]
    pub(crate) layers: i64,
    /// Dropout on embeddings, between layers and before the output layer.
    #[arg(long, default_value_t = defaults().model.dropout, value_parser = dropout_rate)]
    pub(crate) dropout: f64,
    /// Tie the output matrix to the embedding matrix (needs --embed = --hidden).
    #[arg(long)]
    pub(crate) tie: bool,
    /// Output layer: full (softmax over the vocabulary) or class (an exactly normalized
    /// head of frequent words plus clusters of rarer ones, several times faster).
    #[arg(long, value_enum, default_value = "full")]
    pub(crate) softmax: SoftmaxKind,
    /// With --softmax class: vocabulary ranks where the head ends and each further
    /// cluster begins, e.g. 400,4200 [default: chosen from the training counts].
    #[arg(long, value_delimiter = ',')]
    pub(crate) cutoffs: Vec<i64>,
    /// With --softmax class and no --cutoffs: the number of clusters.
    #[arg(long, default_value_t = defaults().clusters, value_parser = positive)]
    pub(crate) clusters: usize,
    /// Stop after this many learning-rate cuts in a row without a better valid loss (0: never).
    #[arg(long, default_value_t = defaults().patience)]
    pub(crate) patience: usize,
    /// Sentences per batch (rows per batch with --stream).
    #[arg(long, default_value_t = defaults().batch_size, value_parser = positive)]
    pub(crate) batch_size: usize,
    /// Batches whose gradients are summed before each step, per rank: a step then takes
    /// ranks × N batches, with the update of one batch of all their sentences.
    #[arg(long, default_value_t = defaults().accumulate, value_parser = positive)]
    pub(crate) accumulate: usize,
    /// Under torchrun (WORLD_SIZE > 1): seconds a rank waits for the others before it
    /// fails, naming itself (a rank that died or hangs).
    #[arg(long, default_value_t = 300.0, value_parser = positive_number)]
    pub(crate) dist_timeout: f64,
    /// Read the data as one token stream with truncated BPTT instead of sentence by sentence.
    #[arg(long)]
    pub(crate) stream: bool,
    /// Steps per truncated-BPTT chunk with --stream.
    #[arg(long, default_value_t = defaults().bptt, value_parser = positive)]
    pub(crate) bptt: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = defaults().optimizer)]
    pub(crate) optimizer: OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = defaults().lr, value_parser = positive_number)]
    pub(crate) lr: f64,
    /// Multiply the learning rate by this when the valid loss does not improve.
    #[arg(long, default_value_t = defaults().lr_decay, value_parser = decay)]
    pub(crate) lr_decay: f64,
    /// Learning-rate schedule: plateau (decay when valid loss stalls) or linear (to zero
    /// over --time-limit or --epochs).
    #[arg(long, value_enum, default_value_t = defaults().lr_schedule)]
    pub(crate) lr_schedule: LrSchedule,
    /// With --lr-schedule linear: hold the rate, then let it fall to zero over this last
    /// share of the budget (a cooldown; 1: fall over the whole budget).
    #[arg(long, default_value_t = defaults().lr_cooldown, value_parser = decay)]
    pub(crate) lr_cooldown: f64,
    /// Clip the gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = defaults().clip, value_parser = non_negative)]
    pub(crate) clip: f64,
    /// Draw --dropout's masks once per sequence, the same at every time step
    /// (variational, "locked" dropout), instead of once per element.
    #[arg(long)]
    pub(crate) locked_dropout: bool,
    /// Drop whole word types from the embedding with this probability, one draw per
    /// type and batch (every occurrence at once).
    #[arg(long, default_value_t = 0.0, value_parser = dropout_rate)]
    pub(crate) embed_dropout: f64,
    /// DropConnect on the recurrent weights W_hh with this probability, one mask per batch.
    #[arg(long, default_value_t = 0.0, value_parser = dropout_rate)]
    pub(crate) weight_drop: f64,
    /// Activation regularization: add this times the mean squared top-layer output.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub(crate) ar: f64,
    /// Temporal activation regularization: add this times the mean squared change of
    /// the top-layer output from one step to the next.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub(crate) tar: f64,
    /// Decoupled weight decay (AdamW): each step shrinks the weights by lr times this.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub(crate) weight_decay: f64,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999;
    /// 0: none); validation and the saved model use the average.
    #[arg(long, default_value_t = 0.0, value_parser = dropout_rate)]
    pub(crate) ema_decay: f64,
    /// Epochs (in all, when resuming).
    #[arg(long, default_value_t = defaults().epochs, value_parser = positive)]
    pub(crate) epochs: usize,
    /// Stop at the first batch boundary after this many seconds, keeping the best model
    /// (with --lr-schedule linear: the whole run's budget, resumes included).
    #[arg(long, value_parser = positive_number)]
    pub(crate) time_limit: Option<f64>,
    /// Stop this run after this many optimizer steps, inside an epoch if need be;
    /// --resume goes on from that step exactly.
    #[arg(long, value_parser = positive)]
    pub(crate) max_steps: Option<usize>,
    /// Seed for initialization, dropout and shuffling.
    #[arg(long, default_value_t = defaults().seed)]
    pub(crate) seed: u64,
    /// Continue training the model in --out, with the run's own settings; its
    /// --extra-train files and --valid file unless others are given.
    #[arg(long, conflicts_with = "force")]
    pub(crate) resume: bool,
    /// Replace the model already in --out (it stays until the new run's first checkpoint).
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

/// The training flags that define a run, by argument id: given on the command line
/// with `--resume`, each must agree with the run.
pub(crate) const RUN_FLAGS: [(&str, &str); 39] = [
    ("patience", "--patience"),
    ("seed", "--seed"),
    ("clusters", "--clusters"),
    ("softmax", "--softmax"),
    ("cutoffs", "--cutoffs"),
    ("level", "--level"),
    ("lowercase", "--lowercase"),
    ("split_punct", "--split-punct"),
    ("drop_punct", "--drop-punct"),
    ("split_hyphens", "--split-hyphens"),
    ("recognizer_form", "--recognizer-form"),
    ("reverse", "--reverse"),
    ("min_count", "--min-count"),
    ("max_size", "--max-size"),
    ("optimizer", "--optimizer"),
    ("batch_size", "--batch-size"),
    ("accumulate", "--accumulate"),
    ("clip", "--clip"),
    ("stream", "--stream"),
    ("bptt", "--bptt"),
    ("lr_schedule", "--lr-schedule"),
    ("lr_cooldown", "--lr-cooldown"),
    ("lr", "--lr"),
    ("lr_decay", "--lr-decay"),
    ("epochs", "--epochs"),
    ("time_limit", "--time-limit"),
    ("cell", "--cell"),
    ("embed", "--embed"),
    ("hidden", "--hidden"),
    ("layers", "--layers"),
    ("dropout", "--dropout"),
    ("tie", "--tie"),
    ("locked_dropout", "--locked-dropout"),
    ("embed_dropout", "--embed-dropout"),
    ("weight_drop", "--weight-drop"),
    ("ar", "--ar"),
    ("tar", "--tar"),
    ("weight_decay", "--weight-decay"),
    ("ema_decay", "--ema-decay"),
];

/// The run-defining flags given on the command line.
pub(crate) fn given_flags(matches: Option<&clap::ArgMatches>) -> Vec<String> {
    let Some(matches) = matches else {
        return Vec::new();
    };
    RUN_FLAGS
        .iter()
        .filter(|(id, _)| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(|(_, flag)| flag.to_string())
        .collect()
}

/// `--cutoffs` and `--clusters` shape a class layer only: given where they would be
/// ignored, they are refused rather than silently dropped.
fn check_output_flags(args: &TrainArgs, matches: Option<&clap::ArgMatches>) -> Result<()> {
    let clusters_given = matches.is_some_and(|m| {
        m.value_source("clusters") == Some(clap::parser::ValueSource::CommandLine)
    });
    if args.softmax == SoftmaxKind::Full {
        if !args.cutoffs.is_empty() {
            bail!("--cutoffs shapes a class output layer: add --softmax class, or drop --cutoffs");
        }
        if clusters_given {
            bail!(
                "--clusters shapes a class output layer: add --softmax class, or drop --clusters"
            );
        }
    } else if clusters_given && !args.cutoffs.is_empty() {
        bail!("--clusters and --cutoffs both set the clusters: give one of them");
    }
    Ok(())
}

pub(crate) fn run(args: TrainArgs, matches: Option<&clap::ArgMatches>) -> Result<()> {
    // Training only: scoring streams, and there a heap that never shrinks would grow
    // with the fragments of batches of every length.
    super::malloc::keep_freed_memory();
    check_output_flags(&args, matches)?;
    let timeout = std::time::Duration::from_secs_f64(args.dist_timeout);
    let launch = Launch::from_vars(|name| std::env::var(name).ok())?;
    // The device before the rendezvous, so a missing GPU fails at once.
    let device = match &launch {
        None => args.device.resolve()?,
        Some(launch) => args.device.resolve_for_local_rank(launch.local_rank)?,
    };
    let mut world = match &launch {
        None => World::single(),
        Some(launch) => World::join(launch, timeout)?,
    };
    if let (true, tch::Device::Cuda(index)) = (world.size() > 1, device) {
        world.use_cuda(index)?;
    }
    let mut config = train_config(args, matches);
    resume_after_restart(&mut config);
    let summary = rnnlm::train::train_on(&config, device, &world)?;
    let best = summary.best_valid_loss;
    tracing::info!(
        "best valid loss {best:.4} nats/token, perplexity {:.2}, {:.4} bits/token; model in {}",
        best.exp(),
        best / std::f64::consts::LN_2,
        config.out.display()
    );
    Ok(())
}

/// Under `torchrun --max-restarts`, a restarted worker goes on from the run's last
/// checkpoint: the run's own directory, written before a rank died.
fn resume_after_restart(config: &mut TrainConfig) {
    let restarts = std::env::var("TORCHELASTIC_RESTART_COUNT")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if restarts > 0 && !config.resume && config.out.join("state.json").exists() {
        tracing::info!(
            "restart {restarts}: resuming {} from its last checkpoint",
            config.out.display()
        );
        config.resume = true;
        config.force = false;
    }
}

/// The library's settings from the command line's.
fn train_config(args: TrainArgs, matches: Option<&clap::ArgMatches>) -> TrainConfig {
    let t = &args.tokenizer;
    TrainConfig {
        data: args.data,
        extra_train: args.extra_train.iter().map(|(p, _)| p.clone()).collect(),
        extra_train_weights: if args.extra_train.iter().all(|(_, w)| *w == 1.0) {
            Vec::new()
        } else {
            args.extra_train.iter().map(|(_, w)| *w).collect()
        },
        valid: args.valid,
        out: args.out,
        tokenizer: tokenizer_of(t),
        vocab_limits: vocab_limits_of(t),
        model: ModelConfig {
            cell: args.cell,
            vocab_size: 0,
            embed: args.embed,
            hidden: args.hidden,
            layers: args.layers,
            dropout: args.dropout,
            tie: args.tie,
            output: match args.softmax {
                SoftmaxKind::Full => OutputConfig::Full,
                SoftmaxKind::Class => OutputConfig::Class {
                    cutoffs: args.cutoffs,
                },
            },
        },
        clusters: args.clusters,
        patience: args.patience,
        batch_size: args.batch_size,
        accumulate: args.accumulate,
        stream: args.stream,
        bptt: args.bptt,
        optimizer: args.optimizer,
        lr: args.lr,
        lr_decay: args.lr_decay,
        lr_schedule: args.lr_schedule,
        lr_cooldown: args.lr_cooldown,
        clip: args.clip,
        regularization: Regularization {
            locked_dropout: args.locked_dropout,
            embed_dropout: args.embed_dropout,
            weight_drop: args.weight_drop,
            ar: args.ar,
            tar: args.tar,
            weight_decay: args.weight_decay,
            ema_decay: args.ema_decay,
        },
        epochs: args.epochs,
        time_limit: args.time_limit,
        max_steps: args.max_steps,
        seed: args.seed,
        resume: args.resume,
        force: args.force,
        given: given_flags(matches),
    }
}

/// The tokenizer the flags ask for; `--recognizer-form` is three of them at once.
fn tokenizer_of(t: &TokenizerArgs) -> Tokenizer {
    Tokenizer {
        level: t.level,
        lowercase: t.lowercase || t.recognizer_form,
        split_punct: t.split_punct,
        drop_punct: t.drop_punct || t.recognizer_form,
        split_hyphens: t.split_hyphens || t.recognizer_form,
        reverse: t.reverse,
    }
}

/// The vocabulary's limits; `--min-count` defaults by level.
fn vocab_limits_of(t: &TokenizerArgs) -> VocabLimits {
    VocabLimits {
        min_count: t.min_count.unwrap_or(if t.level == Level::Word {
            defaults().vocab_limits.min_count
        } else {
            1
        }),
        max_size: t.max_size,
    }
}

/// The library's defaults, which the flags show and take.
fn defaults() -> TrainConfig {
    TrainConfig::default()
}
