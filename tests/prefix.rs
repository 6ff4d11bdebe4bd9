//! Shared-prefix scoring against plain per-sentence scoring: the same numbers, less work.

mod common;
use common::{rnnlm, stderr, stdout, write};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnnlm::model::{Cell, ModelConfig, RnnLm};
use rnnlm::output::OutputConfig;
use rnnlm::prefix::{shared_token_log_probs, Work, WINDOW};
use rnnlm::score::token_log_probs;
use rnnlm::vocab::{EOS_ID, UNK_ID};
use tch::{nn, Device};

const VOCAB: i64 = 12;

fn model(cell: Cell, output: OutputConfig, seed: i64) -> (nn::VarStore, RnnLm) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let config = ModelConfig {
        cell,
        vocab_size: VOCAB,
        embed: 6,
        hidden: 9,
        layers: 2,
        dropout: 0.0,
        tie: false,
        output,
    };
    let model = RnnLm::new(&vs.root(), &config);
    (vs, model)
}

fn word(rng: &mut StdRng) -> i64 {
    // <UNK> (1) is as likely as any word: unknown words share its id.
    rng.gen_range(1..VOCAB)
}

/// N-best groups as a recognizer writes them: variants of one sentence that differ in
/// a place or two, exact duplicates, an empty candidate and one-word ones; `<EOS>` last.
fn nbest_groups(rng: &mut StdRng, groups: usize) -> Vec<Vec<i64>> {
    let mut sentences = Vec::new();
    for _ in 0..groups {
        let length = rng.gen_range(0..9);
        let base: Vec<i64> = (0..length).map(|_| word(rng)).collect();
        for candidate in 0..10 {
            let mut words = base.clone();
            match candidate {
                0 | 1 => {}                                     // the base, and an exact duplicate
                2 => words.clear(),                             // empty: <EOS> alone
                3 => words = vec![word(rng)],                   // one word
                4 if !words.is_empty() => words[0] = word(rng), // differs at the start
                _ if !words.is_empty() => {
                    let at = rng.gen_range(0..words.len());
                    match rng.gen_range(0..3) {
                        0 => words[at] = word(rng),
                        1 => words.insert(at, word(rng)),
                        _ => words.truncate(at),
                    }
                }
                _ => words.push(word(rng)),
            }
            words.push(EOS_ID);
            sentences.push(words);
        }
    }
    sentences
}

/// Every cell and output layer, forward-ordered and reversed ids (a backward model's
/// input), over more sentences than one prefix tree takes.
#[test]
fn shared_prefix_scoring_equals_plain_scoring() {
    let mut rng = StdRng::seed_from_u64(7);
    let forward = nbest_groups(&mut rng, WINDOW / 10 + 30);
    assert!(
        forward.len() > WINDOW,
        "the sentences must span two prefix trees"
    );
    let backward: Vec<Vec<i64>> = forward
        .iter()
        .map(|s| {
            let mut words = s[..s.len() - 1].to_vec();
            words.reverse();
            words.push(EOS_ID);
            words
        })
        .collect();
    assert!(forward.iter().flatten().any(|&id| id == UNK_ID));
    let class = OutputConfig::Class {
        cutoffs: vec![4, 8],
    };
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        for output in [OutputConfig::Full, class.clone()] {
            let (_vs, m) = model(cell, output.clone(), 3);
            for sentences in [&forward, &backward] {
                let plain = token_log_probs(&m, sentences, 64).unwrap();
                let (shared, work) = shared_token_log_probs(&m, sentences).unwrap();
                assert_eq!(shared.len(), plain.len());
                for (i, (a, b)) in shared.iter().zip(&plain).enumerate() {
                    assert_eq!(a.len(), b.len(), "sentence {i}");
                    for (x, y) in a.iter().zip(b) {
                        assert!(
                            (x - y).abs() < 1e-5,
                            "{cell:?} {output:?} sentence {i}: {x} vs {y}"
                        );
                    }
                    let total: f64 = a.iter().map(|&v| v as f64).sum::<f64>()
                        - b.iter().map(|&v| v as f64).sum::<f64>();
                    assert!(total.abs() < 1e-5, "sentence {i} differs by {total}");
                }
                let tokens: u64 = sentences.iter().map(|s| s.len() as u64).sum();
                assert_eq!(work.tokens, tokens);
                assert!(work.recurrent_steps * 2 < tokens, "{work:?}");
                assert!(work.output_rows < tokens, "{work:?}");
            }
        }
    }
}

/// A file scored whole and in two parts cut at a group boundary (as the Dask driver
/// cuts it) gives the same numbers for every token, plain and shared, full and class
/// layer: no sentence's numbers depend on the sentences batched with it. The network
/// is wide enough, and the groups long and uneven enough, that the products run with
/// the few rows of a deep tree level, a chunk's last batch or a rare cluster.
#[test]
fn a_sentence_scores_the_same_wherever_it_is_in_the_file() {
    const WIDE_VOCAB: i64 = 300;
    let mut rng = StdRng::seed_from_u64(11);
    let mut sentences = Vec::new();
    for _ in 0..57 {
        let length = rng.gen_range(1..30);
        let base: Vec<i64> = (0..length).map(|_| rng.gen_range(1..WIDE_VOCAB)).collect();
        for _ in 0..rng.gen_range(1..8) {
            let mut words = base.clone();
            let at = rng.gen_range(0..words.len());
            words.truncate(rng.gen_range(at..=words.len()));
            words.extend((0..rng.gen_range(0..4)).map(|_| rng.gen_range(1..WIDE_VOCAB)));
            words.push(EOS_ID);
            sentences.push(words);
        }
    }
    let cut = sentences.len() / 2 + 3;
    for output in [
        OutputConfig::Full,
        OutputConfig::Class {
            cutoffs: vec![40, 150, 290],
        },
    ] {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = ModelConfig {
            cell: Cell::Lstm,
            vocab_size: WIDE_VOCAB,
            embed: 64,
            hidden: 64,
            layers: 2,
            dropout: 0.0,
            tie: false,
            output: output.clone(),
        };
        let m = RnnLm::new(&vs.root(), &config);
        let plain = |s: &[Vec<i64>]| token_log_probs(&m, s, 64).unwrap();
        let shared = |s: &[Vec<i64>]| shared_token_log_probs(&m, s).unwrap().0;
        for (name, score) in [
            ("plain", &plain as &dyn Fn(&[Vec<i64>]) -> Vec<Vec<f32>>),
            ("shared", &shared),
        ] {
            let whole = score(&sentences);
            let mut parts = score(&sentences[..cut]);
            parts.extend(score(&sentences[cut..]));
            // The padding to `rows::MIN_ROWS` makes these equal to the bit with MKL's
            // kernels on the machines measured; no BLAS promises it, so a few units in the
            // last place of a log-probability are allowed (6e-8 relative for f32).
            for (i, (a, b)) in whole.iter().zip(&parts).enumerate() {
                assert_eq!(a.len(), b.len(), "{name} {output:?} sentence {i}");
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                        "{name} {output:?} sentence {i}: {a:?} / {b:?}"
                    );
                }
            }
        }
    }
}

/// The work on a hand-built tree: what is run once and what is not run at all.
#[test]
fn shared_prefix_work_is_the_tree_of_the_prefixes() {
    let (_vs, m) = model(Cell::Gru, OutputConfig::Full, 5);
    let sentences = vec![
        vec![5, 6, 0],
        vec![5, 6, 7, 0],
        vec![5, 8, 0],
        vec![0],
        vec![5, 6, 0],
    ];
    let (_, work) = shared_token_log_probs(&m, &sentences).unwrap();
    // Nodes: root, 5, 5·6, 5·6·<EOS>, 5·6·7, 5·6·7·<EOS>, 5·8, 5·8·<EOS>, <EOS>. The
    // recurrent layers run at the root and at 5, 5·6, 5·6·7, 5·8; the output layer scores
    // the 8 nodes below the root, against 14 tokens.
    assert_eq!(
        work,
        Work {
            tokens: 14,
            recurrent_steps: 5,
            output_rows: 8
        }
    );
}

fn train(dir: &std::path::Path, name: &str, reverse: bool) -> String {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let lines = [
        "the apple and pear salad",
        "the pear is ripe",
        "a pair of shoes",
        "we ate the salad",
        "a pear and an apple",
    ];
    let mut train: Vec<&str> = lines.iter().cycle().take(40).copied().collect();
    train.push("the zebra ate a mango");
    write(&data, "train.txt", train.join("\n") + "\n");
    write(&data, "valid.txt", lines.join("\n") + "\n");
    let out = dir.join(name);
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--min-count",
        "2",
        "--cell",
        "lstm",
        "--embed",
        "8",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--patience",
        "0",
        "--device",
        "cpu",
    ];
    if reverse {
        args.push("--reverse");
    }
    let o = rnnlm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    out.to_str().unwrap().to_string()
}

/// A forward and a backward model trained on the same small text.
fn train_pair(dir: &std::path::Path) -> (String, String) {
    (train(dir, "fwd", false), train(dir, "bwd", true))
}

/// `utterances` N-best lists of `candidates` in CSV, acoustic scores falling down each.
fn nbest_csv(candidates: &[&str], utterances: usize) -> String {
    let mut csv = String::from("utterance_id,sentence,am\n");
    for u in 0..utterances {
        for (i, c) in candidates.iter().enumerate() {
            csv += &format!("u{u},{c},{}\n", -10.0 - i as f64 * 0.3 - u as f64 * 0.01);
        }
    }
    csv
}

/// Every field of two outputs: text equal, numbers within 1e-5.
fn assert_same_output(a: &str, b: &str, what: &str) {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(&b) {
        for (f, g) in x.split([',', '\t']).zip(y.split([',', '\t'])) {
            match (f.parse::<f64>(), g.parse::<f64>()) {
                (Ok(u), Ok(v)) => assert!((u - v).abs() < 1e-5, "{what}: {x} / {y}"),
                _ => assert_eq!(f, g, "{what}: {x} / {y}"),
            }
        }
    }
}

/// `rnnlm score` with sharing on and off: the same rows in every format and OOV policy,
/// with a backward model too, and the saving logged.
#[test]
fn score_output_is_the_same_with_and_without_sharing() {
    let dir = tempfile::tempdir().unwrap();
    let (forward, backward) = train_pair(dir.path());
    let mut kaldi = String::new();
    let mut text = String::new();
    let candidates = [
        "the apple and pear salad",
        "the apple and pair salad",
        "the apple and pear salad",
        "the zebra and pear",
        "a",
        "the apple and kiwi salad",
    ];
    let csv = nbest_csv(&candidates, 30);
    for u in 0..30 {
        for (i, c) in candidates.iter().enumerate() {
            kaldi += &format!("u{u}-{} {c}\n", i + 1);
            text += &format!("{c}\n");
        }
    }
    let inputs = [
        ("csv", write(dir.path(), "nbest.csv", csv)),
        ("kaldi", write(dir.path(), "nbest.txt", kaldi)),
        ("text", write(dir.path(), "lines.txt", text)),
    ];
    for (format, input) in &inputs {
        for oov in ["divide", "unk"] {
            let run = |sharing: &str| {
                let per_token = dir
                    .path()
                    .join(format!("tokens-{format}-{oov}-{sharing}.csv"));
                let mut args = vec![
                    "score",
                    "--model",
                    &forward,
                    "--input",
                    input,
                    "--format",
                    format,
                    "--oov",
                    oov,
                    "--digits",
                    "10",
                    "--prefix-sharing",
                    sharing,
                    "--per-token",
                    per_token.to_str().unwrap(),
                ];
                if *format == "csv" {
                    args.extend(["--am-column", "am"]);
                }
                if *format != "text" {
                    args.extend(["--backward-model", &backward, "--backward-weight", "0.4"]);
                }
                let o = rnnlm(&args);
                assert!(o.status.success(), "{}", stderr(&o));
                (
                    stdout(&o),
                    std::fs::read_to_string(per_token).unwrap(),
                    stderr(&o),
                )
            };
            let (on, on_tokens, log) = run("on");
            let (off, off_tokens, _) = run("off");
            let what = format!("{format} --oov {oov}");
            assert_same_output(&on, &off, &what);
            assert_same_output(&on_tokens, &off_tokens, &what);
            assert!(log.contains("prefix sharing:"), "{log}");
        }
    }
}

/// With two threads or more the forward and backward models score each chunk at the
/// same time, one thread each; with one thread, one after the other. The output is the
/// same byte for byte.
#[test]
fn forward_and_backward_models_side_by_side_score_as_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (forward, backward) = train_pair(dir.path());
    let candidates = [
        "the apple and pear salad",
        "the apple and pair salad",
        "a pear",
    ];
    let input = write(dir.path(), "nbest.csv", nbest_csv(&candidates, 40));
    let run = |threads: &str| {
        let args = [
            "score",
            "--model",
            &forward,
            "--backward-model",
            &backward,
            "--backward-weight",
            "0.4",
            "--input",
            &input,
            "--am-column",
            "am",
            "--digits",
            "17",
            "--chunk-rows",
            "30",
            "--threads",
            threads,
        ];
        let o = rnnlm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let (apart, together) = (run("1"), run("2"));
    assert!(apart.contains("backward_logprob"), "{apart}");
    assert_eq!(apart, together);
}
