//! A run cut and resumed equals an uncut run: cut after an epoch, inside an epoch
//! (`--max-steps`), with the plateau and the linear schedule, sentence by sentence
//! and as a stream. In a test binary of its own, one test at a time: dropout draws
//! from libtorch's process-wide generator.

use rnnlm::model::Cell;
use rnnlm::train::{train, LrSchedule, TrainConfig, TrainSummary};
use tch::Device;

#[path = "common/training.rs"]
mod training;
use training::{config, corpus_dir, THREE};
#[path = "common/torch_rng.rs"]
mod torch_rng;
use torch_rng::torch_rng;

/// Whole epochs' (train loss, valid loss, learning rate): a cut epoch also leaves a
/// row of its own part, which an uncut run does not have.
fn whole_epochs(s: &TrainSummary) -> Vec<(f64, f64, f64)> {
    s.history
        .iter()
        .filter(|r| r.epoch.fract() == 0.0)
        .map(|r| (r.train_loss, r.valid_loss, r.lr))
        .collect()
}

/// Trains `cfg` uncut, and again cut by `cut` (which adjusts the first run's
/// settings) and resumed; the two must agree on every whole epoch and on the
/// weights and optimizer state they end with.
fn cut_and_resumed_equals_uncut(cfg: TrainConfig, cut: impl Fn(&mut TrainConfig)) {
    resumed_as_given_equals_uncut(cfg, cut, |_| {});
}

/// As `cut_and_resumed_equals_uncut`, with the resuming command line's settings
/// adjusted by `given` (a flag left out).
fn resumed_as_given_equals_uncut(
    mut cfg: TrainConfig,
    cut: impl Fn(&mut TrainConfig),
    given: impl Fn(&mut TrainConfig),
) {
    let _rng = torch_rng();
    let root = cfg.data.clone();
    cfg.out = root.join("uncut");
    let uncut = train(&cfg, Device::Cpu).unwrap();
    let mut first = cfg.clone();
    first.out = root.join("cut");
    cut(&mut first);
    train(&first, Device::Cpu).unwrap();
    let mut resumed_cfg = cfg.clone();
    resumed_cfg.out = root.join("cut");
    resumed_cfg.resume = true;
    // The uncut run's epochs, given anew: a cut after an epoch is resumed to the end.
    resumed_cfg.given = vec!["--epochs".to_string()];
    given(&mut resumed_cfg);
    let resumed = train(&resumed_cfg, Device::Cpu).unwrap();
    assert_eq!(whole_epochs(&resumed), whole_epochs(&uncut));
    for file in ["last.safetensors", "optimizer.safetensors"] {
        assert!(
            std::fs::read(root.join("cut").join(file)).unwrap()
                == std::fs::read(root.join("uncut").join(file)).unwrap(),
            "{file} differs"
        );
    }
}

/// Dropout and shuffled batches of one: both random streams matter.
fn noisy_config(dir: &std::path::Path) -> TrainConfig {
    corpus_dir(dir, &THREE, &THREE[..2]);
    let mut cfg = config(dir, Cell::Gru, 4);
    cfg.model.dropout = 0.3;
    cfg.batch_size = 1;
    cfg
}

#[test]
fn cut_after_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    cut_and_resumed_equals_uncut(noisy_config(dir.path()), |c| c.epochs = 2);
}

#[test]
fn cut_inside_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    // Three batches an epoch: step 5 is inside the second.
    cut_and_resumed_equals_uncut(noisy_config(dir.path()), |c| c.max_steps = Some(5));
}

#[test]
fn cut_inside_an_epoch_of_the_linear_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = noisy_config(dir.path());
    cfg.lr_schedule = LrSchedule::Linear;
    cut_and_resumed_equals_uncut(cfg, |c| c.max_steps = Some(7));
}

#[test]
fn cut_inside_the_cooldown_of_the_linear_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = noisy_config(dir.path());
    cfg.lr_schedule = LrSchedule::Linear;
    cfg.lr_cooldown = 0.5;
    // Twelve steps in all, the last six falling: step 8 is inside the fall.
    cut_and_resumed_equals_uncut(cfg, |c| c.max_steps = Some(8));
}

#[test]
fn cut_inside_a_stream_epoch_carries_the_recurrent_state() {
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<&str> = THREE.iter().cycle().take(30).copied().collect();
    corpus_dir(dir.path(), &many, &THREE);
    let mut cfg = config(dir.path(), Cell::Lstm, 3);
    cfg.model.dropout = 0.2;
    cfg.stream = true;
    cfg.batch_size = 2;
    cfg.bptt = 5;
    cut_and_resumed_equals_uncut(cfg, |c| c.max_steps = Some(9));
}

#[test]
fn a_resume_that_names_only_the_data_keeps_the_runs_extra_text_and_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    // The rest of the text and the held-out file are named by flags alone, so a resume
    // that dropped them would train and validate on other text.
    let extra = dir.path().join("extra.txt");
    std::fs::write(&extra, THREE[1..].join("\n") + "\n").unwrap();
    let held_out = dir.path().join("held-out.txt");
    std::fs::write(&held_out, THREE[1].to_string() + "\n").unwrap();
    let mut cfg = noisy_config(dir.path());
    corpus_dir(dir.path(), &THREE[..1], &THREE[..1]);
    cfg.extra_train = vec![extra];
    cfg.valid = Some(held_out);
    resumed_as_given_equals_uncut(
        cfg,
        |c| c.max_steps = Some(5),
        |c| {
            c.extra_train.clear();
            c.valid = None;
        },
    );
}

/// Every regularizer and the weight average, on both layouts.
fn regularized(cfg: &mut TrainConfig) {
    cfg.regularization = rnnlm::regularize::Regularization {
        locked_dropout: true,
        embed_dropout: 0.2,
        weight_drop: 0.3,
        ar: 1.0,
        tar: 0.5,
        weight_decay: 0.01,
        ema_decay: 0.9,
    };
}

#[test]
fn cut_inside_a_regularized_epoch_keeps_the_average() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = noisy_config(dir.path());
    cfg.model.cell = Cell::Lstm;
    regularized(&mut cfg);
    cut_and_resumed_equals_uncut(cfg.clone(), |c| c.max_steps = Some(5));
    // The kept model is the average, not the last weights.
    let model = dir.path().join("uncut");
    assert!(
        std::fs::read(model.join("weights.safetensors")).unwrap()
            != std::fs::read(model.join("last.safetensors")).unwrap()
    );
}

#[test]
fn cut_inside_a_regularized_stream_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<&str> = THREE.iter().cycle().take(30).copied().collect();
    corpus_dir(dir.path(), &many, &THREE);
    let mut cfg = config(dir.path(), Cell::Gru, 3);
    cfg.model.dropout = 0.2;
    cfg.stream = true;
    cfg.batch_size = 2;
    cfg.bptt = 5;
    regularized(&mut cfg);
    cut_and_resumed_equals_uncut(cfg, |c| c.max_steps = Some(9));
}
