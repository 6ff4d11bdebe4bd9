//! Failures that must end in one error line and the right exit status: libtorch's own
//! errors, configurations too big to build, a closed standard output, SIGTERM under
//! load, a diverging run, flags out of range.

#[allow(dead_code)]
mod common;
use common::{rnnlm, stderr, write};
#[path = "common/tiny.rs"]
mod tiny;
use tiny::{assert_error_line, assert_one_line_error, data, train_args, trained};

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rnnlm"));
    command.args(args);
    command
}

/// A CSV of `rows` rows of one sentence.
fn csv_input(dir: &Path, rows: usize) -> String {
    let mut text = String::from("utterance_id,sentence\n");
    for i in 0..rows {
        text += &format!("u{i},the pear is ripe\n");
    }
    write(dir, "in.csv", text)
}

#[test]
fn a_closed_standard_output_is_success() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let model = model.to_str().unwrap();
    let input = csv_input(dir.path(), 20_000);
    let valid = format!("{}/data/valid.txt", dir.path().display());
    let cases: [(&str, Vec<&str>); 5] = [
        ("csv", vec!["score", "--model", model, "--input", &input]),
        (
            "text",
            vec![
                "score", "--model", model, "--input", &input, "--format", "text",
            ],
        ),
        (
            "per-token",
            vec![
                "score",
                "--model",
                model,
                "--input",
                &input,
                "--output",
                "/dev/null",
                "--per-token",
                "/dev/stdout",
            ],
        ),
        (
            "sample",
            vec!["sample", "--model", model, "--count", "50000"],
        ),
        ("eval", vec!["eval", "--model", model, "--data", &valid]),
    ];
    for (name, args) in cases {
        let mut child = command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the first write: every write then fails with EPIPE.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{name}: {err}");
        assert!(!err.contains("error"), "{name}: {err}");
    }
}

/// Two processes that keep both cores busy while they live.
struct CpuHog(Vec<Child>);

impl CpuHog {
    fn start() -> Self {
        CpuHog(
            (0..2)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn sigterm_beside_a_cpu_hog_exits_143_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let big_input = csv_input(dir.path(), 300_000);
    let _hog = CpuHog::start();
    // A few rounds per case: the hog slows every test of this binary while it runs.
    for round in 0..2 {
        for format in ["csv", "text"] {
            for from_file in [true, false] {
                let name = format!("scored-{round}-{format}-{from_file}.out");
                let output = dir.path().join(&name);
                let mut args = vec![
                    "score",
                    "--model",
                    model.to_str().unwrap(),
                    "--output",
                    output.to_str().unwrap(),
                    "--format",
                    format,
                    "--chunk-rows",
                    "1",
                ];
                if from_file {
                    args.extend(["--input", big_input.as_str()]);
                }
                let mut child = command(&args)
                    .stdin(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                if !from_file {
                    writeln!(stdin, "utterance_id,sentence").unwrap();
                    for i in 0..50 {
                        writeln!(stdin, "u{i},the pear is ripe").unwrap();
                    }
                    stdin.flush().unwrap();
                }
                let hidden = format!(".{name}");
                let temporaries = || -> Vec<String> {
                    std::fs::read_dir(dir.path())
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(&hidden))
                        .collect()
                };
                let start = Instant::now();
                while temporaries().is_empty() && start.elapsed() < Duration::from_secs(60) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(
                    !temporaries().is_empty(),
                    "{name}: the hidden output appears"
                );
                std::thread::sleep(Duration::from_millis(100));
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let o = child.wait_with_output().unwrap();
                let err = stderr(&o);
                assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{name}: {err}");
                assert!(err.contains("interrupted (signal 15)"), "{name}: {err}");
                assert_eq!(temporaries(), Vec::<String>::new(), "{name}");
                assert!(!output.exists(), "{name}");
                drop(stdin);
            }
        }
    }
}

#[test]
fn a_huge_configuration_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let config_path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    // Within every field's bounds, and about 9 TB of parameters.
    config["model"]["hidden"] = 65_536.into();
    config["model"]["embed"] = 65_536.into();
    config["model"]["layers"] = 64.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    for args in [
        vec!["sample", "--model", model.to_str().unwrap()],
        vec![
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            &format!("{}/data/valid.txt", dir.path().display()),
        ],
    ] {
        let o = rnnlm(&args);
        assert_one_line_error(&o, "too small for the");
        assert!(stderr(&o).contains("weights.safetensors"), "{}", stderr(&o));
    }
}

/// A model that needs more memory than the process may take is refused with both
/// numbers. The limit is the test's own: an address-space limit (`ulimit -v`) of 5 GiB,
/// of which the process's own mappings leave less, whatever memory the machine has free.
#[test]
fn training_a_model_too_big_for_memory_is_refused_with_the_number() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 2);
    let out = dir.path().join("model");
    let mut args = train_args(data.to_str().unwrap(), out.to_str().unwrap(), "1");
    // A 1-layer GRU of 8192 units: 6 · 8192² weights, about 6 GiB to train.
    for (flag, value) in [("--hidden", "8192"), ("--embed", "8192"), ("--layers", "1")] {
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = value;
    }
    const LIMIT: u64 = 5 << 30;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rnnlm"));
    command.args(&args);
    // SAFETY: setrlimit is async-signal-safe, and nothing else runs before exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            match libc::setrlimit(libc::RLIMIT_AS, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let o = command.output().unwrap();
    assert_error_line(&o, "needs about 6.0 GiB to train");
    let err = stderr(&o);
    let available: f64 = err
        .split(" GiB of memory is available")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no available figure in: {err}"));
    assert!(
        available < 5.0,
        "{available} GiB under a 5 GiB limit: {err}"
    );
    assert!(err.contains("lower --hidden"), "{err}");
    assert!(!out.exists());
}

#[test]
fn libtorch_running_out_of_memory_is_one_line_that_says_what_to_lower() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // One sentence of 200,000 words: the 12 million parameters pass the up-front
    // memory check, but the recurrent pass over the sentence needs gigabytes of
    // activations, beyond the 4.5 GB address space the process gets, so one of
    // libtorch's own allocations fails.
    let words = ["the", "cat", "sat", "on", "a", "mat"];
    let sentence: Vec<&str> = (0..200_000).map(|i| words[(i * 7 + i / 5) % 6]).collect();
    std::fs::write(data.join("train.txt"), sentence.join(" ") + "\n").unwrap();
    std::fs::write(data.join("valid.txt"), "the cat sat on a mat\n").unwrap();
    let out = dir.path().join("model");
    let mut args = train_args(data.to_str().unwrap(), out.to_str().unwrap(), "1");
    let at = args.iter().position(|a| *a == "--hidden").unwrap();
    args[at + 1] = "2000";
    let mut command = command(&args);
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4_500 << 20,
                rlim_max: 4_500 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = command.output().unwrap();
    assert_error_line(&o, "out of memory");
    assert!(stderr(&o).contains("lower --batch-size"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn a_diverging_first_epoch_says_no_model_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 20);
    let out = dir.path().join("model");
    let mut args = train_args(data.to_str().unwrap(), out.to_str().unwrap(), "3");
    args.extend(["--lr", "1e6", "--batch-size", "2"]);
    let o = rnnlm(&args);
    assert_error_line(&o, "training diverged");
    assert!(
        stderr(&o).contains("no model was written"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("config.json").exists());
}

#[test]
fn threads_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    for threads in ["0", "4294967297", "-1", "100000"] {
        let flag = format!("--threads={threads}");
        let o = rnnlm(&["sample", "--model", model.to_str().unwrap(), &flag]);
        assert_eq!(o.status.code(), Some(2), "{threads}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("is not in 1..=1024"),
            "{threads}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn eval_of_a_file_without_sentences_is_an_error_not_a_perplexity_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    for (name, text) in [("empty.txt", ""), ("blank.txt", "\n  \n\n")] {
        let input = write(dir.path(), name, text);
        let o = rnnlm(&["eval", "--model", model.to_str().unwrap(), "--data", &input]);
        assert_one_line_error(&o, &format!("{name}: no sentences to evaluate"));
        assert!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn class_layer_flags_without_a_class_layer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 1);
    let out = dir.path().join("m");
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    let cases: [(&[&str], &str); 3] = [
        (&["--cutoffs", "4"], "--cutoffs shapes a class output layer"),
        (
            &["--clusters", "2"],
            "--clusters shapes a class output layer",
        ),
        (
            &["--softmax", "class", "--clusters", "2", "--cutoffs", "4"],
            "--clusters and --cutoffs both set the clusters",
        ),
    ];
    for (flags, reason) in cases {
        let mut args = train_args(data, out, "1");
        args.extend_from_slice(flags);
        let o = rnnlm(&args);
        assert_one_line_error(&o, reason);
        assert!(!Path::new(out).exists(), "{flags:?}: no model directory");
    }
    // The class layer takes either flag alone.
    let mut args = train_args(data, out, "1");
    args.extend_from_slice(&["--softmax", "class", "--clusters", "2"]);
    let o = rnnlm(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_weight_for_a_score_that_is_not_there_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let model = model.to_str().unwrap();
    let input = csv_input(dir.path(), 2);
    let refs = write(
        dir.path(),
        "refs.csv",
        "utterance_id,reference\nu0,the pear\n",
    );
    let score = ["score", "--model", model, "--input", &input];
    let tune = [
        "tune",
        "--model",
        model,
        "--input",
        &input,
        "--references",
        &refs,
    ];
    let cases = [
        (
            [&score[..], &["--ngram-weight", "0.3"]].concat(),
            "--ngram-column",
        ),
        (
            [&tune[..], &["--ngram-weights", "0:1:0.5"]].concat(),
            "--ngram-column",
        ),
        (
            [&tune[..], &["--backward-weights", "0:1:0.5"]].concat(),
            "--backward-model",
        ),
    ];
    for (args, missing) in cases {
        let o = rnnlm(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(missing), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

/// `--extra-train FILE:WEIGHT` trains on the file WEIGHT times per epoch, keeps the
/// weight for `--resume`, and refuses a weight that is not above 0.
#[test]
fn extra_text_weights_repeat_the_file_and_bad_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 1);
    let extra = write(
        dir.path(),
        "extra.txt",
        "the pear is ripe\nwe ate the salad\n",
    );
    let out = dir.path().join("m");
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    for weight in ["0", "-1", "nan"] {
        let flag = format!("{extra}:{weight}");
        let mut args = train_args(data, out, "1");
        args.extend_from_slice(&["--extra-train", &flag]);
        let o = rnnlm(&args);
        assert_eq!(o.status.code(), Some(2), "{weight}: {}", stderr(&o));
        assert!(stderr(&o).contains("--extra-train"), "{}", stderr(&o));
    }
    let flag = format!("{extra}:2.5");
    let mut args = train_args(data, out, "1");
    args.extend_from_slice(&["--extra-train", &flag]);
    let o = rnnlm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // 2 sentences 2.5 times: 5 per epoch.
    assert!(
        stderr(&o).contains("extra.txt: weight 2.5: 5 sentences per epoch"),
        "{}",
        stderr(&o)
    );
    let config = std::fs::read_to_string(Path::new(out).join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["training"]["extra_train_weights"],
        serde_json::json!([2.5]),
        "{config}"
    );
}
