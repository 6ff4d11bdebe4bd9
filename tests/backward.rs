//! Backward models (`train --reverse`), their combination with the forward model in
//! `score --backward-model`, and `tune`'s search beyond its starting grid.

mod common;
// Its three-sentence corpus is not used here.
#[allow(dead_code)]
#[path = "common/training.rs"]
mod training;

#[path = "common/torch_rng.rs"]
mod torch_rng;
use common::{rnnlm, stderr, stdout, write};
use rnnlm::checkpoint::{LoadedModel, ModelDir};
use rnnlm::data::ZERO_INPUT;
use rnnlm::model::Cell;
use rnnlm::oov::OovScorer;
use rnnlm::rescore::score_sentences;
use rnnlm::train::train;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};
use torch_rng::torch_rng;
use training::{config, corpus_dir};

/// Four sentences, each told apart by its first word and by its last.
const FOUR: [&str; 4] = [
    "the cat sat on the mat",
    "a dog ran to the park",
    "my bird sang all day long",
    "one fish swam in a pond",
];

fn trained(dir: &Path, reverse: bool, epochs: usize) -> PathBuf {
    corpus_dir(dir, &FOUR, &FOUR);
    let mut cfg = config(dir, Cell::Lstm, epochs);
    // A constant rate: both models converge whatever the seed's shuffles, where
    // halving it at every stalled epoch can stop one short of the truth.
    cfg.lr_decay = 1.0;
    cfg.tokenizer.reverse = reverse;
    cfg.out = dir.join(if reverse { "backward" } else { "forward" });
    let _rng = torch_rng();
    train(&cfg, Device::Cpu).unwrap();
    cfg.out
}

/// Shared by the tests: a forward and a backward model trained to convergence.
fn pair() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static PAIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> =
        std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let forward = trained(dir.path(), false, 200);
        let backward = trained(dir.path(), true, 200);
        (dir, forward, backward)
    })
}

fn load(path: &Path) -> LoadedModel {
    ModelDir::new(path).load(Device::Cpu).unwrap()
}

/// Σ_t log P(token_t | tokens before it) stepped one token at a time from the zero
/// state, over `ids` as given (with `<EOS>` last).
fn step_by_step(model: &LoadedModel, ids: &[i64]) -> f64 {
    let _guard = tch::no_grad_guard();
    let mut state = model.model.zero_state(1);
    let mut input = ZERO_INPUT;
    let mut total = 0.0;
    for &token in ids {
        let (hidden, next) = model.model.step(&Tensor::from_slice(&[input]), &state);
        total += f64::try_from(model.model.log_probs(&hidden).get(0).get(token)).unwrap();
        state = next;
        input = token;
    }
    total
}

#[test]
fn a_backward_model_scores_the_chain_rule_over_the_reversed_tokens() {
    let (_dir, _, backward) = pair();
    let model = load(backward);
    assert!(
        model.config.tokenizer.reverse,
        "config.json records --reverse"
    );
    let sentence = "the cat ran to the mat";
    let reversed: Vec<String> = sentence.split(' ').rev().map(String::from).collect();
    let (ids, _) = model.vocab.encode(&reversed);
    assert_eq!(ids.last(), Some(&rnnlm::vocab::EOS_ID));
    let by_hand = step_by_step(&model, &ids);
    let scored = score_sentences(&model, &OovScorer::closed(), &[sentence], 4).unwrap();
    assert!(
        (scored[0].log_prob() - by_hand).abs() < 1e-4,
        "score {} vs the reversed chain rule {by_hand}",
        scored[0].log_prob()
    );
    // And not the chain rule in reading order: the model was trained reversed.
    let (forward_ids, _) = model
        .vocab
        .encode(&sentence.split(' ').map(String::from).collect::<Vec<_>>());
    assert!((step_by_step(&model, &forward_ids) - by_hand).abs() > 1.0);
}

#[test]
fn forward_and_backward_models_agree_on_the_likelihood_once_trained() {
    let (_dir, forward, backward) = pair();
    let (forward, backward) = (load(forward), load(backward));
    let total = |m: &LoadedModel| -> f64 {
        score_sentences(m, &OovScorer::closed(), &FOUR, 4)
            .unwrap()
            .iter()
            .map(|s| s.log_prob())
            .sum()
    };
    let (f, b) = (total(&forward), total(&backward));
    // Each sentence is one of four equally likely ones: the true total is 4 ln(1/4),
    // whichever order the chain rule factors it in.
    let truth = 4.0 * (0.25f64).ln();
    assert!((f - b).abs() < 0.5, "forward {f} vs backward {b}");
    assert!(
        (f - truth).abs() < 0.5 && (b - truth).abs() < 0.5,
        "{f} {b} vs {truth}"
    );
}

#[test]
fn sampling_a_backward_model_prints_reading_order() {
    let (_dir, _, backward) = pair();
    let o = rnnlm(&[
        "sample",
        "--model",
        backward.to_str().unwrap(),
        "--count",
        "20",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let known: Vec<&str> = FOUR.to_vec();
    let text = stdout(&o);
    let matches = text.lines().filter(|l| known.contains(l)).count();
    // A converged model reproduces the training sentences, read front to back.
    assert!(
        matches >= 15,
        "{matches} of 20 samples are training sentences:\n{text}"
    );
}

#[test]
fn score_combines_forward_backward_and_ngram_as_documented() {
    let (dir, forward, backward) = pair();
    let input = write(
        dir.path(),
        "nbest.csv",
        "utterance_id,sentence,am,ng\n\
         u1,the cat sat on the mat,-10.5,-4.25\n\
         u1,the cat sat on a mat,-9.0,-5.5\n\
         u2,one fish swam in a pond,-7.25,-3.0\n\
         u2,one fish swam in the pond,-8.0,-3.5\n",
    );
    let (b, n, lm_weight, penalty) = (0.3, 0.2, 2.5, -0.75);
    let args = [
        "score",
        "--model",
        forward.to_str().unwrap(),
        "--backward-model",
        backward.to_str().unwrap(),
        "--input",
        &input,
        "--am-column",
        "am",
        "--ngram-column",
        "ng",
        "--backward-weight",
        "0.3",
        "--ngram-weight",
        "0.2",
        "--lm-weight",
        "2.5",
        "--length-penalty",
        "-0.75",
    ];
    let o = rnnlm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let fwd_model = load(forward);
    let bwd_model = load(backward);
    let mut rows = 0;
    for record in reader.records() {
        let r = record.unwrap();
        let num = |name: &str| r[col(name)].parse::<f64>().unwrap();
        let sentence = &r[col("sentence")];
        // Each column is what the model itself gives the sentence.
        let fwd = score_sentences(&fwd_model, &OovScorer::closed(), &[sentence], 1).unwrap()[0]
            .log_prob();
        let bwd = score_sentences(&bwd_model, &OovScorer::closed(), &[sentence], 1).unwrap()[0]
            .log_prob();
        assert!((num("logprob") - fwd).abs() < 1e-3);
        assert!((num("backward_logprob") - bwd).abs() < 1e-3);
        let lm = (1.0 - b - n) * num("logprob")
            + b * num("backward_logprob")
            + n * num("ng") * std::f64::consts::LN_10;
        assert!(
            (num("lm_logprob") - lm).abs() < 1e-3,
            "{lm} vs {}",
            num("lm_logprob")
        );
        let words = sentence.split_whitespace().count() as f64;
        let score = num("am") + lm_weight * lm + penalty * words;
        assert!(
            (num("score") - score).abs() < 1e-3,
            "{score} vs {}",
            num("score")
        );
        rows += 1;
    }
    assert_eq!(rows, 4);

    // A forward model is refused as --backward-model, and the shares must fit in 1.
    let mut wrong = args.to_vec();
    wrong[4] = forward.to_str().unwrap();
    let o = rnnlm(&wrong);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a backward model"),
        "{}",
        stderr(&o)
    );
    // A backward model is refused as --model beside a --backward-model, in score and
    // in tune: the pair would be backward + backward.
    let mut both_backward = args.to_vec();
    both_backward[2] = backward.to_str().unwrap();
    let refs = write(
        dir.path(),
        "both-refs.csv",
        "utterance_id,reference\nu1,the cat sat on the mat\nu2,one fish swam in a pond\n",
    );
    let mut tune_args = both_backward.clone();
    tune_args[0] = "tune";
    tune_args.truncate(7);
    tune_args.extend(["--references", refs.as_str()]);
    for wrong in [both_backward, tune_args] {
        let o = rnnlm(&wrong);
        assert!(!o.status.success(), "{wrong:?} accepted a backward --model");
        let err = stderr(&o);
        assert!(err.contains("--model is a backward model"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let mut over = args.to_vec();
    over[14] = "0.9";
    let o = rnnlm(&over);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("sum to more than 1"), "{}", stderr(&o));
}

#[test]
fn tune_with_a_backward_model_reports_every_row_and_scores_them_again() {
    let (dir, forward, backward) = pair();
    let input = write(
        dir.path(),
        "dev.csv",
        "utterance_id,sentence,am,ng\n\
         u1,the cat sat on a mat,-9.0,-5.5\n\
         u1,the cat sat on the mat,-10.5,-4.25\n\
         u2,one fish swam in the pond,-7.0,-3.5\n\
         u2,one fish swam in a pond,-8.0,-3.0\n",
    );
    let refs = write(
        dir.path(),
        "refs.csv",
        "utterance_id,reference\nu1,the cat sat on the mat\nu2,one fish swam in a pond\n",
    );
    let save = dir.path().join("dev.json");
    let save = save.to_str().unwrap();
    let tune = |extra: &[&str]| {
        let mut args = vec![
            "tune",
            "--model",
            forward.to_str().unwrap(),
            "--backward-model",
            backward.to_str().unwrap(),
            "--input",
            &input,
            "--references",
            &refs,
            "--am-column",
            "am",
            "--ngram-column",
            "ng",
        ];
        args.extend(extra);
        rnnlm(&args)
    };
    let o = tune(&["--save", save]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    for label in [
        "first pass (first candidate)",
        "am + n-gram, tuned (no RNN)",
        "am + forward RNN, tuned",
        "am + forward + backward RNNs, tuned",
        "all of them, tuned",
        "oracle (best candidate)",
    ] {
        assert!(table.contains(label), "{label} missing:\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(save).unwrap()).unwrap();
    assert_eq!(report["first_pass_wer"], 2.0 / 12.0);
    assert_eq!(report["oracle_wer"], 0.0);
    // The converged models know both sentences: every row with an RNN gets them right.
    assert_eq!(report["rescored_wer"], 0.0, "{report}");
    assert_eq!(report["forward_backward_wer"], 0.0, "{report}");
    // --apply evaluates the saved weights without searching: the same WER, one setting.
    let applied = tune(&["--apply", save, "--json"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let again: serde_json::Value = serde_json::from_str(&stdout(&applied)).unwrap();
    assert_eq!(again["rows"], report["rows"]);
    assert_eq!(again["settings"], 1);

    // What `score --backward-model` wrote, at full precision, tunes the same without
    // running a model: `--scored` reads `backward_logprob` with `--backward-model`.
    let o = rnnlm(&[
        "score",
        "--model",
        forward.to_str().unwrap(),
        "--backward-model",
        backward.to_str().unwrap(),
        "--input",
        &input,
        "--am-column",
        "am",
        "--ngram-column",
        "ng",
        "--digits",
        "17",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scored = write(dir.path(), "scored.csv", stdout(&o));
    let from_file = |extra: &[&str]| {
        let mut args = vec![
            "tune",
            "--scored",
            "--input",
            &scored,
            "--references",
            &refs,
            "--am-column",
            "am",
            "--ngram-column",
            "ng",
            "--json",
        ];
        args.extend(extra);
        rnnlm(&args)
    };
    let o = from_file(&["--backward-model", backward.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let wers = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["wer"].clone())
            .collect()
    };
    assert_eq!(wers(&again), wers(&report));
    assert!(again["score_flags"]
        .as_str()
        .unwrap()
        .contains("--backward-model"));
    // Without --backward-model the backward column is not read: no such row.
    let o = from_file(&[]);
    let forward_only: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        forward_only["forward_backward_wer"].is_null(),
        "{forward_only}"
    );
}

#[test]
fn tune_finds_an_optimum_far_outside_its_starting_grid() {
    // Scored lists where the right candidate wins only for 12 < lm_weight < 16: in
    // u1 the LM must outweigh an acoustic gap of 12 per nat, in u2 it must not
    // outweigh one of 16, and u3 needs a length penalty below lm_weight - 15.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "dev.csv",
        "utterance_id,sentence,am,logprob\n\
         u1,a b,0,-2\n\
         u1,a c,-12,-1\n\
         u2,d e,0,-2\n\
         u2,d f,-16,-1\n\
         u3,g h i j,0,-3\n\
         u3,g h,-30,-1\n",
    );
    let refs = write(
        dir.path(),
        "refs.csv",
        "utterance_id,reference\nu1,a c\nu2,d e\nu3,g h\n",
    );
    let tune = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "tune",
            "--scored",
            "--input",
            &input,
            "--references",
            &refs,
            "--am-column",
            "am",
            "--json",
        ];
        args.extend(extra);
        let o = rnnlm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let report = tune(&[]);
    let lm_weight = report["lm_weight"].as_f64().unwrap();
    let penalty = report["length_penalty"].as_f64().unwrap();
    assert_eq!(report["rescored_wer"], 0.0, "{report}");
    assert!(lm_weight > 12.0 && lm_weight < 16.0, "{report}");
    // u3 at that weight: (0 - 3 lm) + 4 p against (-30 - lm) + 2 p.
    assert!(-3.0 * lm_weight + 4.0 * penalty < -30.0 - lm_weight + 2.0 * penalty);
    assert!(report["at_range_end"].as_array().unwrap().is_empty());
    // The same search twice gives the same weights.
    assert_eq!(tune(&[]), report);
    // The default grid alone (0 to 3) cannot get there, and says where it stopped.
    let grid = tune(&["--grid-only"]);
    assert!(grid["rescored_wer"].as_f64().unwrap() > 0.0, "{grid}");
    assert!(
        grid["at_range_end"].to_string().contains("lm_weight"),
        "{grid}"
    );
}
