//! N-best rescoring as speech engineers do it: word error rate, open-vocabulary OOV
//! scoring, first-pass combination, and weights tuned by WER.

mod common;
use common::{rnnlm, stderr, stdout, write};

use rnnlm::checkpoint::ModelDir;
use rnnlm::oov::{OovClasses, OovOptions, OovPolicy, OovScorer};
use rnnlm::rescore::score_sentences;
use rnnlm::vocab::{Level, Vocab, VocabLimits};
use rnnlm::wer::{align_text, Edits};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Device;

/// Training text in which "zebra" (once) and "yak" (twice) fall below --min-count 3.
const TRAIN: [&str; 6] = [
    "the cat sat on the mat",
    "the dog sat on the rug",
    "a cat saw the dog",
    "the zebra saw a yak",
    "a yak sat on the mat",
    "the dog saw a cat",
];

/// A tiny word model whose `<UNK>` class holds "zebra" ×1 and "yak" ×2.
fn tiny_model() -> &'static (tempfile::TempDir, PathBuf) {
    static MODEL: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Three copies of the common sentences keep their words in the vocabulary.
        let mut lines = Vec::new();
        for (i, line) in TRAIN.iter().enumerate() {
            let copies = if i == 3 || i == 4 { 1 } else { 3 };
            lines.extend(std::iter::repeat_n(*line, copies));
        }
        write(dir.path(), "train.txt", &(lines.join("\n") + "\n"));
        write(dir.path(), "valid.txt", "the cat sat on the rug\n");
        let model = dir.path().join("model");
        let o = rnnlm(&[
            "train",
            "--data",
            dir.path().to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--min-count",
            "3",
            "--embed",
            "8",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--epochs",
            "2",
            "--device",
            "cpu",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (dir, model)
    })
}

fn model_path() -> &'static str {
    tiny_model().1.to_str().unwrap()
}

#[test]
fn word_error_counts_match_hand_worked_alignments() {
    let cases = [
        ("a b c d", "a b c d", (0, 0, 0)),
        ("a b c d", "a x c d", (1, 0, 0)),
        ("a b c d", "a c d", (0, 1, 0)),
        ("a b c d", "a b b c d", (0, 0, 1)),
        ("a b c d", "", (0, 4, 0)),
        ("", "a b", (0, 0, 2)),
        // "the cat sat" → "cat sat down": delete "the", insert "down".
        ("the cat sat", "cat sat down", (0, 1, 1)),
        // Two substitutions beat a deletion plus an insertion of equal cost? No: both
        // cost 2 here, and the alignment with more substitutions is reported.
        ("a b", "b a", (2, 0, 0)),
    ];
    for (reference, hypothesis, (s, d, i)) in cases {
        assert_eq!(
            align_text(reference, hypothesis),
            Edits {
                substitutions: s,
                deletions: d,
                insertions: i
            },
            "'{reference}' vs '{hypothesis}'"
        );
    }
}

fn tiny_vocab(words: &[&str]) -> Vocab {
    let sentences = vec![words.iter().map(|w| w.to_string()).collect::<Vec<_>>()];
    Vocab::build(
        &sentences,
        VocabLimits {
            min_count: 1,
            max_size: None,
        },
    )
}

/// The property the divide policy rests on: the shares of all the words never seen in
/// training sum to the unseen mass. Enumerated over every string of the training
/// spellings' letters (a, b) and of one stand-in (z) for the escape letters, which
/// all share one probability, each z then counting for all of them; lengths 1 to 9
/// exactly, and past that the geometric tail that the lengths' masses fall by.
#[test]
fn the_shares_of_all_unseen_words_sum_to_the_unseen_mass() {
    let vocab = tiny_vocab(&["ab", "ba", "b"]);
    let counts: HashMap<String, u64> = [("aab", 2), ("bb", 1)]
        .into_iter()
        .map(|(w, c)| (w.to_string(), c))
        .collect();
    let classes = OovClasses::new(Level::Word, &vocab, counts.clone());
    // Every letter outside the spellings is an escape letter of one probability.
    let escape = classes.log_share("z");
    for other in ["q", "é", "中", "🙂"] {
        assert!((classes.log_share(other) - escape).abs() < 1e-12, "{other}");
    }
    // Tokens are non-empty strings of non-whitespace scalars.
    let whitespace = (0..0x11_0000u32)
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .count();
    let escapes = (0x11_0000 - 0x800 - whitespace - 2) as f64;
    let excluded = ["ab", "ba", "b", "aab", "bb"];
    let mut by_length = Vec::new();
    let mut words = vec![String::new()];
    for _ in 1..=9 {
        words = words
            .iter()
            .flat_map(|w| ["a", "b", "z"].map(|c| format!("{w}{c}")))
            .collect();
        let mass: f64 = words
            .iter()
            .filter(|w| !excluded.contains(&w.as_str()))
            .map(|w| {
                let zs = w.matches('z').count() as i32;
                (classes.log_share(w) + zs as f64 * escapes.ln()).exp()
            })
            .sum();
        by_length.push(mass);
    }
    // Past the longest excluded word, each length holds the same share of the last.
    let ratios: Vec<f64> = by_length.windows(2).map(|w| w[1] / w[0]).collect();
    let ratio = ratios[ratios.len() - 1];
    for r in &ratios[3..] {
        assert!((r - ratio).abs() < 1e-9, "{ratios:?}");
    }
    let enumerated: f64 = by_length.iter().sum::<f64>() + by_length[8] * ratio / (1.0 - ratio);
    let unseen = classes.log_unseen_mass().exp();
    assert!(
        (enumerated - unseen).abs() < 1e-9,
        "unseen words sum to {enumerated}, the unseen mass is {unseen}"
    );
}

#[test]
fn oov_shares_sum_to_one_over_seen_words_and_the_unseen_mass() {
    let vocab = tiny_vocab(&["the", "cat", "sat"]);
    let counts: HashMap<String, u64> = [("zebra", 1), ("yak", 2), ("okapi", 5)]
        .into_iter()
        .map(|(w, c)| (w.to_string(), c))
        .collect();
    let classes = OovClasses::new(Level::Word, &vocab, counts.clone());
    let seen: f64 = counts.keys().map(|w| classes.log_share(w).exp()).sum();
    let total = seen + classes.log_unseen_mass().exp();
    assert!((total - 1.0).abs() < 1e-12, "shares sum to {total}");
    // Witten-Bell by hand: N = 8 tokens, S = 3 types.
    assert!((classes.log_share("okapi").exp() - 5.0 / 11.0).abs() < 1e-12);
    assert!((classes.log_unseen_mass().exp() - 3.0 / 11.0).abs() < 1e-12);
    // An unseen word shares the unseen mass: less than it, more for a likelier spelling.
    let unseen = classes.log_share("tac");
    assert!(unseen < classes.log_unseen_mass());
    assert!(classes.log_share("tac") > classes.log_share("qxj"));
    assert!(classes.log_share("tac") > classes.log_share("tacacatac"));

    // Character level: seen characters by count, the rest evenly over Unicode.
    let chars = tiny_vocab(&["a", "b"]);
    let counts: HashMap<String, u64> = [("z".to_string(), 3)].into_iter().collect();
    let classes = OovClasses::new(Level::Char, &chars, counts);
    assert!((classes.log_share("z").exp() - 3.0 / 4.0).abs() < 1e-12);
    let unseen_chars = (0x11_0000 - 0x800 - 3) as f64;
    let expected = (0.25 / unseen_chars).ln();
    assert!((classes.log_share("ß") - expected).abs() < 1e-9);
}

#[test]
fn no_unk_words_in_training_leaves_all_the_mass_to_unseen_words() {
    let vocab = tiny_vocab(&["the", "cat"]);
    let classes = OovClasses::new(Level::Word, &vocab, HashMap::new());
    assert_eq!(classes.log_unseen_mass(), 0.0);
    assert!(classes.log_share("dog") < 0.0);
}

#[test]
fn divide_adds_each_unknown_words_share_to_the_unk_log_probability() {
    let loaded = ModelDir::new(model_path()).load(Device::Cpu).unwrap();
    let classes = loaded
        .oov
        .as_ref()
        .expect("oov_counts.tsv written by train");
    assert_eq!(classes.counts().get("zebra"), Some(&1));
    assert_eq!(classes.counts().get("yak"), Some(&2));
    assert_eq!(classes.counts().len(), 2);
    let sentences = ["the zebra saw a yak", "the cat sat on the mat", "a gnu sat"];
    let ids: Vec<Vec<i64>> = sentences
        .iter()
        .map(|s| loaded.vocab.encode(&loaded.config.tokenizer.tokenize(s)).0)
        .collect();
    // The model's own numbers by the pass that scoring takes (shared prefixes).
    let closed: Vec<f64> = rnnlm::prefix::shared_token_log_probs(&loaded.model, &ids)
        .unwrap()
        .0
        .iter()
        .map(|lps| lps.iter().map(|&l| l as f64).sum())
        .collect();
    let divide = OovScorer::new(
        OovOptions {
            policy: OovPolicy::Divide,
            penalty: 0.0,
        },
        loaded.oov.as_ref(),
        Path::new(model_path()),
    )
    .unwrap();
    let unk = OovScorer::closed();
    let scored_divide = score_sentences(&loaded, &divide, &sentences, 8).unwrap();
    let scored_unk = score_sentences(&loaded, &unk, &sentences, 8).unwrap();
    // N = 3 tokens of S = 2 types: zebra 1/5, yak 2/5, any unseen word within 2/5.
    let hand = [
        closed[0] + (1.0f64 / 5.0).ln() + (2.0f64 / 5.0).ln(),
        closed[1],
    ];
    for i in 0..2 {
        assert!(
            (scored_divide[i].log_prob() - hand[i]).abs() < 1e-9,
            "{}: {} vs {}",
            sentences[i],
            scored_divide[i].log_prob(),
            hand[i]
        );
    }
    let gnu_share = scored_divide[2].log_prob() - closed[2];
    assert!(gnu_share < (2.0f64 / 5.0).ln(), "{gnu_share}");
    assert_eq!(scored_divide[2].oov_log_shares[1], Some(gnu_share));
    // `unk` is the closed-vocabulary number, exactly.
    for (s, c) in scored_unk.iter().zip(&closed) {
        assert_eq!(s.log_prob(), *c);
    }
}

#[test]
fn score_cli_divides_by_default_and_adds_the_penalty_per_oov() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.csv",
        "sentence\nthe zebra saw a yak\nthe cat sat on the mat\n",
    );
    let logprobs = |extra: &[&str]| -> Vec<(f64, usize)> {
        let mut args = vec!["score", "--model", model_path(), "--input", &input];
        args.extend_from_slice(extra);
        let o = rnnlm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let rows: Vec<(f64, usize)> = csv::Reader::from_reader(out.as_bytes())
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[3].parse().unwrap(), r[2].parse().unwrap())
            })
            .collect();
        assert_eq!(rows.len(), 2);
        rows
    };
    let divide = logprobs(&[]);
    let unk = logprobs(&["--oov", "unk"]);
    let penalized = logprobs(&["--oov", "unk", "--oov-penalty", "-2.5"]);
    assert_eq!(divide[0].1, 2, "two OOV tokens");
    let expected = unk[0].0 + (1.0f64 / 5.0).ln() + (2.0f64 / 5.0).ln();
    assert!((divide[0].0 - expected).abs() < 2e-4, "{divide:?} {unk:?}");
    assert!((penalized[0].0 - (unk[0].0 - 5.0)).abs() < 2e-4);
    assert_eq!(divide[1].0, unk[1].0, "no OOV, no change");
}

#[test]
fn eval_reports_closed_vocabulary_unless_asked_to_divide() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "test.txt", "the zebra saw a yak\n");
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["eval", "--model", model_path(), "--data", &data, "--json"];
        args.extend_from_slice(extra);
        let o = rnnlm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let closed = json(&[]);
    let divide = json(&["--oov", "divide"]);
    let tokens = closed["tokens"].as_f64().unwrap();
    let nats = |v: &serde_json::Value| v["nats_per_token"].as_f64().unwrap() * tokens;
    let share = (1.0f64 / 5.0).ln() + (2.0f64 / 5.0).ln();
    assert!((nats(&divide) - (nats(&closed) - share)).abs() < 1e-6);
}

/// A scored dev set whose best weights are known: utterance A needs lm_weight > 0.5,
/// B needs lm_weight < 2/3 (0.5 is a tie, which goes to the earlier, wrong candidate),
/// and C needs length_penalty > lm_weight.
const SCORED: &str = "\
utterance_id,sentence,am,logprob
A,a c,-1,-5
A,a b,-2,-3
B,x y,-1,-4
B,x z,-3,-1
C,p q,-2,-5
C,p q r,-2,-6
";
const REFERENCES: &str = "utterance_id,reference\nA,a b\nB,x y\nC,p q r\n";

fn tune_json(args: &[&str]) -> serde_json::Value {
    let o = rnnlm(args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// `rnnlm tune --scored` on SCORED with its am column, the given `lm_weight` grid and
/// further flags.
fn tune_scored(input: &str, refs: &str, lm_weights: &str, flags: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "tune",
        "--scored",
        "--input",
        input,
        "--references",
        refs,
        "--am-column",
        "am",
        "--lm-weights",
        lm_weights,
        "--length-penalties",
        "0,1",
        "--json",
    ];
    args.extend(flags);
    tune_json(&args)
}

/// On SCORED, every list picks its right candidate exactly when 0.5 < lm_weight < 2/3
/// and length_penalty > lm_weight (A: "a b" wins above 0.5; B: "x y" below 2/3; C:
/// "p q r" when the penalty outweighs the LM's cost of its third word).
#[test]
fn tune_finds_the_known_best_weights() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "dev.csv", SCORED);
    let refs = write(dir.path(), "refs.csv", REFERENCES);
    // The line search: the middle of (0.5, 2/3) is 0.583, and 0.6 the shortest decimal
    // within a quarter of its width.
    let report = tune_scored(&input, &refs, "0,0.25,0.5,0.6,0.75,1", &[]);
    assert_eq!(report["rescored_wer"], 0.0, "{report}");
    assert_eq!(report["lm_weight"], 0.6, "{report}");
    let length_penalty = report["length_penalty"].as_f64().unwrap();
    assert!(length_penalty > 0.6, "{report}");
    assert_eq!(report["oracle_wer"], 0.0);
    assert_eq!(report["reference_words"], 7);
    assert_eq!(report["utterances"], 3);
    // First pass, each list's first candidate: A "a c" (1 error), B "x y", C "p q" (1).
    assert!((report["first_pass_wer"].as_f64().unwrap() - 2.0 / 7.0).abs() < 1e-12);
    // LM only: A "a b", B "x z" (1), C "p q" (1).
    assert!((report["lm_only_wer"].as_f64().unwrap() - 2.0 / 7.0).abs() < 1e-12);
    assert_eq!(
        report["score_flags"],
        format!("--am-column am --lm-weight 0.6 --length-penalty {length_penalty}")
    );
    // The grid search keeps the grid's first perfect setting.
    let report = tune_scored(
        &input,
        &refs,
        "0,0.25,0.5,0.6,0.75,1",
        &["--search", "grid"],
    );
    assert_eq!(report["lm_weight"], 0.6, "{report}");
    assert_eq!(report["length_penalty"], 1.0, "{report}");
    // On the grid alone, without the 0.6 setting nothing is perfect, and the first
    // best setting is kept.
    let report = tune_scored(&input, &refs, "0:1:0.5", &["--grid-only"]);
    assert!((report["rescored_wer"].as_f64().unwrap() - 1.0 / 7.0).abs() < 1e-12);
    assert_eq!(report["lm_weight"], 0.0, "{report}");
    assert_eq!(report["settings"], 6);
    // Both searches find a perfect setting between the grid's values.
    for search in ["grid", "line"] {
        let report = tune_scored(&input, &refs, "0:1:0.5", &["--search", search]);
        assert_eq!(report["rescored_wer"], 0.0, "{report}");
        let lm_weight = report["lm_weight"].as_f64().unwrap();
        assert!(lm_weight > 0.5 && lm_weight < 2.0 / 3.0, "{report}");
    }
}

/// `--max-candidates N` reads each list's first N candidates: here the first
/// candidate alone, so every row is the first pass.
#[test]
fn max_candidates_cuts_each_list_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "dev.csv", SCORED);
    let refs = write(dir.path(), "refs.csv", REFERENCES);
    let report = tune_scored(&input, &refs, "0:1:0.5", &["--max-candidates", "1"]);
    assert_eq!(report["candidates"], 3, "{report}");
    assert_eq!(report["rescored_wer"], report["first_pass_wer"]);
    assert_eq!(report["oracle_wer"], report["first_pass_wer"]);
    assert!(report["score_flags"]
        .as_str()
        .unwrap()
        .contains("--max-candidates 1"));
    let whole = tune_scored(&input, &refs, "0:1:0.5", &["--max-candidates", "2"]);
    assert_eq!(whole["candidates"], 6, "{whole}");
    assert_eq!(whole["oracle_wer"], 0.0);
    // score keeps the same rows of an unscored list.
    let nbest = write(dir.path(), "nbest.csv", NBEST);
    let score = |flags: &[&str]| {
        let mut args = vec!["score", "--model", model_path(), "--input", &nbest];
        args.extend(flags);
        rnnlm(&args)
    };
    let o = score(&["--max-candidates", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let sentences: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|r| r.split(',').nth(1).unwrap())
        .collect();
    let expected: Vec<&str> = NBEST
        .lines()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| i % 3 < 2)
        .map(|(_, r)| r.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(sentences, expected);
    // Plain text has no lists to cut.
    let o = score(&["--format", "text", "--max-candidates", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--max-candidates"), "{}", stderr(&o));
}

#[test]
fn tune_searches_the_ngram_weight() {
    // The RNN prefers the wrong candidate, the n-gram the right one: only an n-gram
    // weight above 1/3 (log10 scores converted to nats) fixes it.
    let dir = tempfile::tempdir().unwrap();
    let ln10 = std::f64::consts::LN_10;
    let input = write(
        dir.path(),
        "dev.csv",
        format!(
            "utterance_id,sentence,logprob,ng\nA,a c,-1,{}\nA,a b,-2,{}\n",
            -3.0 / ln10,
            -1.0 / ln10
        ),
    );
    let refs = write(dir.path(), "refs.csv", "utterance_id,reference\nA,a b\n");
    let report = tune_json(&[
        "tune",
        "--scored",
        "--input",
        &input,
        "--references",
        &refs,
        "--ngram-column",
        "ng",
        "--lm-weights",
        "1",
        "--length-penalties",
        "0",
        "--ngram-weights",
        "0:1:0.25",
        "--json",
    ]);
    let ngram_weight = report["ngram_weight"].as_f64().unwrap();
    assert!(ngram_weight > 1.0 / 3.0, "{report}");
    assert_eq!(report["rescored_wer"], 0.0, "{report}");
    // The first candidate is the wrong one; the n-gram alone (the baseline) and the
    // RNN alone disagree.
    assert_eq!(report["first_pass_by"], "first");
    assert_eq!(report["first_pass_wer"], 0.5);
    assert_eq!(report["baseline_wer"], 0.0);
    assert_eq!(report["lm_only_wer"], 0.5);
}

/// The dev N-best list for end-to-end tuning with the tiny model.
const NBEST: &str = "\
utterance_id,sentence,am_score,ngram
u1,the cat sat on the mat,-10.0,-5.1
u1,the cat sat on a mat,-9.5,-5.0
u1,the cat sad on the mat,-9.8,-6.0
u2,the dog saw a cat,-8.0,-4.0
u2,the dog saw cat,-7.2,-3.9
u2,the dog saw a cat the,-8.1,-4.8
u3,a yak sat on the mat,-9.0,-5.5
u3,a yak sat on the rug,-8.8,-5.4
u3,a yak sat on mat,-8.0,-4.9
";
const NBEST_REFS: &str = "utterance_id,reference
u1,the cat sat on the mat
u2,the dog saw a cat
u3,a yak sat on the mat
";

/// WER of the `best` rows of a scored CSV against the references.
fn wer_of_best(scored: &str, references: &HashMap<&str, &str>) -> f64 {
    let mut reader = csv::Reader::from_reader(scored.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, text, best) = (column("utterance_id"), column("sentence"), column("best"));
    let (mut errors, mut words) = (0, 0);
    for r in reader.records() {
        let r = r.unwrap();
        if &r[best] == "true" {
            let reference = references[&r[id]];
            errors += align_text(reference, &r[text]).errors();
            words += reference.split_whitespace().count();
        }
    }
    errors as f64 / words as f64
}

#[test]
fn scoring_with_the_flags_tune_prints_reproduces_the_tuned_wer() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "dev.csv", NBEST);
    let refs = write(dir.path(), "refs.csv", NBEST_REFS);
    let report = tune_json(&[
        "tune",
        "--model",
        model_path(),
        "--input",
        &input,
        "--references",
        &refs,
        "--am-column",
        "am_score",
        "--ngram-column",
        "ngram",
        "--json",
    ]);
    let flags: Vec<&str> = report["score_flags"].as_str().unwrap().split(' ').collect();
    let mut args = vec!["score", "--model", model_path(), "--input", &input];
    args.extend(flags);
    let o = rnnlm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let references: HashMap<&str, &str> = NBEST_REFS
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .collect();
    let wer = wer_of_best(&stdout(&o), &references);
    assert!(
        (wer - report["rescored_wer"].as_f64().unwrap()).abs() < 1e-12,
        "{wer} {report}"
    );
    // The oracle, counted here: each list's fewest errors.
    let mut fewest: HashMap<&str, usize> = HashMap::new();
    for line in NBEST.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let errors = align_text(references[fields[0]], fields[1]).errors();
        let entry = fewest.entry(fields[0]).or_insert(errors);
        *entry = (*entry).min(errors);
    }
    let words: usize = references.values().map(|r| r.split(' ').count()).sum();
    let oracle = fewest.values().sum::<usize>() as f64 / words as f64;
    assert!(
        (report["oracle_wer"].as_f64().unwrap() - oracle).abs() < 1e-12,
        "{oracle} {report}"
    );

    // --scored on what `score` wrote gives the same LM-only WER without a model run.
    let scored = write(dir.path(), "scored.csv", stdout(&o));
    let again = tune_json(&[
        "tune",
        "--scored",
        "--input",
        &scored,
        "--references",
        &refs,
        "--am-column",
        "am_score",
        "--json",
    ]);
    assert_eq!(again["lm_only_wer"], report["lm_only_wer"]);
}

/// A list read with `--no-header --columns` is tuned, and the flags `tune` prints
/// score the same rows to the same choice.
#[test]
fn tunes_printed_flags_reproduce_a_headerless_run() {
    let dir = tempfile::tempdir().unwrap();
    let headed = write(dir.path(), "dev.csv", NBEST);
    let body: String = NBEST.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let headerless = write(dir.path(), "dev-bare.csv", &body);
    let refs = write(dir.path(), "refs.csv", NBEST_REFS);
    let tune = |input: &str, extra: &[&str]| {
        let mut args = vec![
            "tune",
            "--model",
            model_path(),
            "--input",
            input,
            "--references",
            &refs,
            "--am-column",
            "am_score",
            "--json",
        ];
        args.extend(extra);
        tune_json(&args)
    };
    let columns = [
        "--no-header",
        "--columns",
        "utterance_id,sentence,am_score,ngram",
    ];
    let report = tune(&headerless, &columns);
    let headed_report = tune(&headed, &[]);
    for key in ["rescored_wer", "lm_weight", "length_penalty"] {
        assert_eq!(report[key], headed_report[key], "{key}: {report}");
    }
    let flags = report["score_flags"].as_str().unwrap();
    assert!(
        flags.contains("--no-header --columns utterance_id,sentence,am_score,ngram"),
        "{flags}"
    );
    let score = |input: &str, flags: &str| {
        let mut args = vec!["score", "--model", model_path(), "--input", input];
        args.extend(flags.split(' '));
        let o = rnnlm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let bare = score(&headerless, flags);
    let headed_flags = flags.replace(&columns.join(" "), "").replace("  ", " ");
    let with_header = score(&headed, headed_flags.trim());
    let (header, rows) = with_header.split_once('\n').unwrap();
    assert_eq!(bare, rows);
    let references: HashMap<&str, &str> = NBEST_REFS
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .collect();
    let wer = wer_of_best(&format!("{header}\n{bare}"), &references);
    assert!(
        (wer - report["rescored_wer"].as_f64().unwrap()).abs() < 1e-12,
        "{wer} {report}"
    );
}

/// The first row of a list is its first pass, so a list whose candidate numbers go
/// back is refused with its line, in `score` and in `tune`.
#[test]
fn a_list_out_of_candidate_order_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "dev.csv",
        "utterance_id,candidate_id,sentence,am_score\nu1,1,the cat,-1\nu1,2,the hat,-2\nu2,2,a dog,-1\nu2,1,a log,-2\n",
    );
    let refs = write(
        dir.path(),
        "refs.csv",
        "utterance_id,reference\nu1,the cat\nu2,a dog\n",
    );
    for command in ["score", "tune"] {
        let mut args = vec![command, "--model", model_path(), "--input", &input];
        if command == "tune" {
            args.extend(["--references", refs.as_str()]);
        }
        let o = rnnlm(&args);
        assert!(
            !o.status.success(),
            "{command} accepted a list out of order"
        );
        let err = stderr(&o);
        assert!(
            err.contains("line 5 (row 4): candidate 1 follows candidate 2 in group 'u2'"),
            "{command}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn ngram_and_am_scores_combine_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "dev.csv", NBEST);
    let o = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
        "--am-column",
        "am_score",
        "--ngram-column",
        "ngram",
        "--ngram-weight",
        "0.3",
        "--lm-weight",
        "0.8",
        "--length-penalty",
        "-0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let mut rows = 0;
    for r in reader.records() {
        let r = r.unwrap();
        let value = |name: &str| r[column(name)].parse::<f64>().unwrap();
        let words = r[column("sentence")].split_whitespace().count() as f64;
        let lm = 0.7 * value("logprob") + 0.3 * value("ngram") * std::f64::consts::LN_10;
        assert!((value("lm_logprob") - lm).abs() < 2e-4);
        let score = value("am_score") + 0.8 * lm - 0.5 * words;
        assert!((value("score") - score).abs() < 2e-4);
        rows += 1;
    }
    assert_eq!(rows, 9);
}

#[test]
fn kaldi_nbest_text_is_read_as_utterance_candidate_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "nbest.txt",
        "utt-a-1 the cat sat on the mat\nutt-a-2 the cat sad on the mat\n\nutt-b-1 a yak sat\nutt-b-2\n",
    );
    let o = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &input,
        "--format",
        "kaldi",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().take(3).collect::<Vec<_>>(),
        ["utterance_id", "candidate", "sentence"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!((&rows[0][0], &rows[0][1]), ("utt-a", "1"));
    assert_eq!((&rows[3][0], &rows[3][1], &rows[3][2]), ("utt-b", "2", ""));
    // An empty hypothesis is scored as <EOS> alone; each group has one rank 1.
    assert_eq!(&rows[3][3], "1");
    let firsts = rows.iter().filter(|r| &r[r.len() - 1] == "true").count();
    assert_eq!(firsts, 2);

    let bad = write(dir.path(), "bad.txt", "utt-a-1 the cat\nnoindex the cat\n");
    let o = rnnlm(&[
        "score",
        "--model",
        model_path(),
        "--input",
        &bad,
        "--format",
        "kaldi",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("line 2 (row 2): key 'noindex' does not end in -N"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_first_pass_scores_and_references_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "u,sentence,am,ng\nu1,the cat,-1,-2\nu1,the mat,NaN,-2\n",
            "line 3 (row 2): am score 'NaN' is not a finite number",
        ),
        (
            "u,sentence,am,ng\nu1,the cat,-1,inf\n",
            "line 2 (row 1): n-gram score 'inf' is not a finite number",
        ),
        (
            "u,sentence,am,ng\nu1,the cat,-1,\n",
            "line 2 (row 1): n-gram score is empty",
        ),
        (
            "u,sentence,am,ng\nu1,the cat,abc,-1\n",
            "am score 'abc' is not a finite number",
        ),
        (
            "u,sentence,am,ng\nu1,the cat,-1,-1\nu2,the mat,-1,-1\nu1,the rug,-1,-1\n",
            "line 4 (row 3): group 'u1' appeared earlier",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let input = write(dir.path(), &format!("in{i}.csv"), text);
        let output = dir.path().join(format!("out{i}.csv"));
        let o = rnnlm(&[
            "score",
            "--model",
            model_path(),
            "--input",
            &input,
            "--output",
            output.to_str().unwrap(),
            "--group-column",
            "u",
            "--am-column",
            "am",
            "--ngram-column",
            "ng",
        ]);
        assert_eq!(o.status.code(), Some(1), "{text}");
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        assert!(!output.exists(), "no output left behind");
    }

    let input = write(dir.path(), "dev.csv", NBEST);
    let tune_error = |refs: &str| -> String {
        let refs = write(dir.path(), "refs.csv", refs);
        let o = rnnlm(&[
            "tune",
            "--model",
            model_path(),
            "--input",
            &input,
            "--references",
            &refs,
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        stderr(&o)
    };
    let missing = tune_error("utterance_id,reference\nu1,the cat sat on the mat\nu3,a yak\n");
    assert!(
        missing.contains("line 5 (row 4): utterance 'u2' has no reference"),
        "{missing}"
    );
    let twice = tune_error("utterance_id,reference\nu1,a\nu2,b\nu1,c\nu3,d\n");
    assert!(
        twice.contains("line 4: a second reference for utterance 'u1'"),
        "{twice}"
    );
    let extra = tune_error("utterance_id,reference\nu1,a\nu2,b\nu3,c\nu9,d\n");
    assert!(
        extra.contains("line 5: utterance 'u9' has a reference but no candidates"),
        "{extra}"
    );
    let empty = write(dir.path(), "empty.csv", "utterance_id,sentence\n");
    let refs = write(dir.path(), "r.csv", "utterance_id,reference\n");
    let o = rnnlm(&[
        "tune",
        "--model",
        model_path(),
        "--input",
        &empty,
        "--references",
        &refs,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no candidates"), "{}", stderr(&o));
}

#[test]
fn a_model_without_oov_counts_needs_oov_unk() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    std::fs::create_dir(&copy).unwrap();
    for f in ["config.json", "vocab.txt", "weights.safetensors"] {
        std::fs::copy(tiny_model().1.join(f), copy.join(f)).unwrap();
    }
    let input = write(dir.path(), "in.csv", "sentence\nthe cat\n");
    let o = rnnlm(&[
        "score",
        "--model",
        copy.to_str().unwrap(),
        "--input",
        &input,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no oov_counts.tsv"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--oov unk"), "{}", stderr(&o));
    let o = rnnlm(&[
        "score",
        "--model",
        copy.to_str().unwrap(),
        "--input",
        &input,
        "--oov",
        "unk",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A tampered file that lists a vocabulary word is refused, naming the line.
    std::fs::copy(
        tiny_model().1.join("oov_counts.tsv"),
        copy.join("oov_counts.tsv"),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(copy.join("oov_counts.tsv")).unwrap();
    text.push_str("4\tcat\n");
    std::fs::write(copy.join("oov_counts.tsv"), text).unwrap();
    let o = rnnlm(&[
        "score",
        "--model",
        copy.to_str().unwrap(),
        "--input",
        &input,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("oov_counts.tsv:4: 'cat' is in the vocabulary"),
        "{}",
        stderr(&o)
    );
}

/// `--per-token` and `--output` naming one file, however spelled or linked, is
/// refused before anything is written.
#[test]
fn per_token_and_output_in_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "nbest.csv", NBEST);
    let output = dir.path().join("out.csv");
    let spelled = dir.path().join(".").join("out.csv");
    std::fs::write(&output, "kept\n").unwrap();
    let linked = dir.path().join("link.csv");
    std::fs::hard_link(&output, &linked).unwrap();
    for per_token in [&spelled, &linked] {
        let o = rnnlm(&[
            "score",
            "--model",
            model_path(),
            "--input",
            &input,
            "--output",
            output.to_str().unwrap(),
            "--per-token",
            per_token.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{per_token:?} accepted");
        assert!(
            stderr(&o).contains("--per-token and --output both name"),
            "{}",
            stderr(&o)
        );
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "kept\n");
    }
}
