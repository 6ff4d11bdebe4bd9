//! Training: the loss falls, a tiny corpus is learned, checkpoints round-trip, runs resume
//! and reproduce.

use rnnlm::checkpoint::ModelDir;
use rnnlm::data::Corpus;
use rnnlm::model::{Cell, ModelConfig};
use rnnlm::oov::OovScorer;
use rnnlm::output::OutputConfig;
use rnnlm::score::{evaluate, token_log_probs};
use rnnlm::train::{train, LrSchedule, OptimizerKind, TrainConfig};
use rnnlm::vocab::{Level, Tokenizer, VocabLimits};
use std::path::Path;
use tch::Device;

fn corpus_dir(dir: &Path, train: &[&str], valid: &[&str]) {
    std::fs::write(dir.join("train.txt"), train.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("valid.txt"), valid.join("\n") + "\n").unwrap();
}

fn config(dir: &Path, cell: Cell, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: dir.to_path_buf(),
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
        stream: false,
        bptt: 8,
        optimizer: OptimizerKind::Adam,
        lr: 0.02,
        lr_decay: 0.5,
        lr_schedule: LrSchedule::Plateau,
        clip: 5.0,
        clusters: 2,
        patience: 0,
        epochs,
        time_limit: None,
        seed: 7,
        resume: false,
    }
}

const THREE: [&str; 3] = [
    "the cat sat on the mat today",
    "a dog ran in the park at noon",
    "my bird sang a song all day",
];

#[test]
fn three_sentences_are_learned_to_the_entropy_floor() {
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        let dir = tempfile::tempdir().unwrap();
        corpus_dir(dir.path(), &THREE, &THREE);
        let summary = train(&config(dir.path(), cell, 80), Device::Cpu).unwrap();
        let first = summary.history[0].train_loss;
        assert!(
            summary.history[3].train_loss < first,
            "{cell:?}: the loss falls over the first steps"
        );
        // Each sentence starts from the zero state, so its first word is a 1-in-3 guess:
        // the least possible loss is ln 3 per sentence, spread over its tokens.
        let tokens: usize = THREE.iter().map(|s| s.split(' ').count() + 1).sum();
        let floor = 3.0 * 3f64.ln() / tokens as f64;
        assert!(
            summary.best_valid_loss < floor + 0.05,
            "{cell:?}: {} vs floor {floor}",
            summary.best_valid_loss
        );
    }
}

#[test]
fn checkpoint_round_trip_gives_identical_log_probs() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE[..2]);
    let mut cfg = config(dir.path(), Cell::Lstm, 4);
    cfg.model.layers = 2;
    train(&cfg, Device::Cpu).unwrap();
    let loaded = ModelDir::new(&cfg.out).load(Device::Cpu).unwrap();
    let corpus = Corpus::load(
        &dir.path().join("valid.txt"),
        &loaded.config.tokenizer,
        &loaded.vocab,
    )
    .unwrap();
    let a = token_log_probs(&loaded.model, &corpus.sentences, 2).unwrap();
    let again = ModelDir::new(&cfg.out).load(Device::Cpu).unwrap();
    let b = token_log_probs(&again.model, &corpus.sentences, 2).unwrap();
    assert_eq!(a, b);
    let saved = evaluate(&loaded.model, &corpus, 4, &OovScorer::closed()).unwrap();
    let state = ModelDir::new(&cfg.out).load_state().unwrap();
    assert!(
        (saved.nats_per_token - state.best_valid_loss).abs() < 1e-5,
        "the saved weights are the best epoch's"
    );
}

#[test]
fn resume_continues_where_training_stopped() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Rnn, 2);
    train(&cfg, Device::Cpu).unwrap();
    cfg.epochs = 5;
    cfg.resume = true;
    let summary = train(&cfg, Device::Cpu).unwrap();
    assert_eq!(
        summary.history.len(),
        5,
        "two earlier epochs and three new ones"
    );
    let epochs: Vec<f64> = summary.history.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert!(
        summary.history[2].train_loss < summary.history[0].train_loss,
        "the resumed run starts from the trained weights"
    );
    assert_eq!(ModelDir::new(&cfg.out).load_state().unwrap().epoch, 5);
}

#[test]
fn stream_mode_trains_with_truncated_bptt() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Lstm, 30);
    cfg.stream = true;
    cfg.batch_size = 2;
    let summary = train(&cfg, Device::Cpu).unwrap();
    assert!(
        summary.best_valid_loss < 0.5 * summary.history[0].valid_loss,
        "{:?}",
        summary.history
    );
}

#[test]
fn time_limit_stops_and_records_a_partial_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<&str> = THREE.iter().cycle().take(3000).copied().collect();
    corpus_dir(dir.path(), &many, &THREE);
    let mut cfg = config(dir.path(), Cell::Lstm, 50);
    cfg.batch_size = 1;
    cfg.time_limit = Some(1.0);
    let summary = train(&cfg, Device::Cpu).unwrap();
    let last = summary.history.last().unwrap();
    assert!(
        last.epoch < 1.0 && last.epoch > 0.0,
        "stopped inside the first epoch: {}",
        last.epoch
    );
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    assert!(cfg.out.join("weights.safetensors").exists());
}

#[test]
fn linear_schedule_falls_to_zero_over_the_epochs() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Gru, 4);
    cfg.lr_schedule = LrSchedule::Linear;
    let summary = train(&cfg, Device::Cpu).unwrap();
    let rates: Vec<f64> = summary.history.iter().map(|r| r.lr).collect();
    let expected = [0.02, 0.015, 0.01, 0.005];
    for (rate, want) in rates.iter().zip(expected) {
        assert!((rate - want).abs() < 1e-9, "{rates:?}");
    }
}

#[test]
fn a_class_model_learns_and_its_directory_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Lstm, 60);
    cfg.model.output = OutputConfig::Class {
        cutoffs: Vec::new(),
    };
    cfg.clusters = 2;
    let summary = train(&cfg, Device::Cpu).unwrap();
    let tokens: usize = THREE.iter().map(|s| s.split(' ').count() + 1).sum();
    let floor = 3.0 * 3f64.ln() / tokens as f64;
    assert!(
        summary.best_valid_loss < floor + 0.1,
        "{} vs floor {floor}",
        summary.best_valid_loss
    );
    let loaded = ModelDir::new(&cfg.out).load(Device::Cpu).unwrap();
    let OutputConfig::Class { cutoffs } = &loaded.config.model.output else {
        panic!("saved as {:?}", loaded.config.model.output);
    };
    assert_eq!(
        cutoffs.len(),
        2,
        "cutoffs chosen from the counts: {cutoffs:?}"
    );
    let corpus = Corpus::load(
        &dir.path().join("valid.txt"),
        &loaded.config.tokenizer,
        &loaded.vocab,
    )
    .unwrap();
    let saved = evaluate(&loaded.model, &corpus, 4, &OovScorer::closed()).unwrap();
    assert!((saved.nats_per_token - summary.best_valid_loss).abs() < 1e-5);
}

#[test]
fn a_config_without_an_output_layer_loads_as_a_full_softmax() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let cfg = config(dir.path(), Cell::Gru, 2);
    train(&cfg, Device::Cpu).unwrap();
    let path = cfg.out.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let before = json["model"]["output"].clone();
    assert_eq!(before["kind"], "full");
    json["model"].as_object_mut().unwrap().remove("output");
    std::fs::write(&path, json.to_string()).unwrap();
    let loaded = ModelDir::new(&cfg.out).load(Device::Cpu).unwrap();
    assert_eq!(loaded.config.model.output, OutputConfig::Full);
}

#[test]
fn patience_stops_after_that_many_cuts_without_improvement() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Rnn, 200);
    // A rate this high overshoots, so the valid loss soon stops improving.
    cfg.lr = 0.5;
    cfg.clip = 0.0;
    cfg.patience = 2;
    let summary = train(&cfg, Device::Cpu).unwrap();
    assert!(summary.history.len() < 200, "stopped early");
    let state = ModelDir::new(&cfg.out).load_state().unwrap();
    assert_eq!(state.cuts_without_improvement, 2);
    // The last two epochs did not improve on the best.
    let n = summary.history.len();
    for record in &summary.history[n - 2..] {
        assert!(record.valid_loss >= summary.best_valid_loss);
    }
}
