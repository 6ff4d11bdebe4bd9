//! A tiny corpus and training configuration, for the library-level training tests.

use rnnlm::model::{Cell, ModelConfig};
use rnnlm::train::{LrSchedule, OptimizerKind, TrainConfig};
use rnnlm::vocab::{Level, Tokenizer, VocabLimits};
use std::path::Path;

/// Writes `train.txt` and `valid.txt` into `dir`.
pub fn corpus_dir(dir: &Path, train: &[&str], valid: &[&str]) {
    std::fs::write(dir.join("train.txt"), train.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("valid.txt"), valid.join("\n") + "\n").unwrap();
}

/// A small tied model of `cell`, Adam, plateau decay, no patience, seed 7.
pub fn config(dir: &Path, cell: Cell, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: dir.to_path_buf(),
        extra_train: Vec::new(),
        extra_train_weights: Vec::new(),
        valid: None,
        out: dir.join("model"),
        tokenizer: Tokenizer::new(Level::Word),
        vocab_limits: VocabLimits {
            min_count: 1,
            max_size: None,
        },
        model: ModelConfig {
            cell,
            vocab_size: 0,
            embed: 24,
            hidden: 24,
            layers: 1,
            dropout: 0.0,
            tie: true,
            output: Default::default(),
        },
        batch_size: 3,
        accumulate: 1,
        stream: false,
        bptt: 8,
        optimizer: OptimizerKind::Adam,
        lr: 0.02,
        lr_decay: 0.5,
        lr_schedule: LrSchedule::Plateau,
        lr_cooldown: 1.0,
        clip: 5.0,
        regularization: Default::default(),
        clusters: 2,
        patience: 0,
        epochs,
        time_limit: None,
        max_steps: None,
        seed: 7,
        resume: false,
        force: false,
        given: Vec::new(),
    }
}

/// Three sentences with no words in common at the same positions.
pub const THREE: [&str; 3] = [
    "the cat sat on the mat today",
    "a dog ran in the park at noon",
    "my bird sang a song all day",
];
