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

/// What a kill between the fallback's two renames leaves (no `model`, the old one
/// aside, the newer one staged), made from two real checkpoints: epoch 2 aside, epoch 3
/// staged.
fn cut_swap(dir: &Path, data: &Path) -> std::path::PathBuf {
    let model = dir.join("model");
    let newer = dir.join("newer");
    train(data, &model, "2", false, false);
    std::fs::create_dir(&newer).unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), newer.join(entry.file_name())).unwrap();
    }
    train(data, &newer, "3", true, false);
    std::fs::rename(&model, dir.join(".model.old")).unwrap();
    std::fs::rename(&newer, dir.join(".model.next")).unwrap();
    model
}

/// A training repairs a cut swap itself, under the lock it holds, with no load
/// before it: `--resume` goes on from the staged checkpoint, and `--force` replaces it.
#[test]
fn a_training_completes_a_cut_swap_under_its_own_lock() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 2);
    let model = cut_swap(dir.path(), &data);
    train(&data, &model, "4", true, true);
    assert_eq!(state_epoch(&model), 4, "resumed from the staged epoch 3");
    assert!(!dir.path().join(".model.old").exists());
    assert!(!dir.path().join(".model.next").exists());

    let again = tempfile::tempdir().unwrap();
    let data = tiny::data(again.path(), 2);
    let model = cut_swap(again.path(), &data);
    let mut args = train_args(data.to_str().unwrap(), model.to_str().unwrap(), "1");
    args.push("--force");
    let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(&args)
        .env(rnnlm::swap::FORCE_RENAME_FALLBACK, "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_epoch(&model), 1, "the new run replaced the model");
    assert!(!again.path().join(".model.old").exists());
}

/// Where `flock` fails with ENOLCK (NFS without a lock manager), made so here by a
/// preloaded `flock`: training warns once and goes on.
#[test]
fn a_file_system_without_locks_gives_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let shim = dir.path().join("no_flock.c");
    std::fs::write(
        &shim,
        "#include <errno.h>\nint flock(int fd, int operation) { (void)fd; (void)operation; errno = ENOLCK; return -1; }\n",
    )
    .unwrap();
    let library = dir.path().join("libno_flock.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&shim)
        .status()
        .expect("a C compiler (cc) builds the flock shim");
    assert!(built.success());
    let data = data(dir.path(), 2);
    let model = dir.path().join("model");
    let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(train_args(
            data.to_str().unwrap(),
            model.to_str().unwrap(),
            "1",
        ))
        .env("LD_PRELOAD", &library)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("this file system has no locks").count(),
        1,
        "{err}"
    );
    assert_eq!(state_epoch(&model), 1);
    assert!(!dir.path().join(".model.lock").exists());
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

/// A resumed run keeps its own epochs and patience when the command line gives none,
/// rather than the flags' defaults (10 and 3); the seed, the tokenizer, the vocabulary
/// cut and the output layer are the run's too, and a flag that disagrees is refused.
#[test]
fn resume_takes_the_runs_length_seed_tokenizer_vocabulary_and_output_layer() {
    let dir = tempfile::tempdir().unwrap();
    // 100 sentences: 4 batches an epoch.
    let data = data(dir.path(), 20);
    let model = dir.path().join("model");
    let (data_arg, model_arg) = (data.to_str().unwrap(), model.to_str().unwrap());
    let mut first = train_args(data_arg, model_arg, "3");
    first.extend(["--max-steps", "1"]);
    let o = rnnlm(&first);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_epoch(&model), 0, "cut inside the first epoch");
    // The flags of the run without its length: no --epochs, no --patience.
    let without_length = |extra: &[&'static str]| {
        let mut args = train_args(data_arg, model_arg, "3");
        for flag in ["--epochs", "--patience"] {
            let at = args.iter().position(|a| *a == flag).unwrap();
            args.drain(at..at + 2);
        }
        args.push("--resume");
        match extra {
            [flag, value] if args.contains(flag) => {
                let at = args.iter().position(|a| a == flag).unwrap();
                args[at + 1] = value;
            }
            _ => args.extend(extra),
        }
        rnnlm(&args)
    };
    for (extra, refused) in [
        (&["--seed", "7"][..], "--seed 7 (the run has 1)"),
        (
            &["--lowercase"][..],
            "--lowercase true (the model has false)",
        ),
        (
            &["--recognizer-form"][..],
            "--recognizer-form true (the model has false)",
        ),
        (&["--min-count", "2"][..], "--min-count 2 (the model has 1)"),
        (
            &["--level", "char"][..],
            "--level char (the model has word)",
        ),
        (
            &["--softmax", "class"][..],
            "--softmax class (the model has full)",
        ),
    ] {
        let o = without_length(extra);
        assert_one_line_error(&o, refused);
    }
    assert_eq!(state_epoch(&model), 0, "nothing was trained");
    let o = without_length(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        state_epoch(&model),
        3,
        "the run's 3 epochs, not the default 10"
    );
    let o = without_length(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("its 3 epochs are done"),
        "{}",
        stderr(&o)
    );
    // Given anew, --epochs lengthens a plateau run.
    let o = without_length(&["--epochs", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_epoch(&model), 4);
}

/// `loss.png` is drawn with the font compiled into the binary: a machine without any
/// font installed (here, fontconfig given an empty configuration) still gets its text.
#[test]
fn the_loss_plot_needs_no_installed_font() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 2);
    let model = dir.path().join("model");
    let empty = dir.path().join("fonts.conf");
    std::fs::write(
        &empty,
        "<?xml version=\"1.0\"?>\n<fontconfig></fontconfig>\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(train_args(
            data.to_str().unwrap(),
            model.to_str().unwrap(),
            "2",
        ))
        .env("FONTCONFIG_FILE", &empty)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("WARN"), "{}", stderr(&o));
    let png = std::fs::read(model.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}
