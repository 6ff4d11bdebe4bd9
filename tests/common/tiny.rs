//! A tiny model trained through the command line, for the end-to-end failure tests.
#![allow(dead_code)]

use super::common::{rnnlm, stderr, write};
use std::path::{Path, PathBuf};

pub const SENTENCES: [&str; 5] = [
    "the apple and pear salad",
    "the pear is ripe",
    "a pair of shoes",
    "we ate the salad",
    "a pear and an apple",
];

/// A data directory of `copies` copies of the sentences, and the training flags of a
/// tiny model on it.
pub fn data(dir: &Path, copies: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let train: Vec<&str> = SENTENCES.iter().cycle().take(5 * copies).copied().collect();
    write(&data, "train.txt", train.join("\n") + "\n");
    write(&data, "valid.txt", SENTENCES.join("\n") + "\n");
    data
}

pub fn train_args<'a>(data: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--out",
        out,
        "--min-count",
        "1",
        "--cell",
        "gru",
        "--embed",
        "8",
        "--hidden",
        "8",
        "--layers",
        "1",
        "--epochs",
        epochs,
        "--patience",
        "0",
        "--device",
        "cpu",
    ]
}

/// A trained model in `dir/model`.
pub fn trained(dir: &Path) -> PathBuf {
    let data = data(dir, 2);
    let out = dir.join("model");
    let o = rnnlm(&train_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        "2",
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// Asserts a one-line error with exit code 1 that contains `needle`, and no panic.
pub fn assert_one_line_error(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "wanted '{needle}' in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Asserts exit code 1, one `error:` line that contains `needle` and comes last (a
/// training's progress lines may precede it), and no panic.
pub fn assert_error_line(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(needle), "wanted '{needle}' in: {err}");
    assert_eq!(err.trim().lines().last(), Some(errors[0]), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `state.json`'s epoch.
pub fn state_epoch(model: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("state.json")).unwrap()).unwrap();
    state["epoch"].as_u64().unwrap()
}
