//! A tiny model directory for the fuzz targets, made once per process.

use rnnlm::checkpoint::{ModelDir, SavedConfig, Snapshot, TrainState, FORMAT};
use rnnlm::model::{Cell, ModelConfig, RnnLm};
use rnnlm::oov::OovClasses;
use rnnlm::output::OutputConfig;
use rnnlm::vocab::{Level, Tokenizer, Vocab, VocabLimits};
use std::path::{Path, PathBuf};

/// Writes a small class-layer model with an `oov_counts.tsv` into `dir/model`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let text = ["the apple and pear salad", "a pair of shoes", "we ate the salad ."];
    let tokenized: Vec<Vec<String>> = text
        .iter()
        .map(|s| s.split(' ').map(String::from).collect())
        .collect();
    let limits = VocabLimits {
        min_count: 1,
        max_size: Some(8),
    };
    let vocab = Vocab::build(&tokenized, limits);
    let oov = OovClasses::new(Level::Word, &vocab, OovClasses::count(&tokenized, &vocab));
    let model = ModelConfig {
        cell: Cell::Gru,
        vocab_size: vocab.len() as i64,
        embed: 4,
        hidden: 4,
        layers: 1,
        dropout: 0.0,
        tie: true,
        output: OutputConfig::Class { cutoffs: vec![4] },
    };
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ = RnnLm::new(&vs.root(), &model);
    let saved = SavedConfig {
        format: FORMAT.to_string(),
        model,
        tokenizer: Tokenizer::new(Level::Word),
        vocab_limits: limits,
        training: serde_json::Value::Null,
    };
    let state = TrainState {
        epoch: 1,
        lr: 0.1,
        best_valid_loss: 1.0,
        seconds: 0.0,
        cuts_without_improvement: 0,
        seed: Some(1),
        ..Default::default()
    };
    let out = dir.join("model");
    let snapshot = Snapshot {
        config: &saved,
        vocab: &vocab,
        oov: Some(&oov),
        weights: &vs,
        improved: true,
        averaged: None,
        optimizer: Vec::new(),
        state: &state,
        history: &[],
    };
    ModelDir::new(&out).commit(&snapshot, true).expect("write the tiny model");
    out
}
