//! What a user can get wrong, or do to a running process, must end in a one-line
//! error or a clean exit: tampered model directories, signals, kills mid-checkpoint.

mod common;
use common::{rnnlm, stderr, stdout, write};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SENTENCES: [&str; 5] = [
    "the apple and pear salad",
    "the pear is ripe",
    "a pair of shoes",
    "we ate the salad",
    "a pear and an apple",
];

/// A data directory of `copies` copies of the sentences, and the training flags of a
/// tiny model on it.
fn data(dir: &Path, copies: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let train: Vec<&str> = SENTENCES.iter().cycle().take(5 * copies).copied().collect();
    write(&data, "train.txt", train.join("\n") + "\n");
    write(&data, "valid.txt", SENTENCES.join("\n") + "\n");
    data
}

fn train_args<'a>(data: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
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
fn trained(dir: &Path) -> PathBuf {
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
fn assert_one_line_error(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "wanted '{needle}' in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn tampered_configurations_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let config_path = model.join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&original).unwrap();
    let cases: [(&str, serde_json::Value, &str); 7] = [
        ("hidden", 0.into(), "hidden 0 is outside"),
        ("embed", (-3).into(), "embed -3 is outside"),
        ("layers", 0.into(), "layers 0 is outside"),
        ("hidden", 100_000_000_000i64.into(), "is outside"),
        ("dropout", 1.5.into(), "dropout 1.5 is outside"),
        (
            "cell",
            "transformer".into(),
            "unknown variant `transformer`",
        ),
        ("tie", true.into(), "tie needs embed equal to hidden"),
    ];
    for (field, value, needle) in cases {
        let mut tampered = json.clone();
        tampered["model"][field] = value;
        if field == "tie" {
            tampered["model"]["embed"] = 4.into();
        }
        std::fs::write(&config_path, tampered.to_string()).unwrap();
        let o = rnnlm(&["sample", "--model", model.to_str().unwrap()]);
        assert_one_line_error(&o, needle);
        assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    }
    let mut tampered = json.clone();
    tampered["tokenizer"]["level"] = "byte".into();
    std::fs::write(&config_path, tampered.to_string()).unwrap();
    let o = rnnlm(&["sample", "--model", model.to_str().unwrap()]);
    assert_one_line_error(&o, "unknown variant `byte`");
}

#[test]
fn truncated_or_foreign_weights_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let weights_path = model.join("weights.safetensors");
    let weights = std::fs::read(&weights_path).unwrap();
    for cut in [0, 7, 100, weights.len() - 5] {
        std::fs::write(&weights_path, &weights[..cut]).unwrap();
        let o = rnnlm(&["sample", "--model", model.to_str().unwrap()]);
        assert_one_line_error(&o, "weights.safetensors");
    }
    // A header that promises more bytes than the file holds.
    let mut lying = weights.clone();
    lying[0] = lying[0].wrapping_add(40);
    std::fs::write(&weights_path, &lying).unwrap();
    let o = rnnlm(&["sample", "--model", model.to_str().unwrap()]);
    assert_one_line_error(&o, "weights.safetensors");

    // Another model's weights: same names, other shapes.
    let other_dir = tempfile::tempdir().unwrap();
    let other_data = data(other_dir.path(), 2);
    let other = other_dir.path().join("wide");
    let mut args = train_args(other_data.to_str().unwrap(), other.to_str().unwrap(), "1");
    args[12] = "12";
    let o = rnnlm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::copy(other.join("weights.safetensors"), &weights_path).unwrap();
    let o = rnnlm(&["sample", "--model", model.to_str().unwrap()]);
    assert_one_line_error(&o, "the configuration needs");
}

#[test]
fn sigterm_while_scoring_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let output = dir.path().join("scored.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args([
            "score",
            "--model",
            model.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--chunk-rows",
            "1",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "utterance_id,sentence").unwrap();
    for i in 0..50 {
        writeln!(stdin, "u{i},the pear is ripe").unwrap();
    }
    stdin.flush().unwrap();
    // The input stays open, so the run is mid-file until the signal.
    let temporaries = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".scored.csv"))
            .collect()
    };
    let start = Instant::now();
    while temporaries().is_empty() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!temporaries().is_empty(), "the hidden output file appears");
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert_eq!(temporaries(), Vec::<String>::new());
    assert!(!output.exists());
    drop(stdin);
}

/// `state.json`'s epoch.
fn state_epoch(model: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("state.json")).unwrap()).unwrap();
    state["epoch"].as_u64().unwrap()
}

#[test]
fn killed_at_any_moment_the_model_directory_is_one_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 40);
    let model = dir.path().join("model");
    let (data_arg, model_arg) = (data.to_str().unwrap(), model.to_str().unwrap());
    let mut kills = 0;
    let mut delay_ms = 400;
    while kills < 8 {
        let mut args = train_args(data_arg, model_arg, "10000");
        if model.exists() {
            args.push("--resume");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
            .args(&args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        delay_ms += 137;
        let signal = if kills % 2 == 0 {
            libc::SIGKILL
        } else {
            libc::SIGINT
        };
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap();
        kills += 1;
        if !model.exists() {
            continue;
        }
        // Every file is of one checkpoint: the record has one row per epoch done.
        let metrics = std::fs::read_to_string(model.join("metrics.csv")).unwrap();
        assert_eq!(
            metrics.lines().count() as u64 - 1,
            state_epoch(&model),
            "{metrics}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        if signal == libc::SIGINT {
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
        let o = rnnlm(&[
            "eval",
            "--model",
            model_arg,
            "--data",
            &format!("{data_arg}/valid.txt"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(
        model.exists(),
        "some checkpoint was written in the time given"
    );
}

#[test]
fn the_text_summary_uses_srilm_fields_and_meanings() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let input = write(dir.path(), "in.txt", "the pear is ripe\nwe ate the salad\n");
    let o = rnnlm(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &input,
        "--format",
        "text",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut log10_total = 0.0;
    let mut tokens = 0usize;
    for line in stdout(&o).lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        log10_total += fields[1].parse::<f64>().unwrap();
        tokens += fields[3].parse::<usize>().unwrap();
    }
    assert_eq!(tokens, 10);
    let err = stderr(&o);
    let field = |name: &str| -> f64 {
        let at = err.find(name).unwrap_or_else(|| panic!("{name} in {err}")) + name.len();
        err[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(err.contains("2 sentences, 8 words, 0 OOVs"), "{err}");
    assert!((field("logprob=") - log10_total).abs() < 0.01, "{err}");
    let ppl = 10f64.powf(-log10_total / 10.0);
    let ppl1 = 10f64.powf(-log10_total / 8.0);
    assert!((field("ppl=") - ppl).abs() < 0.01 * ppl, "{err}");
    assert!((field("ppl1=") - ppl1).abs() < 0.01 * ppl1, "{err}");
}
