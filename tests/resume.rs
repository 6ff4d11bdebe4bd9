//! A run cut and resumed equals an uncut run. In a test binary of its own: dropout
//! draws from libtorch's process-wide generator, which tests running in parallel
//! threads of one process would share.

use rnnlm::model::Cell;
use rnnlm::train::train;
use tch::Device;

#[path = "common/training.rs"]
mod training;
use training::{config, corpus_dir, THREE};

#[test]
fn a_run_cut_and_resumed_equals_an_uncut_run() {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE[..2]);
    let mut cfg = config(dir.path(), Cell::Gru, 4);
    // Dropout and shuffled batches of one: both random streams matter.
    cfg.model.dropout = 0.3;
    cfg.batch_size = 1;
    cfg.out = dir.path().join("uncut");
    let uncut = train(&cfg, Device::Cpu).unwrap();
    cfg.out = dir.path().join("cut");
    cfg.epochs = 2;
    train(&cfg, Device::Cpu).unwrap();
    cfg.epochs = 4;
    cfg.resume = true;
    let resumed = train(&cfg, Device::Cpu).unwrap();
    let losses = |s: &rnnlm::train::TrainSummary| -> Vec<(f64, f64)> {
        s.history
            .iter()
            .map(|r| (r.train_loss, r.valid_loss))
            .collect()
    };
    assert_eq!(losses(&resumed), losses(&uncut));
    for file in [
        "last.safetensors",
        "weights.safetensors",
        "optimizer.safetensors",
    ] {
        assert!(
            std::fs::read(dir.path().join("cut").join(file)).unwrap()
                == std::fs::read(dir.path().join("uncut").join(file)).unwrap(),
            "{file} differs"
        );
    }
}
