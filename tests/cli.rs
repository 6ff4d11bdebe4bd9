//! End to end: the `rnnlm` binary on tiny corpora in a temporary directory.

mod common;
use common::{rnnlm, stderr, stdout, write};

use std::path::{Path, PathBuf};
use std::process::Command;

const SENTENCES: [&str; 6] = [
    "the apple and pear salad",
    "the pear is ripe",
    "a pair of shoes",
    "the apple is red",
    "we ate the salad",
    "a pear and an apple",
];

/// A word corpus and a model trained on it, shared by the tests of one process.
fn trained_model() -> &'static (tempfile::TempDir, PathBuf) {
    static MODEL: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let train: Vec<&str> = SENTENCES.iter().cycle().take(60).copied().collect();
        std::fs::write(data.join("train.txt"), train.join("\n") + "\n").unwrap();
        std::fs::write(data.join("valid.txt"), SENTENCES.join("\n") + "\n").unwrap();
        let model = dir.path().join("model");
        let o = rnnlm(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--min-count",
            "1",
            "--cell",
            "lstm",
            "--embed",
            "16",
            "--hidden",
            "16",
            "--layers",
            "1",
            "--dropout",
            "0",
            "--epochs",
            "3",
            "--device",
            "cpu",
            "--lowercase",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (dir, model)
    })
}

fn model_path() -> &'static str {
    trained_model().1.to_str().unwrap()
}

#[test]
fn train_writes_a_complete_model_directory() {
    let model = &trained_model().1;
    for file in [
        "config.json",
        "vocab.txt",
        "weights.safetensors",
        "metrics.csv",
        "loss.png",
        "state.json",
    ] {
        assert!(model.join(file).exists(), "{file} missing");
    }
    let metrics = std::fs::read_to_string(model.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = metrics.lines().collect();
    assert_eq!(
        rows[0],
        "epoch,train_loss,valid_loss,valid_ppl,tokens_per_s,seconds,lr"
    );
    assert_eq!(rows.len(), 4, "{metrics}");
    let leftovers: Vec<_> = std::fs::read_dir(model)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn score_ranks_candidates_and_keeps_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.csv",
        b"utterance_id,sentence,am_score,note\r\nu1,The apple and pear salad,-10.5,\"has, comma\"\r\nu1,the apple and pare salad,-10.0,\"say \"\"hi\"\"\"\r\nu2,the pear is ripe,-3,x\r\n",
    );
    let output = dir.path().join("out.csv");
    let o = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
        "--output",
        output.to_str().unwrap(),
        "--am-column",
        "am_score",
        "--lm-weight",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut reader = csv::Reader::from_path(&output).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        headers,
        [
            "utterance_id",
            "sentence",
            "am_score",
            "note",
            "tokens",
            "oov_count",
            "logprob",
            "log10prob",
            "perplexity",
            "score",
            "rank",
            "best"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][3], "has, comma");
    assert_eq!(&rows[1][3], "say \"hi\"");
    assert_eq!(
        &rows[0][1], "The apple and pear salad",
        "input columns are unchanged"
    );
    let field = |r: &csv::StringRecord, i: usize| r[i].parse::<f64>().unwrap();
    for r in &rows {
        assert!(
            (field(r, 9) - (field(r, 2) + 2.0 * field(r, 6))).abs() < 1e-3,
            "score = am + 2 * logprob"
        );
        assert!((field(r, 7) - field(r, 6) / std::f64::consts::LN_10).abs() < 1e-3);
    }
    assert_eq!(&rows[0][4], "6", "five words and <EOS>");
    assert_eq!(&rows[1][5], "1", "'pare' is not in the vocabulary");
    let (s0, s1) = (field(&rows[0], 9), field(&rows[1], 9));
    assert_eq!(
        (&rows[0][10], &rows[1][10]),
        if s0 >= s1 { ("1", "2") } else { ("2", "1") }
    );
    assert_eq!(&rows[2][10], "1");
    assert_eq!(&rows[2][11], "true");
}

#[test]
fn score_per_token_rows_sum_to_the_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.csv",
        b"sentence\nthe pear is ripe\nwe ate the salad\n",
    );
    let per_token = dir.path().join("tokens.csv");
    let o = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
        "--per-token",
        per_token.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut sums = [0.0f64; 2];
    let mut token_rows = 0;
    let mut reader = csv::Reader::from_path(&per_token).unwrap();
    for r in reader.records() {
        let r = r.unwrap();
        sums[r[0].parse::<usize>().unwrap() - 1] += r[3].parse::<f64>().unwrap();
        token_rows += 1;
    }
    assert_eq!(
        token_rows,
        4 + 1 + 4 + 1,
        "every token and <EOS> of both sentences"
    );
    let out = stdout(&o);
    let mut scored = csv::Reader::from_reader(out.as_bytes());
    let mut compared = 0;
    for (r, sum) in scored.records().zip(sums) {
        assert!((r.unwrap()[3].parse::<f64>().unwrap() - sum).abs() < 1e-3);
        compared += 1;
    }
    assert_eq!(compared, 2);
}

#[test]
fn bad_rows_stop_with_a_one_line_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &str); 7] = [
        (
            b"id,sentence\n1,the pear\n2,the,apple\n",
            "line 3 (row 2): 3 fields where the header has 2",
        ),
        (
            b"id,sentence\n1,the pear\n2,\"the apple\n3,a pear\n",
            "line 3 (row 2): the sentence spans lines (a quote left open?)",
        ),
        (
            b"sentence,sentence\nthe pear,the apple\n",
            "line 1: the header names column 'sentence' twice",
        ),
        (
            b"sentence,logprob\nthe pear,-3.5\n",
            "line 1: the input already has a 'logprob' column, which score writes",
        ),
        (
            b"id,sentence\n1,the pear\n2,\n",
            "line 3 (row 2): empty sentence",
        ),
        (
            b"id,sentence\n1,the \xff pear\n",
            "line 2 (row 1): field 2 is not valid UTF-8",
        ),
        (b"id,text\n1,the pear\n", "no column 'sentence'"),
    ];
    for (i, (text, reason)) in cases.iter().enumerate() {
        let input = write(dir.path(), &format!("bad{i}.csv"), text);
        let output = dir.path().join(format!("out{i}.csv"));
        let o = rnnlm(&[
            "score",
            "--model",
            model_path(),
            "--input",
            &input,
            "--output",
            output.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(reason), "expected '{reason}' in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!output.exists(), "no output file after an error");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().starts_with('.')),
            "temporary file left: {names:?}"
        );
        // To standard output (`> out.csv`), the failed run prints nothing either.
        let o = rnnlm(&["score", "--model", model_path(), "--input", &input]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(stdout(&o), "", "nothing on standard output after an error");
    }
}

#[test]
fn skip_bad_scores_the_good_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.csv",
        b"id,sentence\n1,the pear\n2,the,apple\n3,\n4,a pear\n",
    );
    let o = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
        "--skip-bad",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let ids: Vec<String> = csv::Reader::from_reader(out.as_bytes())
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    assert_eq!(ids, ["1", "4"], "good rows, in input order");
    assert!(stderr(&o).contains("2 bad rows skipped"));
}

#[test]
fn output_to_a_pipe_or_through_a_symlink_keeps_it_what_it_was() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", b"id,sentence\n1,the pear\n2,a pair\n");
    let expected = stdout(&rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
    ]));

    // A FIFO stands for /dev/null and other special files: written in place, not replaced.
    let fifo = dir.path().join("scores.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let score_to = |output: &Path| {
        let o = rnnlm(&[
            "score",
            "--model",
            model_path(),
            "--input",
            &input,
            "--output",
            output.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    score_to(&fifo);
    // Checked before joining: had the FIFO been replaced, the reader would wait forever.
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(reader.join().unwrap(), expected);

    // Through a symlink, the file it points to gets the scores and the link stays.
    let target = dir.path().join("real.csv");
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    score_to(&link);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), expected);
}

#[test]
fn text_format_scores_like_eval() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "test.txt",
        b"the pear is ripe\n\nwe ate the salad\n",
    );
    let o = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
        "--format",
        "text",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "header and two sentences");
    let total: f64 = lines[1..]
        .iter()
        .map(|l| l.split('\t').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let e = rnnlm(&["eval", "--model", model_path(), "--data", &input, "--json"]);
    assert!(e.status.success(), "{}", stderr(&e));
    let json: serde_json::Value = serde_json::from_str(&stdout(&e)).unwrap();
    assert_eq!(json["tokens"], 10);
    let nats = json["nats_per_token"].as_f64().unwrap();
    assert!(
        (nats * 10.0 + total).abs() < 1e-2,
        "eval {nats} vs score total {total}"
    );
    assert!(stderr(&o).contains("1 empty lines skipped"));
}

/// A sentence with a tab, a quote or a comma stays one field of its row, in the text
/// output (tab-separated) and in the per-token file (CSV), and `--digits` sets the
/// decimals of the log-probabilities.
#[test]
fn text_and_per_token_rows_survive_tabs_quotes_and_commas() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "test.txt",
        "the pear\tis ripe\nwe ate \"the\" salad, then\n",
    );
    let per_token = dir.path().join("tokens.csv");
    let score = |digits: &str| {
        let o = rnnlm(&[
            "score",
            "--model",
            model_path(),
            "--input",
            &input,
            "--format",
            "text",
            "--digits",
            digits,
            "--per-token",
            per_token.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b'\t')
            .from_reader(o.stdout.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        rows
    };
    let rows = score("17");
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][5], "the pear\tis ripe");
    assert_eq!(&rows[1][5], "we ate \"the\" salad, then");
    let tokens: Vec<csv::StringRecord> = csv::Reader::from_path(&per_token)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    let second: Vec<&str> = tokens
        .iter()
        .filter(|r| &r[0] == "2")
        .map(|r| r.get(2).unwrap())
        .collect();
    assert!(second.contains(&"\"the\""), "{second:?}");
    assert!(second.contains(&"salad,"), "{second:?}");
    for (row, sentence) in rows.iter().enumerate() {
        let sum: f64 = tokens
            .iter()
            .filter(|r| r[0] == (row + 1).to_string())
            .map(|r| r[3].parse::<f64>().unwrap())
            .sum();
        assert!((sum - sentence[0].parse::<f64>().unwrap()).abs() < 1e-5);
        assert_eq!(sentence[0].split('.').nth(1).unwrap().len(), 17);
    }
    let rounded = score("4");
    for (exact, rounded) in rows.iter().zip(&rounded) {
        assert_eq!(rounded[0].split('.').nth(1).unwrap().len(), 4);
        let (e, r): (f64, f64) = (exact[0].parse().unwrap(), rounded[0].parse().unwrap());
        assert!((e - r).abs() <= 5e-5, "{e} vs {r}");
    }
}

#[test]
fn sample_show_logprob_agrees_with_score() {
    let o = rnnlm(&[
        "sample",
        "--model",
        model_path(),
        "--count",
        "8",
        "--seed",
        "3",
        "--show-logprob",
        "--tokens",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut csv_text = String::from("sentence,expected\n");
    for line in out.lines() {
        let (text, lp) = line.split_once('\t').unwrap();
        assert!(!text.contains("<UNK>"));
        csv_text.push_str(&format!("\"{text}\",{lp}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "samples.csv", csv_text.as_bytes());
    let scored = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
        "--skip-bad",
    ]);
    assert!(scored.status.success(), "{}", stderr(&scored));
    let scored_out = stdout(&scored);
    let mut compared = 0;
    for r in csv::Reader::from_reader(scored_out.as_bytes()).records() {
        compared += 1;
        let r = r.unwrap();
        let (expected, logprob): (f64, f64) = (r[1].parse().unwrap(), r[4].parse().unwrap());
        assert!(
            (expected - logprob).abs() < 1e-3,
            "sample {expected} vs score {logprob} for '{}'",
            &r[0]
        );
    }
    assert_eq!(compared, 8, "every sample was scored");
    let again = rnnlm(&[
        "sample",
        "--model",
        model_path(),
        "--count",
        "8",
        "--seed",
        "3",
        "--show-logprob",
        "--tokens",
    ]);
    assert_eq!(stdout(&again), out, "same seed, same samples");
}

#[test]
fn missing_cuda_is_a_one_line_error_with_exit_code_2() {
    // On a machine with GPUs, one that is not there.
    let device = if tch::Cuda::is_available() {
        "cuda:99"
    } else {
        "cuda"
    };
    let o = rnnlm(&["sample", "--model", model_path(), "--device", device]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn model_directory_problems_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    std::fs::create_dir(&copy).unwrap();
    for f in ["config.json", "vocab.txt", "weights.safetensors"] {
        std::fs::copy(trained_model().1.join(f), copy.join(f)).unwrap();
    }
    let weights = std::fs::read(copy.join("weights.safetensors")).unwrap();
    std::fs::write(
        copy.join("weights.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let o = rnnlm(&["sample", "--model", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "weights.safetensors: {} bytes, too small",
            weights.len() / 2
        )),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"));

    std::fs::write(copy.join("weights.safetensors"), &weights).unwrap();
    let config = std::fs::read_to_string(copy.join("config.json"))
        .unwrap()
        .replace("\"hidden\": 16", "\"hidden\": 15");
    std::fs::write(copy.join("config.json"), config).unwrap();
    let o = rnnlm(&["sample", "--model", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the configuration needs"),
        "{}",
        stderr(&o)
    );

    let o = rnnlm(&["sample", "--model", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a model directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_training_text_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train.txt", b"a b c\nd \xfe e\n");
    write(dir.path(), "valid.txt", b"a b\n");
    let o = rnnlm(&[
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("train.txt:2: invalid UTF-8"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn same_seed_same_training_run() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.txt",
        (SENTENCES.join("\n") + "\n").as_bytes(),
    );
    write(
        dir.path(),
        "valid.txt",
        SENTENCES[..2].join("\n").as_bytes(),
    );
    let run = |name: &str| {
        let out = dir.path().join(name);
        let o = rnnlm(&[
            "train",
            "--data",
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--min-count",
            "1",
            "--cell",
            "gru",
            "--embed",
            "8",
            "--hidden",
            "8",
            "--dropout",
            "0.3",
            "--epochs",
            "3",
            "--seed",
            "5",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        // Compare losses, not the timing columns.
        let losses: Vec<String> = metrics
            .lines()
            .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
            .collect();
        (
            losses,
            std::fs::read(out.join("weights.safetensors")).unwrap(),
        )
    };
    assert_eq!(run("a"), run("b"));
}

#[test]
fn numeric_flags_out_of_range_are_refused_before_anything_runs() {
    let cases: [&[&str]; 10] = [
        &["train", "--embed", "0"],
        &["train", "--hidden", "0"],
        &["train", "--layers", "0"],
        &["train", "--dropout", "1"],
        &["train", "--bptt", "0"],
        &["train", "--batch-size", "0"],
        &["train", "--lr", "0"],
        &["train", "--epochs", "0"],
        &["sample", "--count", "0"],
        &["score", "--ngram-weight", "1.5"],
    ];
    for case in cases {
        let mut args = case.to_vec();
        if case[0] == "train" {
            args.extend(["--data", "d", "--out", "o"]);
        } else {
            args.extend(["--model", "m"]);
        }
        let o = rnnlm(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let flag = case[1];
        assert!(
            stderr(&o).contains(&format!("invalid value '{}' for '{flag}", case[2])),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// Scores `csv_text` with the shared model and default flags: the header and the rows.
fn score_rows(csv_text: &str) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", csv_text);
    let o = rnnlm(&["score", "--model", model_path(), "--input", &input]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    (headers, reader.records().map(|r| r.unwrap()).collect())
}

#[test]
fn ranking_without_an_am_column_goes_by_logprob() {
    let (headers, rows) = score_rows(
        "utterance_id,sentence\nu1,the pear is ripe\nu1,ripe is pear the\nu1,the apple is red\n",
    );
    assert!(!headers.iter().any(|h| h == "score"), "{headers:?}");
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 3);
    let logprobs: Vec<f64> = rows
        .iter()
        .map(|r| r[column("logprob")].parse().unwrap())
        .collect();
    for (r, lp) in rows.iter().zip(&logprobs) {
        let better = logprobs.iter().filter(|other| *other > lp).count();
        assert_eq!(r[column("rank")], (better + 1).to_string(), "{logprobs:?}");
    }
}

#[test]
fn a_chunk_boundary_never_splits_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("utterance_id,sentence\n");
    for group in 0..7 {
        for candidate in 0..(1 + group % 4) {
            let sentence = SENTENCES[(group + candidate) % SENTENCES.len()];
            text.push_str(&format!("g{group},{sentence}\n"));
        }
    }
    let input = write(dir.path(), "in.csv", text);
    let run = |chunk: &str| {
        let o = rnnlm(&[
            "score",
            "--model",
            model_path(),
            "--input",
            &input,
            "--chunk-rows",
            chunk,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let whole = run("10000");
    assert_eq!(whole.lines().count(), 1 + 16);
    for chunk in ["1", "2", "3"] {
        assert_eq!(run(chunk), whole, "--chunk-rows {chunk}");
    }
    let best_per_group = whole.lines().filter(|l| l.ends_with(",1,true")).count();
    assert_eq!(best_per_group, 7, "one best per group:\n{whole}");
}

#[test]
fn the_saved_tokenizer_settings_are_applied_when_scoring() {
    // The shared model was trained with --lowercase.
    let (_, rows) = score_rows("sentence\nthe pear is ripe\nTHE Pear IS rIPE\n");
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[1][2], "0", "no OOVs once lowercased");
    assert_eq!(&rows[0][3], &rows[1][3], "the same log-probability");
}

#[test]
fn a_character_model_trains_scores_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let names = "anna\nbob\nclara\ndora\nemma\nflora\ngreta\nhanna\n".repeat(5);
    write(dir.path(), "train.txt", &names);
    write(dir.path(), "valid.txt", "anna\nemma\n");
    let model = dir.path().join("char");
    let o = rnnlm(&[
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--level",
        "char",
        "--cell",
        "gru",
        "--embed",
        "8",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--dropout",
        "0",
        "--lr",
        "0.02",
        "--batch-size",
        "8",
        "--epochs",
        "60",
        "--patience",
        "0",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = model.to_str().unwrap();
    let input = write(dir.path(), "in.txt", "anna\nqxzv\n");
    let o = rnnlm(&[
        "score", "--model", model, "--input", &input, "--format", "text", "--oov", "unk",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Vec<String>> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    assert_eq!(lines[0][3], "5", "four characters and <EOS>");
    assert_eq!(lines[1][4], "4", "q, x, z and v are unseen characters");
    let known: f64 = lines[0][0].parse().unwrap();
    assert!(known > lines[1][0].parse::<f64>().unwrap());
    assert!(
        known > -5.0f64 * 8f64.ln(),
        "a trained name beats uniform guessing: {known}"
    );
    let o = rnnlm(&["sample", "--model", model, "--count", "20", "--seed", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let samples = stdout(&o);
    assert_eq!(samples.lines().count(), 20);
    let seen: Vec<&str> = names.lines().collect();
    let copies = samples.lines().filter(|s| seen.contains(s)).count();
    assert!(
        copies >= 10,
        "mostly training names after 30 epochs:\n{samples}"
    );
}
