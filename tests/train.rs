//! Training: the loss falls, a tiny corpus is learned, checkpoints round-trip, runs resume
//! and reproduce.

#[path = "common/torch_rng.rs"]
mod torch_rng;
use rnnlm::checkpoint::{ModelDir, SavedConfig, Snapshot, TrainState, FORMAT};
use rnnlm::data::Corpus;
use rnnlm::model::{Cell, ModelConfig, RnnLm};
use rnnlm::oov::OovScorer;
use rnnlm::output::OutputConfig;
use rnnlm::score::{evaluate, token_log_probs};
use rnnlm::train::{train, LrSchedule, OptimizerKind};
use rnnlm::vocab::{Level, Tokenizer, Vocab, VocabLimits, UNK_ID};
use tch::Device;
use torch_rng::torch_rng;

#[path = "common/training.rs"]
mod training;
use training::{config, corpus_dir, THREE};

/// The least valid loss on `THREE`: each sentence starts from the zero state, so its
/// first word is a 1-in-3 guess, ln 3 per sentence spread over its tokens.
fn three_floor() -> f64 {
    let tokens: usize = THREE.iter().map(|s| s.split(' ').count() + 1).sum();
    3.0 * 3f64.ln() / tokens as f64
}

#[test]
fn three_sentences_are_learned_to_the_entropy_floor() {
    let _rng = torch_rng();
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        let dir = tempfile::tempdir().unwrap();
        corpus_dir(dir.path(), &THREE, &THREE);
        let summary = train(&config(dir.path(), cell, 80), Device::Cpu).unwrap();
        let first = summary.history[0].train_loss;
        assert!(
            summary.history[3].train_loss < first,
            "{cell:?}: the loss falls over the first steps"
        );
        let floor = three_floor();
        assert!(
            summary.best_valid_loss < floor + 0.05,
            "{cell:?}: {} vs floor {floor}",
            summary.best_valid_loss
        );
        // Below the floor only if the inputs leak the targets: a causality check.
        assert!(
            summary.best_valid_loss > floor - 1e-4,
            "{} is below the floor {floor}",
            summary.best_valid_loss
        );
    }
}

#[test]
fn extra_training_text_is_trained_on_and_counted_in_the_vocabulary() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    // train.txt holds the first sentence, two more files the others; valid holds all three.
    corpus_dir(dir.path(), &THREE[..1], &THREE);
    let extra: Vec<_> = (1..3)
        .map(|i| {
            let path = dir.path().join(format!("extra{i}.txt"));
            std::fs::write(&path, format!("{}\n", THREE[i])).unwrap();
            path
        })
        .collect();
    let mut cfg = config(dir.path(), Cell::Lstm, 80);
    cfg.extra_train = extra;
    let summary = train(&cfg, Device::Cpu).unwrap();
    let vocab = ModelDir::new(&cfg.out).load_header().unwrap().1;
    for word in ["cat", "dog", "bird", "noon"] {
        assert_ne!(vocab.id(word), UNK_ID, "{word} is in the vocabulary");
    }
    // The three sentences learned from the three files reach the same floor as from one.
    let floor = three_floor();
    assert!(
        summary.best_valid_loss < floor + 0.05,
        "{} vs floor {floor}",
        summary.best_valid_loss
    );
    // Without the extra files the other two sentences are unknown words: far above it.
    let mut alone = config(dir.path(), Cell::Lstm, 80);
    alone.out = dir.path().join("alone");
    let alone = train(&alone, Device::Cpu).unwrap();
    assert!(
        alone.best_valid_loss > floor + 0.5,
        "{}",
        alone.best_valid_loss
    );
}

#[test]
fn valid_file_replaces_the_data_directorys_valid_text() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    // The data directory has no valid.txt: only the named file can be validated on.
    let held_out = dir.path().join("held-out.txt");
    std::fs::rename(dir.path().join("valid.txt"), &held_out).unwrap();
    let mut cfg = config(dir.path(), Cell::Lstm, 80);
    cfg.valid = Some(held_out);
    let summary = train(&cfg, Device::Cpu).unwrap();
    let floor = three_floor();
    assert!(
        summary.best_valid_loss < floor + 0.05,
        "{} vs floor {floor}",
        summary.best_valid_loss
    );
    // Without it the run stops at the missing DIR/valid.txt.
    cfg.valid = None;
    cfg.out = dir.path().join("without");
    let error = format!("{:#}", train(&cfg, Device::Cpu).unwrap_err());
    assert!(error.contains("valid.txt"), "{error}");
}

#[test]
fn checkpoint_round_trip_gives_identical_log_probs() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let tokenized: Vec<Vec<String>> = THREE
        .iter()
        .map(|s| s.split(' ').map(String::from).collect())
        .collect();
    let vocab = Vocab::build(
        &tokenized,
        VocabLimits {
            min_count: 1,
            max_size: None,
        },
    );
    let model_config = ModelConfig {
        cell: Cell::Lstm,
        vocab_size: vocab.len() as i64,
        embed: 12,
        hidden: 10,
        layers: 2,
        dropout: 0.1,
        tie: false,
        output: OutputConfig::Class {
            cutoffs: vec![6, 12],
        },
    };
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let model = RnnLm::new(&vs.root(), &model_config);
    let saved = SavedConfig {
        format: FORMAT.to_string(),
        model: model_config,
        tokenizer: Tokenizer::new(Level::Word),
        vocab_limits: VocabLimits {
            min_count: 1,
            max_size: None,
        },
        training: serde_json::Value::Null,
    };
    let state = TrainState {
        epoch: 1,
        lr: 0.1,
        best_valid_loss: 2.0,
        seconds: 1.0,
        cuts_without_improvement: 0,
        seed: Some(3),
        ..Default::default()
    };
    let out = ModelDir::new(dir.path().join("model"));
    let snapshot = Snapshot {
        config: &saved,
        vocab: &vocab,
        oov: None,
        weights: &vs,
        improved: true,
        averaged: None,
        optimizer: Vec::new(),
        state: &state,
        history: &[],
    };
    out.commit(&snapshot, true).unwrap();
    let loaded = out.load(Device::Cpu).unwrap();
    assert_eq!(loaded.config, saved);
    assert_eq!(loaded.vocab.len(), vocab.len());
    let sentences: Vec<Vec<i64>> = tokenized.iter().map(|t| vocab.encode(t).0).collect();
    let before = token_log_probs(&model, &sentences, 2).unwrap();
    let after = token_log_probs(&loaded.model, &sentences, 2).unwrap();
    assert_eq!(before, after, "the model in memory and the one read back");
    assert_eq!(out.load_state().unwrap(), state);
}

#[test]
fn a_run_that_keeps_no_epoch_writes_nothing_and_fails() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Rnn, 0);
    let error = train(&cfg, Device::Cpu).unwrap_err().to_string();
    assert!(error.contains("no model was written"), "{error}");
    assert!(!cfg.out.exists());

    let many: Vec<&str> = THREE.iter().cycle().take(3000).copied().collect();
    corpus_dir(dir.path(), &many, &THREE);
    cfg.epochs = 3;
    cfg.time_limit = Some(1e-9);
    let error = train(&cfg, Device::Cpu).unwrap_err().to_string();
    assert!(error.contains("no model was written"), "{error}");
    assert!(error.contains("--time-limit"), "{error}");
    assert!(!cfg.out.exists());

    corpus_dir(dir.path(), &THREE, &THREE);
    cfg.time_limit = None;
    cfg.lr = 1e6;
    cfg.clip = 0.0;
    cfg.optimizer = OptimizerKind::Sgd;
    cfg.batch_size = 1;
    let error = train(&cfg, Device::Cpu).unwrap_err().to_string();
    assert!(error.contains("training diverged"), "{error}");
    assert!(!cfg.out.exists());
}

#[test]
fn training_over_a_model_needs_force_and_swaps_it_whole() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Rnn, 2);
    train(&cfg, Device::Cpu).unwrap();
    let first = std::fs::read(cfg.out.join("weights.safetensors")).unwrap();
    cfg.seed = 8;
    let error = train(&cfg, Device::Cpu).unwrap_err().to_string();
    assert!(error.contains("--force"), "{error}");
    assert_eq!(
        std::fs::read(cfg.out.join("weights.safetensors")).unwrap(),
        first,
        "a refused run leaves the model alone"
    );
    // A leftover of a killed checkpoint is cleared, not mixed in.
    let leftover = dir.path().join(".model.next");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("stray.txt"), "x").unwrap();
    cfg.force = true;
    train(&cfg, Device::Cpu).unwrap();
    assert_ne!(
        std::fs::read(cfg.out.join("weights.safetensors")).unwrap(),
        first
    );
    assert!(!leftover.exists());
    assert!(!cfg.out.join("stray.txt").exists());

    let other = dir.path().join("notes");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("todo.txt"), "x").unwrap();
    cfg.out = other;
    let error = train(&cfg, Device::Cpu).unwrap_err().to_string();
    assert!(error.contains("not a model"), "{error}");
}

#[test]
fn stream_training_keeps_the_epoch_that_eval_scores_best() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE[1..]);
    let mut cfg = config(dir.path(), Cell::Lstm, 6);
    cfg.stream = true;
    cfg.batch_size = 2;
    cfg.bptt = 3;
    let summary = train(&cfg, Device::Cpu).unwrap();
    let loaded = ModelDir::new(&cfg.out).load(Device::Cpu).unwrap();
    let corpus = Corpus::load(
        &dir.path().join("valid.txt"),
        &loaded.config.tokenizer,
        &loaded.vocab,
    )
    .unwrap();
    let eval = evaluate(&loaded.model, &corpus, 4, &OovScorer::closed()).unwrap();
    assert!(
        (eval.nats_per_token - summary.best_valid_loss).abs() < 1e-5,
        "eval {} vs recorded best {}",
        eval.nats_per_token,
        summary.best_valid_loss
    );
}

#[test]
fn resume_continues_where_training_stopped() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Rnn, 2);
    train(&cfg, Device::Cpu).unwrap();
    // Given anew (as `--epochs 5` is): left out, the run's own 2 would stay.
    cfg.epochs = 5;
    cfg.given = vec!["--epochs".to_string()];
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
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<&str> = THREE.iter().cycle().take(60).copied().collect();
    corpus_dir(dir.path(), &many, &THREE);
    let mut cfg = config(dir.path(), Cell::Lstm, 8);
    cfg.stream = true;
    cfg.batch_size = 2;
    let summary = train(&cfg, Device::Cpu).unwrap();
    // Validation reads sentence by sentence from the zero state, as `eval` does: the
    // floor is a 1-in-3 guess of each first word.
    let tokens: usize = THREE.iter().map(|s| s.split(' ').count() + 1).sum();
    let floor = 3.0 * 3f64.ln() / tokens as f64;
    assert!(
        summary.best_valid_loss < floor + 0.3,
        "{} vs floor {floor}: {:?}",
        summary.best_valid_loss,
        summary.history
    );
    // Below the floor only if the inputs leak the targets: a causality check.
    assert!(
        summary.best_valid_loss > floor - 1e-4,
        "{} is below the floor {floor}",
        summary.best_valid_loss
    );
}

#[test]
fn time_limit_stops_and_records_a_partial_epoch() {
    let _rng = torch_rng();
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

/// The learning rate of each of 4 epochs under the linear schedule with `cooldown`.
fn linear_rates(cooldown: f64) -> Vec<f64> {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Gru, 4);
    cfg.lr_schedule = LrSchedule::Linear;
    cfg.lr_cooldown = cooldown;
    let summary = train(&cfg, Device::Cpu).unwrap();
    summary.history.iter().map(|r| r.lr).collect()
}

#[test]
fn linear_schedule_falls_to_zero_over_the_epochs() {
    let rates = linear_rates(1.0);
    let expected = [0.02, 0.015, 0.01, 0.005];
    for (rate, want) in rates.iter().zip(expected) {
        assert!((rate - want).abs() < 1e-9, "{rates:?}");
    }
}

#[test]
fn a_cooldown_holds_the_rate_then_falls_over_the_last_share() {
    let rates = linear_rates(0.5);
    // Constant for the first half of the 4 epochs, then from 0.02 down to zero.
    let expected = [0.02, 0.02, 0.02, 0.01];
    assert_eq!(rates.len(), expected.len(), "{rates:?}");
    for (rate, want) in rates.iter().zip(expected) {
        assert!((rate - want).abs() < 1e-9, "{rates:?}");
    }
}

#[test]
fn a_cooldown_without_the_linear_schedule_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE);
    let mut cfg = config(dir.path(), Cell::Gru, 1);
    cfg.lr_cooldown = 0.2;
    let error = train(&cfg, Device::Cpu).unwrap_err().to_string();
    assert!(
        error.contains("--lr-cooldown 0.2 applies to --lr-schedule linear"),
        "{error}"
    );
    assert!(!cfg.out.join("config.json").exists(), "nothing written");
}

#[test]
fn a_class_model_learns_and_its_directory_round_trips() {
    let _rng = torch_rng();
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
    // Below the floor only if the inputs leak the targets: a causality check.
    assert!(
        summary.best_valid_loss > floor - 1e-4,
        "{} is below the floor {floor}",
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
    let _rng = torch_rng();
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
    let _rng = torch_rng();
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
