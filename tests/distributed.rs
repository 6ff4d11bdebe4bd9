//! Several ranks training as one: the process group itself (two ranks as two threads
//! of this test), and `rnnlm train` launched as ranks.

use rnnlm::distributed::{Launch, World};
use std::time::Duration;
use tch::Tensor;

/// A port no one listens on now, on the loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn launch(rank: usize, size: usize, port: u16) -> Launch {
    Launch {
        rank,
        size,
        master_addr: "127.0.0.1".to_string(),
        master_port: port,
        agent_store: false,
        attempt: 0,
        local_rank: rank,
    }
}

#[test]
fn two_ranks_sum_broadcast_and_meet() {
    let port = free_port();
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let world = World::join(&launch(rank, 2, port), Duration::from_secs(60)).unwrap();
                let mine = Tensor::from_slice(&[1.0f32 + rank as f32, 10.0]);
                let other = Tensor::from_slice(&[rank as f64]);
                world
                    .all_reduce_sum(&[mine.shallow_clone(), other.shallow_clone()])
                    .unwrap();
                let sums = world.sum(&[0.5, rank as f64]).unwrap();
                let shared = Tensor::from_slice(&[7.0f32 * (rank as f32 + 1.0)]);
                world.broadcast(std::slice::from_ref(&shared), 1).unwrap();
                world.barrier().unwrap();
                (
                    Vec::<f32>::try_from(&mine).unwrap(),
                    Vec::<f64>::try_from(&other).unwrap(),
                    sums,
                    Vec::<f32>::try_from(&shared).unwrap(),
                )
            })
        })
        .collect();
    for handle in ranks {
        let (mine, other, sums, shared) = handle.join().unwrap();
        assert_eq!(mine, [3.0, 20.0]);
        assert_eq!(other, [1.0]);
        assert_eq!(sums, [1.0, 1.0]);
        assert_eq!(shared, [14.0]);
    }
}

#[test]
fn a_rank_alone_fails_within_the_timeout_with_one_line() {
    let port = free_port();
    let start = std::time::Instant::now();
    let error = World::join(&launch(1, 2, port), Duration::from_secs(3))
        .err()
        .expect("no rank 0 serves the rendezvous");
    let message = error.to_string();
    assert!(
        message.starts_with("rank 1 of 2: cannot join the process group at 127.0.0.1:"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

#[allow(dead_code)]
mod common;
#[path = "common/tiny.rs"]
mod tiny;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// `rnnlm train` on the tiny corpus with dropout off, as rank `rank` of `ranks` (or alone
/// when `ranks` is 1), with `extra` flags.
fn train_rank(
    data: &Path,
    out: &Path,
    rank: usize,
    ranks: usize,
    port: u16,
    extra: &[&str],
) -> Child {
    let mut args = tiny::train_args(data.to_str().unwrap(), out.to_str().unwrap(), "3");
    args.extend(["--dropout", "0", "--batch-size", "4", "--threads", "1"]);
    // A flag given again in `extra` replaces its value.
    let mut extra = extra.iter();
    while let Some(&flag) = extra.next() {
        let value = extra
            .clone()
            .next()
            .filter(|v| !v.starts_with("--"))
            .copied();
        match (args.iter().position(|a| *a == flag), value) {
            (Some(at), Some(value)) => {
                args[at + 1] = value;
                extra.next();
            }
            (None, Some(value)) => {
                args.extend([flag, value]);
                extra.next();
            }
            (_, None) => args.push(flag),
        }
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_rnnlm"));
    command
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if ranks > 1 {
        command
            .env("WORLD_SIZE", ranks.to_string())
            .env("RANK", rank.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
    }
    command.spawn().unwrap()
}

/// Every rank of a run, waited for.
fn train_ranks(data: &Path, out: &Path, ranks: usize, extra: &[&str]) -> Vec<Output> {
    let port = free_port();
    let children: Vec<Child> = (0..ranks)
        .map(|r| train_rank(data, out, r, ranks, port, extra))
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn assert_all_succeeded(outputs: &[Output]) {
    for (rank, o) in outputs.iter().enumerate() {
        assert!(
            o.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn weights(model: &Path) -> Vec<(String, Tensor)> {
    let mut named = Tensor::read_safetensors(model.join("last.safetensors")).unwrap();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

fn corpus(dir: &Path) -> PathBuf {
    tiny::data(dir, 8)
}

/// Every parameter of `a` within 1e-5 relative of `b`'s.
fn assert_close(a: &Path, b: &Path) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = f64::try_from(y.abs().max()).unwrap().max(1e-3);
        let gap = f64::try_from((x - y).abs().max()).unwrap();
        assert!(gap <= 1e-5 * scale, "{name}: {gap} apart (scale {scale})");
    }
}

/// The weights, the last weights and Adam's state of `a` and `b` are the same bytes.
fn assert_same_files(a: &Path, b: &Path) {
    for file in [
        "last.safetensors",
        "optimizer.safetensors",
        "weights.safetensors",
    ] {
        assert!(
            std::fs::read(a.join(file)).unwrap() == std::fs::read(b.join(file)).unwrap(),
            "{file} differs"
        );
    }
}

/// Two ranks of 4 sentences a batch take the steps of one process that sums two
/// batches a step (`--accumulate 2`): every parameter within 1e-5 relative after three
/// epochs (the sums are added in another order, so not to the bit).
#[test]
fn two_ranks_train_as_one_process_on_both_batches() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let (two, one) = (dir.path().join("two"), dir.path().join("one"));
    assert_all_succeeded(&train_ranks(&data, &two, 2, &[]));
    assert_all_succeeded(&train_ranks(&data, &one, 1, &["--accumulate", "2"]));
    assert_close(&two, &one);
    // Rank 0 alone wrote the directory, with the run's steps recorded.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["batches_per_step"], 2, "{state}");
}

/// The embedding tied to a class output layer: the lookup's rows, gathered from
/// each rank, and the output blocks' dense gradients sum to one process's. Three ranks
/// on 10 batches an epoch: in each epoch's last step two ranks have no batch. The
/// activation penalties read the recurrent layers beside the output layer, so the
/// backward pass split at the output layer's input must carry both.
#[test]
fn three_ranks_with_a_tied_class_layer_train_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let (three, one) = (dir.path().join("three"), dir.path().join("one"));
    let tied = ["--tie", "--softmax", "class", "--ar", "2", "--tar", "1"];
    assert_all_succeeded(&train_ranks(&data, &three, 3, &tied));
    let accumulate = [&tied[..], &["--accumulate", "3"]].concat();
    assert_all_succeeded(&train_ranks(&data, &one, 1, &accumulate));
    assert_close(&three, &one);
}

/// Each rank sums two batches of a step before the last one's backward pass is split
/// around the output layer's sum: 2 ranks with `--accumulate 2` train as one process
/// with `--accumulate 4`.
#[test]
fn two_ranks_accumulating_train_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let (two, one) = (dir.path().join("two"), dir.path().join("one"));
    let tied = ["--tie", "--softmax", "class", "--ar", "2"];
    let two_flags = [&tied[..], &["--accumulate", "2"]].concat();
    assert_all_succeeded(&train_ranks(&data, &two, 2, &two_flags));
    let one_flags = [&tied[..], &["--accumulate", "4"]].concat();
    assert_all_succeeded(&train_ranks(&data, &one, 1, &one_flags));
    assert_close(&two, &one);
}

/// Cut by `--max-steps` and resumed, two ranks end byte-identical to two ranks uncut;
/// a resume by one process must take as many batches a step.
#[test]
fn two_ranks_cut_and_resumed_equal_two_ranks_uncut() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let (uncut, cut) = (dir.path().join("uncut"), dir.path().join("cut"));
    assert_all_succeeded(&train_ranks(&data, &uncut, 2, &[]));
    assert_all_succeeded(&train_ranks(&data, &cut, 2, &["--max-steps", "7"]));
    let alone = train_ranks(&data, &cut, 1, &["--resume"]);
    let err = String::from_utf8_lossy(&alone[0].stderr).to_string();
    assert!(!alone[0].status.success());
    assert!(err.contains("the run took 2 batches a step"), "{err}");
    assert_all_succeeded(&train_ranks(&data, &cut, 2, &["--resume"]));
    assert_same_files(&uncut, &cut);
}

/// A rank killed mid-run makes the other fail within `--dist-timeout`, with one line
/// that names it, and the model directory still loads.
#[test]
fn a_killed_rank_makes_the_other_fail_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny::data(dir.path(), 200);
    let out = dir.path().join("model");
    let port = free_port();
    let extra = ["--epochs", "100000", "--dist-timeout", "10"];
    let survivor = train_rank(&data, &out, 0, 2, port, &extra);
    let mut victim = train_rank(&data, &out, 1, 2, port, &extra);
    let start = std::time::Instant::now();
    while !out.join("state.json").exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(out.join("state.json").exists(), "a checkpoint was written");
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed_at = std::time::Instant::now();
    let o = survivor.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{err}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(60),
        "{:?}",
        killed_at.elapsed()
    );
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    assert!(error_lines[0].contains("rank 0 of 2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let o = common::rnnlm(&["sample", "--model", out.to_str().unwrap(), "--count", "1"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
}

/// Ranks started with different flags are refused at start-up, every one of them.
#[test]
fn ranks_with_different_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let out = dir.path().join("model");
    let port = free_port();
    let zero = train_rank(&data, &out, 0, 2, port, &[]);
    let one = train_rank(&data, &out, 1, 2, port, &["--lr", "0.01"]);
    for (rank, child) in [zero, one].into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "rank {rank}: {err}");
        assert!(err.contains("rank"), "{err}");
    }
    assert!(!out.join("state.json").exists());
}

/// With dropout on, two runs of 2 ranks are byte-identical (dropout is seeded per batch).
#[test]
fn two_runs_of_two_ranks_with_dropout_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        assert_all_succeeded(&train_ranks(&data, out, 2, &["--dropout", "0.3"]));
    }
    assert_same_files(&a, &b);
}

/// A 2-rank run cut inside an epoch goes on in one process that takes as many batches
/// a step (`--accumulate 2`), to within rounding of the uncut 2-rank run.
#[test]
fn one_process_resumes_a_two_rank_run_with_as_many_batches_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let (uncut, cut) = (dir.path().join("uncut"), dir.path().join("cut"));
    assert_all_succeeded(&train_ranks(&data, &uncut, 2, &[]));
    assert_all_succeeded(&train_ranks(&data, &cut, 2, &["--max-steps", "7"]));
    assert_all_succeeded(&train_ranks(
        &data,
        &cut,
        1,
        &["--resume", "--accumulate", "2"],
    ));
    assert_close(&cut, &uncut);
}

/// Bad launches are one-line errors: `WORLD_SIZE` without `RANK`, and a rank whose
/// `MASTER_ADDR` serves nothing (after `--dist-timeout`).
#[test]
fn bad_launches_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let out = dir.path().join("model");
    let port = free_port().to_string();
    for (vars, wanted) in [
        (
            vec![("WORLD_SIZE", "2")],
            "WORLD_SIZE is 2 but RANK is not set",
        ),
        (
            vec![
                ("WORLD_SIZE", "2"),
                ("RANK", "1"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", port.as_str()),
            ],
            "rank 1 of 2: cannot join the process group at 127.0.0.1:",
        ),
    ] {
        let mut args = tiny::train_args(data.to_str().unwrap(), out.to_str().unwrap(), "1");
        args.extend(["--dist-timeout", "3"]);
        let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
            .args(&args)
            .envs(vars)
            .output()
            .unwrap();
        tiny::assert_one_line_error(&o, wanted);
    }
    // A rank asked to train on a GPU the machine lacks fails before the rendezvous,
    // not after the timeout.
    if !tch::Cuda::is_available() {
        let mut args = tiny::train_args(data.to_str().unwrap(), out.to_str().unwrap(), "1");
        let device = args.iter().position(|a| *a == "--device").unwrap();
        args[device + 1] = "cuda";
        let started = std::time::Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
            .args(&args)
            .envs([
                ("WORLD_SIZE", "2"),
                ("RANK", "1"),
                ("LOCAL_RANK", "1"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", port.as_str()),
            ])
            .output()
            .unwrap();
        // The exit code of a missing device, as for one process.
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(
            err.trim(),
            "error: --device cuda:1: no CUDA device is available on this machine"
        );
        assert!(started.elapsed().as_secs() < 60);
    }
    assert!(!out.exists());
}
