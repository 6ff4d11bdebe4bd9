//! What `rnnlm train` takes, and its defaults.

use crate::model::{Cell, ModelConfig};
use crate::optim::OptimizerKind;
use crate::output::OutputConfig;
use crate::regularize::Regularization;
use crate::vocab::{Level, Tokenizer, VocabLimits};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the learning rate moves during training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum LrSchedule {
    /// Constant, multiplied by `lr_decay` after each epoch whose valid loss does not improve.
    Plateau,
    /// Falls linearly from `lr` to zero over the run's budget: `--time-limit` when given
    /// (whichever of time and epochs runs out first), else `--epochs`. Best when the
    /// budget, not convergence, ends training.
    Linear,
}

crate::names::named_enum!(LrSchedule {
    Plateau => "plateau",
    Linear => "linear",
});

/// Everything `rnnlm train` takes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Directory with train.txt and valid.txt.
    pub data: PathBuf,
    /// More training text beside `data/train.txt`, one sequence per line: its sequences
    /// are trained on and its tokens counted for the vocabulary, while validation stays
    /// `data/valid.txt` or `valid` (in-domain text there, a larger general corpus here).
    #[serde(default)]
    pub extra_train: Vec<PathBuf>,
    /// How many times each `extra_train` file is trained on per epoch, in the same
    /// order (`--extra-train FILE:WEIGHT`); a missing weight is 1. A whole weight
    /// repeats the file; a fraction takes that share of its sentences, a seeded draw
    /// made once per run.
    #[serde(default)]
    pub extra_train_weights: Vec<f64>,
    /// The validation text instead of `data/valid.txt` (for instance the held-out part of
    /// an in-domain corpus whose rest is trained on).
    #[serde(default)]
    pub valid: Option<PathBuf>,
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
    /// Batches each process sums the gradients of before one optimizer step: with R
    /// processes a step takes R × this many batches, and its update is the one a
    /// single batch of all their sentences would give (the loss is per token).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub accumulate: usize,
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
    /// With the linear schedule: the last share of the budget over which the rate falls
    /// to zero, constant before it (1: over the whole budget).
    #[serde(default = "whole_budget")]
    pub lr_cooldown: f64,
    /// Maximum gradient norm (0 = no clipping).
    pub clip: f64,
    /// Training-time regularizers and weight averaging (all off by default).
    #[serde(default)]
    pub regularization: Regularization,
    /// With a class output layer and no cutoffs in `model.output`: how many clusters,
    /// the cutoffs then chosen from the training counts.
    pub clusters: usize,
    /// Stop after this many learning-rate cuts in a row without improvement (0: never).
    pub patience: usize,
    /// Total epochs (counting those of a resumed run).
    pub epochs: usize,
    /// Wall-clock budget in seconds, the last validation included: this run's, or with
    /// the linear schedule the whole run's across resumes.
    pub time_limit: Option<f64>,
    /// Stop this run after this many optimizer steps, inside an epoch if need be, as a
    /// time limit does; `--resume` goes on from that step.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Seed for initialization, dropout and shuffling.
    pub seed: u64,
    /// Continue the model in `out`.
    pub resume: bool,
    /// Replace the model in `out` (at the new run's first checkpoint).
    #[serde(default)]
    pub force: bool,
    /// The settings given explicitly, as flags (`--batch-size`). On `--resume` every
    /// other setting is the run's, and one given that disagrees with the run is refused;
    /// under the plateau schedule `--epochs` and `--patience` given anew lengthen or
    /// shorten the run instead.
    #[serde(skip)]
    pub given: Vec<String>,
}

/// The defaults of `rnnlm train` (the command line reads them from here): a 2-layer
/// LSTM of 256 units with dropout 0.3 and a full softmax, Adam at 0.002 in batches of
/// 32 sentences, clipping at 1, halving the rate when the valid loss stalls, 10 epochs
/// with patience 3, seed 1, Bengio et al.'s min count 4 for words.
impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::new(),
            extra_train: Vec::new(),
            extra_train_weights: Vec::new(),
            valid: None,
            out: PathBuf::new(),
            tokenizer: Tokenizer::new(Level::Word),
            vocab_limits: VocabLimits {
                min_count: 4,
                max_size: None,
            },
            model: ModelConfig {
                cell: Cell::Lstm,
                vocab_size: 0,
                embed: 256,
                hidden: 256,
                layers: 2,
                dropout: 0.3,
                tie: false,
                output: OutputConfig::Full,
            },
            batch_size: 32,
            accumulate: 1,
            stream: false,
            bptt: 35,
            optimizer: OptimizerKind::Adam,
            lr: 0.002,
            lr_decay: 0.5,
            lr_schedule: LrSchedule::Plateau,
            lr_cooldown: 1.0,
            clip: 1.0,
            regularization: Regularization::default(),
            clusters: 3,
            patience: 3,
            epochs: 10,
            time_limit: None,
            max_steps: None,
            seed: 1,
            resume: false,
            force: false,
            given: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// The files trained on: `data/train.txt`, then each `extra_train` file in order.
    pub fn train_files(&self) -> Vec<PathBuf> {
        std::iter::once(self.data.join("train.txt"))
            .chain(self.extra_train.iter().cloned())
            .collect()
    }

    /// How many times the `index`-th of [`TrainConfig::train_files`] is trained on per
    /// epoch: 1 for `data/train.txt`, the file's weight for an extra one.
    pub fn train_weight(&self, index: usize) -> f64 {
        match index {
            0 => 1.0,
            i => self.extra_train_weights.get(i - 1).copied().unwrap_or(1.0),
        }
    }

    /// The file validated on: `valid`, or else `data/valid.txt`.
    pub fn valid_file(&self) -> PathBuf {
        self.valid
            .clone()
            .unwrap_or_else(|| self.data.join("valid.txt"))
    }
}

fn one() -> usize {
    1
}

/// `accumulate` is left out of `config.json` at 1, so a single-batch run writes what
/// it wrote before the setting existed.
fn is_one(value: &usize) -> bool {
    *value == 1
}

/// A run saved before `lr_cooldown` existed fell over its whole budget.
fn whole_budget() -> f64 {
    1.0
}
