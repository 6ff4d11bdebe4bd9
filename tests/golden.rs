//! A single-process training run writes the same bytes as it did before training
//! could run on several processes: the sums below were taken with the binary of the
//! commit before data-parallel training was added (8debea4), and the run must still
//! match them, file by file.
//!
//! Float bits depend on the CPU's instruction set as well as on the code, so both
//! runs pin libtorch's kernels to paths every x86-64 CPU takes (plain ATen kernels,
//! oneDNN's SSE4.1 code, MKL's conditional-reproducibility mode, one thread).
//! `tests/golden/arithmetic.py` checks that pinning on the machine at hand: where
//! even the pinned kernels give other bits than on the machine that took the sums,
//! the comparison would say nothing about rnnlm, and the test says so and stops.

#[allow(dead_code)]
mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::stderr;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The pinned environment, for the binary and for the arithmetic check alike.
const PINNED: [(&str, &str); 4] = [
    ("ATEN_CPU_CAPABILITY", "default"),
    ("ONEDNN_MAX_CPU_ISA", "SSE41"),
    ("MKL_CBWR", "COMPATIBLE"),
    ("OMP_NUM_THREADS", "1"),
];

/// What `tests/golden/arithmetic.py` printed, pinned, where the sums were taken (an
/// AMD EPYC with AVX-512, torch 2.11.0).
const ARITHMETIC: &str = "0a853caa57c1f4df12be8fedf6daf2be734013a352944c063151944d1993ab18";

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

/// One golden run: its flags beside the tiny model's, and each file's SHA-256
/// (`metrics.csv` without its two timing columns).
struct Golden {
    flags: &'static str,
    files: [(&'static str, &'static str); 5],
}

const VOCAB: &str = "ed9fce2678dd05020e372f7cee16ca48bb1a8378197691581ba08da79e96dc3d";
const OOV_COUNTS: &str = "c6e274412dffc48404f021bbcd634c52ac540f4fc7a1560f959afbf7bf8dcd71";

/// A tied class-layer LSTM with every regularizer on, sentence by sentence.
const SENTENCES: Golden = Golden {
    flags: "--cell lstm --tie --softmax class --clusters 2 --dropout 0.2 --ar 1 --tar 1 \
            --weight-drop 0.2 --embed-dropout 0.1",
    files: [
        (
            "weights.safetensors",
            "132a878e2d18c20ead8f2d1512988646aeaf3cc1bb48caac3b47e9951cb5e3eb",
        ),
        (
            "optimizer.safetensors",
            "00a5c89374970cf7c6c96f352ce6fd6d50b3a5deb5bea17420b79fd402facbd9",
        ),
        ("vocab.txt", VOCAB),
        ("oov_counts.tsv", OOV_COUNTS),
        (
            "metrics.csv",
            "82d80c361ba4524ade0313e72ded9014e6861e5ada6b0354f456ae12db3a04e6",
        ),
    ],
};

/// A GRU with a full softmax on one token stream, by truncated BPTT.
const STREAM: Golden = Golden {
    flags: "--stream --bptt 5 --cell gru --dropout 0.1",
    files: [
        (
            "weights.safetensors",
            "c393673c90a1fb759c2847f4148b9e2b265b8c1a2b3085f262744fd1ab8a3e16",
        ),
        (
            "optimizer.safetensors",
            "dbbca9cbc26ab55c5c7953bbb6bd79afc4617abc65a97e6bac53b981f8d3b9dc",
        ),
        ("vocab.txt", VOCAB),
        ("oov_counts.tsv", OOV_COUNTS),
        (
            "metrics.csv",
            "feff2318d8445b1a21bccb767864b2f73a543d3b0a07975f791b20240bfc8a72",
        ),
    ],
};

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `metrics.csv` without `tokens_per_s` and `seconds`, which time the run.
fn untimed_metrics(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let kept: Vec<usize> = (0..header.len())
        .filter(|&i| header[i] != "tokens_per_s" && header[i] != "seconds")
        .collect();
    assert_eq!(kept.len() + 2, header.len(), "timing columns in {header:?}");
    std::iter::once(header.join(","))
        .chain(lines.map(str::to_string))
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            kept.iter()
                .map(|&i| fields[i])
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect()
}

/// Whether libtorch's pinned kernels give this CPU the bits they gave where the sums
/// were taken; asked once (the script loads torch) and shared by every test, which
/// says so where they do not.
fn pinned_arithmetic_matches() -> bool {
    static MATCHES: OnceLock<bool> = OnceLock::new();
    *MATCHES.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/arithmetic.py");
        let o = Command::new(PYTHON)
            .arg(script)
            .envs(PINNED)
            .output()
            .unwrap_or_else(|e| panic!("{PYTHON}: {e} (make test installs it)"));
        assert!(o.status.success(), "{script}: {}", stderr(&o));
        let arithmetic = String::from_utf8(o.stdout).unwrap().trim().to_string();
        if arithmetic != ARITHMETIC {
            eprintln!(
                "libtorch's pinned kernels give other bits on this CPU than where the golden \
                 sums were taken ({arithmetic}); the byte-for-byte comparisons are skipped"
            );
        }
        arithmetic == ARITHMETIC
    })
}

fn train_pinned(dir: &Path, flags: &str, seed: &str) -> std::path::PathBuf {
    let data = tiny::data(dir, 4);
    let out = dir.join("model");
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--seed", seed]);
    args.extend(
        "--min-count 1 --embed 8 --hidden 8 --layers 2 --batch-size 4 --epochs 3 \
         --patience 0 --device cpu --threads 1"
            .split_whitespace(),
    );
    args.extend(flags.split_whitespace());
    let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(&args)
        .envs(PINNED)
        .output()
        .expect("run rnnlm");
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn assert_golden(golden: &Golden) {
    if !pinned_arithmetic_matches() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = train_pinned(dir.path(), golden.flags, "7");
    for (name, expected) in golden.files {
        let path = model.join(name);
        let actual = if name == "metrics.csv" {
            hex_sha256(untimed_metrics(&path).as_bytes())
        } else {
            hex_sha256(&std::fs::read(&path).unwrap())
        };
        assert_eq!(
            actual,
            expected,
            "{} differs from the golden run",
            path.display()
        );
    }
    // The best epoch is the last here, so the two weight files hold the same bytes.
    assert_eq!(
        std::fs::read(model.join("last.safetensors")).unwrap(),
        std::fs::read(model.join("weights.safetensors")).unwrap()
    );
}

#[test]
fn a_sentence_run_writes_the_golden_bytes() {
    assert_golden(&SENTENCES);
}

#[test]
fn a_stream_run_writes_the_golden_bytes() {
    assert_golden(&STREAM);
}

#[test]
fn another_seed_misses_the_golden_bytes() {
    // The comparison can fail: a one-flag change moves the weights' sum.
    if !pinned_arithmetic_matches() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = train_pinned(dir.path(), SENTENCES.flags, "8");
    let weights = hex_sha256(&std::fs::read(model.join("weights.safetensors")).unwrap());
    assert_ne!(weights, SENTENCES.files[0].1);
}
