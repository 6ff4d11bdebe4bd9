//! The model-directory loader: `config.json`, `vocab.txt` and `oov_counts.tsv` made of
//! arbitrary bytes (split at 0xFF), beside valid weights. Any outcome but a panic or
//! an abort is fine.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rnnlm::checkpoint::ModelDir;
use std::path::PathBuf;
use std::sync::OnceLock;

fn model() -> &'static (tempfile::TempDir, PathBuf) {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = common::tiny_model(dir.path());
        (dir, path)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, path) = model();
    let mut parts = data.split(|&b| b == 0xFF);
    let files = ["config.json", "vocab.txt", "oov_counts.tsv"];
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(path.join(f)).unwrap())
        .collect();
    for (file, original) in files.iter().zip(&originals) {
        // An empty part keeps the valid file, so each can be fuzzed alone.
        let bytes = match parts.next() {
            Some(part) if !part.is_empty() => part,
            _ => original.as_slice(),
        };
        std::fs::write(path.join(file), bytes).unwrap();
    }
    let _ = ModelDir::new(path).load(tch::Device::Cpu);
    for (file, original) in files.iter().zip(&originals) {
        std::fs::write(path.join(file), original).unwrap();
    }
});
