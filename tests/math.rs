//! The mathematics: gradients against a hand-written BPTT, the chain rule against
//! step-by-step scoring, batch invariance, and the sampler's distribution.

use rnnlm::data::SentenceBatch;
use rnnlm::model::{Cell, ModelConfig, RnnLm, ZERO_INPUT};
use rnnlm::sample::{sample, Sampler};
use rnnlm::score::{sentence_log_prob, token_log_probs};
use rnnlm::vocab::UNK_ID;
use tch::{nn, Device, Kind, Tensor};

fn config(cell: Cell, vocab_size: i64, layers: i64) -> ModelConfig {
    ModelConfig {
        cell,
        vocab_size,
        embed: 5,
        hidden: 7,
        layers,
        dropout: 0.0,
        tie: false,
    }
}

fn model(cell: Cell, vocab_size: i64, layers: i64, seed: i64) -> (nn::VarStore, RnnLm) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = RnnLm::new(&vs.root(), &config(cell, vocab_size, layers));
    (vs, model)
}

fn sentences() -> Vec<Vec<i64>> {
    vec![
        vec![3, 4, 2, 5, 0],
        vec![6, 0],
        vec![2, 2, 7, 3, 4, 5, 6, 0],
        vec![1, 3, 0],
    ]
}

/// The summed loss −Σ_t log ŷ<t>[y<t>] of a batch, through the library's forward pass.
fn batch_loss(model: &RnnLm, sentences: &[Vec<i64>]) -> Tensor {
    let rows: Vec<&[i64]> = sentences.iter().map(Vec::as_slice).collect();
    let batch = SentenceBatch::new(&rows, Device::Cpu);
    let (hidden, _) = model.forward(&batch.inputs, &model.zero_state(batch.size()), false);
    -model
        .target_log_probs(&batch.gather(&hidden), &batch.targets)
        .sum(None)
}

/// Gradients of the summed loss of one tanh-RNN layer, by backpropagation through time
/// written out by hand: the error at a<t> comes from ŷ<t> and from a<t+1>, right to left.
fn hand_bptt(
    params: &std::collections::HashMap<String, Tensor>,
    sentences: &[Vec<i64>],
) -> Vec<(String, Tensor)> {
    let p = |name: &str| params[name].shallow_clone();
    let (embedding, w_ih, w_hh, b_ih, b_hh, w_out, b_out) = (
        p("encoder.weight"),
        p("rnn.weight_ih_l0"),
        p("rnn.weight_hh_l0"),
        p("rnn.bias_ih_l0"),
        p("rnn.bias_hh_l0"),
        p("decoder.weight"),
        p("decoder.bias"),
    );
    let zeros_like = |t: &Tensor| t.zeros_like();
    let mut grads = [&embedding, &w_ih, &w_hh, &b_ih, &b_hh, &w_out, &b_out].map(zeros_like);
    let hidden = w_hh.size()[0];
    for sentence in sentences {
        // Forward: keep x<t> and a<t> for every step (a[0] is a<0> = 0).
        let mut xs = Vec::new();
        let mut activations = vec![Tensor::zeros([hidden], (Kind::Double, Device::Cpu))];
        let mut outputs = Vec::new();
        for t in 0..sentence.len() {
            let x = if t == 0 {
                Tensor::zeros([embedding.size()[1]], (Kind::Double, Device::Cpu))
            } else {
                embedding.get(sentence[t - 1])
            };
            let a = (w_ih.mv(&x) + &b_ih + w_hh.mv(&activations[t]) + &b_hh).tanh();
            outputs.push((w_out.mv(&a) + &b_out).softmax(0, Kind::Double));
            xs.push(x);
            activations.push(a);
        }
        // Backward through time.
        let mut da_next = Tensor::zeros([hidden], (Kind::Double, Device::Cpu));
        for t in (0..sentence.len()).rev() {
            let a = &activations[t + 1];
            let dz = &outputs[t]
                - Tensor::zeros_like(&outputs[t]).index_fill(
                    0,
                    &Tensor::from_slice(&[sentence[t]]),
                    1.0,
                );
            grads[5] += dz.outer(a);
            grads[6] += &dz;
            let da = w_out.tr().mv(&dz) + &da_next;
            let dpre: Tensor = &da * (a * a).neg().g_add_scalar(1.0);
            grads[1] += dpre.outer(&xs[t]);
            grads[2] += dpre.outer(&activations[t]);
            grads[3] += &dpre;
            grads[4] += &dpre;
            if t > 0 {
                let mut row = grads[0].get(sentence[t - 1]);
                row += w_ih.tr().mv(&dpre);
            }
            da_next = w_hh.tr().mv(&dpre);
        }
    }
    let names = [
        "encoder.weight",
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
        "decoder.weight",
        "decoder.bias",
    ];
    names.iter().map(|n| n.to_string()).zip(grads).collect()
}

#[test]
fn autograd_matches_hand_written_bptt() {
    let (mut vs, model) = model(Cell::Rnn, 8, 1, 3);
    vs.double();
    let sentences = sentences();
    batch_loss(&model, &sentences).backward();
    let params = vs.variables();
    let expected = tch::no_grad(|| hand_bptt(&params, &sentences));
    for (name, hand) in expected {
        let auto = params[&name].grad();
        let error =
            f64::try_from((&auto - &hand).norm()).unwrap() / f64::try_from(hand.norm()).unwrap();
        assert!(error < 1e-6, "{name}: relative error {error:e}");
    }
}

#[test]
fn chain_rule_equals_step_by_step_conditionals() {
    for (cell, layers) in [(Cell::Rnn, 1), (Cell::Gru, 2), (Cell::Lstm, 2)] {
        let (_vs, model) = model(cell, 8, layers, 5);
        let sentences = sentences();
        let batched = token_log_probs(&model, &sentences, 3).unwrap();
        let _guard = tch::no_grad_guard();
        for (sentence, batched) in sentences.iter().zip(&batched) {
            let mut state = model.zero_state(1);
            let mut input = ZERO_INPUT;
            let mut total = 0.0;
            for &token in sentence {
                let (log_probs, next) = model.step(&Tensor::from_slice(&[input]), &state);
                let mass = f64::try_from(log_probs.exp().sum(Kind::Double)).unwrap();
                assert!(
                    (mass - 1.0).abs() < 1e-5,
                    "{cell:?}: next-token distribution sums to {mass}"
                );
                total += f64::try_from(log_probs.get(0).get(token)).unwrap();
                state = next;
                input = token;
            }
            let chain = sentence_log_prob(batched);
            assert!(
                (chain - total).abs() < 1e-4,
                "{cell:?}: batched {chain} vs step-by-step {total}"
            );
        }
    }
}

#[test]
fn a_sentence_score_does_not_depend_on_its_batch() {
    let (_vs, model) = model(Cell::Lstm, 8, 2, 7);
    let sentences = sentences();
    let together = token_log_probs(&model, &sentences, 4).unwrap();
    for (i, sentence) in sentences.iter().enumerate() {
        let alone = token_log_probs(&model, std::slice::from_ref(sentence), 1).unwrap();
        for (a, b) in alone[0].iter().zip(&together[i]) {
            assert!(
                (a - b).abs() < 1e-5,
                "sentence {i}: {a} alone vs {b} in a batch"
            );
        }
    }
}

#[test]
fn training_loss_does_not_depend_on_the_batch_padding() {
    let (_vs, model) = model(Cell::Gru, 8, 1, 9);
    let short = vec![vec![3, 4, 0]];
    let alone = f64::try_from(batch_loss(&model, &short)).unwrap();
    let with_long = vec![short[0].clone(), vec![2, 3, 4, 5, 6, 7, 2, 3, 0]];
    let long_alone = f64::try_from(batch_loss(&model, &with_long[1..])).unwrap();
    let both = f64::try_from(batch_loss(&model, &with_long)).unwrap();
    assert!(
        (both - alone - long_alone).abs() < 1e-4,
        "{both} != {alone} + {long_alone}"
    );
}

/// Pearson's chi-square of observed counts against expected probabilities.
fn chi_square(counts: &[usize], probs: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(probs)
        .filter(|(_, &p)| p > 0.0)
        .map(|(&c, &p)| (c as f64 - n as f64 * p).powi(2) / (n as f64 * p))
        .sum()
}

/// Upper 0.001 quantiles of the chi-square distribution by degrees of freedom (index).
const CHI2_999: [f64; 10] = [
    f64::NAN,
    10.83,
    13.82,
    16.27,
    18.47,
    20.52,
    22.46,
    24.32,
    26.12,
    27.88,
];

#[test]
fn sampler_matches_the_distribution_without_unk() {
    // <UNK> (index 1) is the most probable entry and must never be drawn.
    let probs = [0.1, 0.4, 0.2, 0.15, 0.1, 0.05];
    let mut weights = probs.to_vec();
    weights[UNK_ID as usize] = 0.0;
    let total: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let rows = Tensor::from_slice(&weights)
        .to_kind(Kind::Float)
        .unsqueeze(0)
        .repeat([20_000, 1]);
    let drawn = Vec::<i64>::try_from(Sampler::new(11).draw(&rows)).unwrap();
    let mut counts = vec![0; probs.len()];
    for d in drawn {
        counts[d as usize] += 1;
    }
    assert_eq!(counts[UNK_ID as usize], 0);
    let stat = chi_square(&counts, &expected);
    assert!(
        stat < CHI2_999[4],
        "chi-square {stat} with 4 degrees of freedom; counts {counts:?}"
    );
}

#[test]
fn first_sampled_token_follows_the_model_softmax() {
    let (_vs, model) = model(Cell::Lstm, 8, 1, 13);
    let first = tch::no_grad(|| {
        model
            .step(&Tensor::from_slice(&[ZERO_INPUT]), &model.zero_state(1))
            .0
    });
    let mut probs = Vec::<f64>::try_from(first.get(0).exp().to_kind(Kind::Double)).unwrap();
    probs[UNK_ID as usize] = 0.0;
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    let samples = sample(&model, &[], 20_000, 1, &mut Sampler::new(17)).unwrap();
    let mut counts = vec![0; probs.len()];
    for s in &samples {
        // A sample is empty when its first draw was <EOS> (index 0).
        counts[s.tokens.first().map_or(0, |&t| t as usize)] += 1;
    }
    assert_eq!(counts[UNK_ID as usize], 0);
    let stat = chi_square(&counts, &probs);
    assert!(
        stat < CHI2_999[probs.len() - 2],
        "chi-square {stat}; counts {counts:?}, probs {probs:?}"
    );
}

#[test]
fn unk_is_never_sampled_even_when_it_is_most_probable() {
    let (vs, model) = model(Cell::Rnn, 8, 1, 19);
    // Make <UNK> overwhelmingly likely at every step, and <EOS> nearly impossible.
    tch::no_grad(|| {
        let bias = vs.variables()["decoder.bias"].shallow_clone();
        let _ = bias.get(UNK_ID).fill_(20.0);
        let _ = bias.get(0).fill_(-30.0);
    });
    let samples = sample(&model, &[], 200, 30, &mut Sampler::new(23)).unwrap();
    assert!(samples.iter().all(|s| !s.tokens.contains(&UNK_ID)));
    assert!(
        samples.iter().all(|s| s.truncated && s.tokens.len() == 30),
        "--max-len caps every sample"
    );
}

#[test]
fn sample_log_prob_equals_the_chain_rule_score() {
    let (_vs, model) = model(Cell::Gru, 8, 2, 29);
    let samples = sample(&model, &[3], 50, 40, &mut Sampler::new(31)).unwrap();
    let finished: Vec<_> = samples.iter().filter(|s| !s.truncated).collect();
    assert!(!finished.is_empty());
    let sentences: Vec<Vec<i64>> = finished
        .iter()
        .map(|s| [s.tokens.clone(), vec![0]].concat())
        .collect();
    let scores = token_log_probs(&model, &sentences, 16).unwrap();
    for (s, lps) in finished.iter().zip(&scores) {
        assert_eq!(s.tokens[0], 3, "the prefix starts every sample");
        assert!((s.log_prob - sentence_log_prob(lps)).abs() < 1e-4);
    }
}

#[test]
fn same_seed_same_samples() {
    let (_vs, model) = model(Cell::Lstm, 8, 1, 37);
    let a = sample(&model, &[], 20, 15, &mut Sampler::new(41)).unwrap();
    let b = sample(&model, &[], 20, 15, &mut Sampler::new(41)).unwrap();
    assert_eq!(a, b);
}
