//! What a user can get wrong, or do to a running process, must end in a one-line
//! error or a clean exit: tampered model directories, signals, kills mid-checkpoint.

mod common;
use common::{rnnlm, stderr, stdout, write};
#[path = "common/tiny.rs"]
mod tiny;
use tiny::{assert_error_line, assert_one_line_error, data, state_epoch, train_args, trained};

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

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
            "'transformer' is not one of rnn, gru, lstm",
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
    assert_one_line_error(&o, "'byte' is not one of word, char");
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

/// A tiny run in `dir/model`, trained with `flags` and cut inside its first epoch by
/// them (`--max-steps`): (its data directory, the model directory).
fn cut_run(dir: &std::path::Path, flags: &[&str]) -> (String, std::path::PathBuf) {
    let data = data(dir, 4);
    let model = dir.join("model");
    let mut args = train_args(data.to_str().unwrap(), model.to_str().unwrap(), "2");
    args.extend(flags);
    let o = rnnlm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    (data.to_str().unwrap().to_string(), model)
}

#[test]
fn a_changed_training_state_is_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = cut_run(dir.path(), &["--batch-size", "2", "--max-steps", "3"]);
    let (data, out) = (data.as_str(), model.to_str().unwrap());
    let path = model.join("state.json");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved["batches_done"], 3, "{saved}");
    let resume = ["train", "--data", data, "--out", out, "--resume"];
    // Each change alone; the first three would train at a negative rate, against an
    // overspent budget, or past the end of the epoch.
    for (field, value, needle) in [
        (
            "lr",
            serde_json::json!(-0.5),
            "lr -0.5 is not a finite number of 0 or more",
        ),
        (
            "seconds",
            serde_json::json!(-1e300),
            "seconds -1e300 is not a finite",
        ),
        (
            "batches_done",
            serde_json::json!(1000),
            "1000 batches of epoch 1 are done, but the epoch has",
        ),
        (
            "best_valid_loss",
            serde_json::json!(-2.0),
            "best_valid_loss -2.0 is not a loss",
        ),
    ] {
        let mut changed = saved.clone();
        changed[field] = value;
        std::fs::write(&path, changed.to_string()).unwrap();
        let o = rnnlm(&resume);
        assert_error_line(&o, needle);
    }
    std::fs::write(&path, saved.to_string()).unwrap();
    let o = rnnlm(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_carried_stream_state_of_another_shape_is_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let stream = [
        "--stream",
        "--batch-size",
        "2",
        "--bptt",
        "3",
        "--max-steps",
        "2",
    ];
    let (data, model) = cut_run(dir.path(), &stream);
    let (data, out) = (data.as_str(), model.to_str().unwrap());

    // The cut epoch's GRU state is [layers 1, batch 2, hidden 8]; give it a batch of 3.
    let path = model.join("optimizer.safetensors");
    let mut stored = tch::Tensor::read_safetensors(&path).unwrap();
    let carried = stored
        .iter_mut()
        .find(|(name, _)| name == "stream_state.hidden")
        .expect("a cut stream epoch saves its carried state");
    assert_eq!(carried.1.size(), [1, 2, 8]);
    carried.1 = tch::Tensor::zeros([1, 3, 8], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&stored, &path).unwrap();

    let o = rnnlm(&["train", "--data", data, "--out", out, "--resume"]);
    assert_error_line(
        &o,
        "optimizer.safetensors: the carried stream state does not fit",
    );
    // Refused before anything is written: the cut run's model still loads.
    let o = rnnlm(&["sample", "--model", out, "--count", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
#[test]
fn killed_at_any_moment_the_model_directory_is_one_checkpoint() {
    kill_while_training(false);
}

#[test]
fn killed_at_any_moment_with_the_two_rename_fallback_too() {
    kill_while_training(true);
}

/// Waits for `child` to exit, at most `limit`; past it, kills it and returns false.
fn exited_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Kills a training (SIGKILL and SIGINT by turns) at moments that drift through its
/// epochs and checkpoints, 8 times after the first checkpoint; each time the model
/// directory must load as one checkpoint. `fallback`: as on NFS, where the atomic
/// exchange is refused and a checkpoint is two renames.
fn kill_while_training(fallback: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 40);
    let model = dir.path().join("model");
    let aside = dir.path().join(".model.old");
    let (data_arg, model_arg) = (data.to_str().unwrap(), model.to_str().unwrap());
    let mut kills = 0;
    let mut delay_ms = 400;
    for attempt in 0..40 {
        if kills == 8 {
            break;
        }
        let mut args = train_args(data_arg, model_arg, "10000");
        if model.exists() || aside.exists() {
            args.push("--resume");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_rnnlm"));
        command.args(&args).stderr(Stdio::null());
        if fallback {
            command.env(rnnlm::swap::FORCE_RENAME_FALLBACK, "1");
        }
        // A background job of a non-interactive shell (a CI runner's, say) starts with
        // SIGINT ignored, and its children inherit that: a SIGINT that came before
        // rnnlm installs its handler would then be lost and the training run on. The
        // child gets SIGINT's default action, as from a terminal.
        // SAFETY: signal() is async-signal-safe, and nothing else runs before exec.
        unsafe {
            command.pre_exec(|| match libc::signal(libc::SIGINT, libc::SIG_DFL) {
                libc::SIG_ERR => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            });
        }
        let mut child = command.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        delay_ms += 137;
        let signal = if attempt % 2 == 0 {
            libc::SIGKILL
        } else {
            libc::SIGINT
        };
        unsafe { libc::kill(child.id() as i32, signal) };
        assert!(
            exited_within(&mut child, Duration::from_secs(120)),
            "rnnlm train still ran 120 s after signal {signal}"
        );
        if !model.exists() && !aside.exists() {
            continue;
        }
        kills += 1;
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
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
        // Every file is of one checkpoint: the record has one row per epoch done.
        let metrics = std::fs::read_to_string(model.join("metrics.csv")).unwrap();
        assert_eq!(
            metrics.lines().count() as u64 - 1,
            state_epoch(&model),
            "{metrics}"
        );
    }
    assert_eq!(kills, 8, "checkpoints were written in the time given");
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
