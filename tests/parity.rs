//! Parity with PyTorch: the reference in bench/reference.py loads a model trained here
//! and must give the same sentence log-probabilities on the Brown test sentences, with
//! the full softmax and with the class-based output layer.

use std::path::Path;
use std::process::Command;

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

#[test]
fn pytorch_reference_gives_the_same_sentence_log_probs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} missing: run make setup"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let brown = root.join("datasets/brown");
    std::fs::copy(brown.join("train.txt"), data.join("train.txt")).unwrap();
    let valid = std::fs::read_to_string(brown.join("valid.txt")).unwrap();
    std::fs::write(
        data.join("valid.txt"),
        valid.lines().take(50).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let test = brown.join("test.txt");
    let cases = [
        ("lstm", true, "full"),
        ("gru", false, "full"),
        ("rnn", false, "full"),
        ("lstm", true, "class"),
        ("gru", false, "class"),
    ];
    for (cell, tie, softmax) in cases {
        let model = dir.path().join(format!("{cell}-{softmax}"));
        let mut args = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--cell",
            cell,
            "--embed",
            "32",
            "--hidden",
            "32",
            "--layers",
            "2",
            "--softmax",
            softmax,
            "--time-limit",
            "3",
            "--device",
            "cpu",
        ];
        if tie {
            args.push("--tie");
        }
        let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

        let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
            .args([
                "score",
                "--model",
                model.to_str().unwrap(),
                "--format",
                "text",
                "--oov",
                "unk",
                "--input",
                test.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ours: Vec<f64> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().parse().unwrap())
            .collect();

        let o = Command::new(PYTHON)
            .arg(root.join("bench/reference.py"))
            .args([
                "logprobs",
                "--model",
                model.to_str().unwrap(),
                "--data",
                test.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let theirs: Vec<f64> = json["logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();

        assert_eq!(ours.len(), 10_127);
        assert_eq!(ours.len(), theirs.len());
        // Our text output rounds to 1e-4 nats.
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-3,
            "{cell} {softmax}: max |rnnlm - PyTorch| = {worst} nats per sentence"
        );
    }
}
