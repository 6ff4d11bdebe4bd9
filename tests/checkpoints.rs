//! The model directory on real file systems: the two-rename swap where the atomic
//! exchange is refused, its repair after a kill, the training lock, and a user's own
//! files, folders and links carried from checkpoint to checkpoint.

#[allow(dead_code)]
mod common;
use common::{rnnlm, stderr};
#[path = "common/tiny.rs"]
mod tiny;
use tiny::{assert_one_line_error, data, state_epoch, train_args};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn train(data: &Path, out: &Path, epochs: &str, resume: bool, fallback: bool) {
    let mut args = train_args(data.to_str().unwrap(), out.to_str().unwrap(), epochs);
    if resume {
        args.push("--resume");
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_rnnlm"));
    command.args(&args);
    if fallback {
        command.env(rnnlm::swap::FORCE_RENAME_FALLBACK, "1");
    }
    let o = command.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_swap_cut_between_its_two_renames_is_completed_by_the_next_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 2);
    let model = dir.path().join("model");
    let newer = dir.path().join("newer");
    train(&data, &model, "2", false, false);
    // The next checkpoint, made the same way: a copy resumed for one more epoch.
    std::fs::create_dir(&newer).unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), newer.join(entry.file_name())).unwrap();
    }
    train(&data, &newer, "3", true, false);
    // What a kill between the fallback's renames leaves: no model, the old one aside,
    // the complete next one staged.
    std::fs::rename(&model, dir.path().join(".model.old")).unwrap();
    std::fs::rename(&newer, dir.path().join(".model.next")).unwrap();
    let o = rnnlm(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &format!("{}/valid.txt", data.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_epoch(&model), 3, "the newer checkpoint is in place");
    assert!(!dir.path().join(".model.old").exists());
    assert!(!dir.path().join(".model.next").exists());
    // And a resumed training goes on from it.
    train(&data, &model, "4", true, true);
    assert_eq!(state_epoch(&model), 4);
}

#[test]
fn a_second_training_into_the_same_directory_is_refused_with_the_first_ones_pid() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 40);
    let model = dir.path().join("model");
    let (data_arg, model_arg) = (data.to_str().unwrap(), model.to_str().unwrap());
    let mut first = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(train_args(data_arg, model_arg, "100000"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().to_string();
    let lock = dir.path().join(".model.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid)
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = train_args(data_arg, model_arg, "3");
    second.push("--force");
    let o = rnnlm(&second);
    let _ = first.kill();
    let _ = first.wait();
    assert_one_line_error(&o, &format!("another training (process {pid}"));
    // Once the first has ended, the lock is free.
    let mut third = train_args(data_arg, model_arg, "1");
    third.push("--force");
    let o = rnnlm(&third);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!lock.exists(), "a finished training removes its lock");
}

fn user_files_survive(fallback: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 2);
    let model = dir.path().join("model");
    train(&data, &model, "1", false, fallback);
    std::fs::write(model.join("notes.txt"), "trained for the demo\n").unwrap();
    std::fs::create_dir_all(model.join("runs/first")).unwrap();
    std::fs::write(model.join("runs/first/log.txt"), "epoch 1\n").unwrap();
    std::os::unix::fs::symlink("notes.txt", model.join("README")).unwrap();
    train(&data, &model, "3", true, fallback);
    assert_eq!(state_epoch(&model), 3);
    assert_eq!(
        std::fs::read_to_string(model.join("notes.txt")).unwrap(),
        "trained for the demo\n"
    );
    assert_eq!(
        std::fs::read_to_string(model.join("runs/first/log.txt")).unwrap(),
        "epoch 1\n"
    );
    let link = model.join("README");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("notes.txt"));
}

#[test]
fn a_users_files_folders_and_links_survive_checkpoints() {
    user_files_survive(false);
}

#[test]
fn a_users_files_folders_and_links_survive_two_rename_checkpoints() {
    user_files_survive(true);
}

#[test]
fn resume_refuses_a_flag_that_disagrees_with_the_run_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 2);
    let model = dir.path().join("model");
    train(&data, &model, "1", false, false);
    let resume = |extra: &[&str]| {
        let mut args = train_args(data.to_str().unwrap(), model.to_str().unwrap(), "2");
        args.push("--resume");
        for pair in extra.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(at) => args[at + 1] = pair[1],
                None => args.extend(pair),
            }
        }
        rnnlm(&args)
    };
    let o = resume(&["--batch-size", "7", "--optimizer", "sgd"]);
    assert_one_line_error(&o, "--optimizer sgd (the run has adam)");
    assert!(
        stderr(&o).contains("--batch-size 7 (the run has 32)"),
        "{}",
        stderr(&o)
    );
    let o = resume(&["--hidden", "9"]);
    assert_one_line_error(&o, "--hidden 9 (the model has 8)");
    assert_eq!(state_epoch(&model), 1, "nothing was trained");
    // The run's own values, given or not, go on.
    let o = resume(&["--batch-size", "32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_epoch(&model), 2);
}
