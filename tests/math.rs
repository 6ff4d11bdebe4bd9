//! The mathematics: gradients against a hand-written BPTT, the chain rule against
//! step-by-step scoring, batch invariance, and the sampler's distribution.

#[path = "common/torch_rng.rs"]
mod torch_rng;
use rnnlm::data::SentenceBatch;
use rnnlm::model::{Cell, ModelConfig, RnnLm, ZERO_INPUT};
use rnnlm::optim::{Optimizer, OptimizerKind};
use rnnlm::output::OutputConfig;
use rnnlm::sample::{sample, Sampler};
use rnnlm::score::{sentence_log_prob, token_log_probs};
use rnnlm::vocab::UNK_ID;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};
use torch_rng::torch_rng;

fn config(cell: Cell, vocab_size: i64, layers: i64) -> ModelConfig {
    ModelConfig {
        cell,
        vocab_size,
        embed: 5,
        hidden: 7,
        layers,
        dropout: 0.0,
        tie: false,
        output: Default::default(),
    }
}

fn model(cell: Cell, vocab_size: i64, layers: i64, seed: i64) -> (nn::VarStore, RnnLm) {
    model_with(cell, vocab_size, layers, seed, OutputConfig::Full)
}

fn model_with(
    cell: Cell,
    vocab_size: i64,
    layers: i64,
    seed: i64,
    output: OutputConfig,
) -> (nn::VarStore, RnnLm) {
    model_of_kind(cell, vocab_size, layers, seed, output, Kind::Float)
}

/// A model whose parameters are created as `kind`.
fn model_of_kind(
    cell: Cell,
    vocab_size: i64,
    layers: i64,
    seed: i64,
    output: OutputConfig,
    kind: Kind,
) -> (nn::VarStore, RnnLm) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(kind);
    let config = ModelConfig {
        output,
        ..config(cell, vocab_size, layers)
    };
    let model = RnnLm::new(&vs.root(), &config);
    (vs, model)
}

/// The gradient of `loss` for each of the model's parameters, by name, as training
/// gathers them.
fn named_gradients(vs: &nn::VarStore, model: &RnnLm, loss: &Tensor) -> HashMap<String, Tensor> {
    let params = vs.trainable_variables();
    let optimizer = Optimizer::new(
        OptimizerKind::Sgd,
        params.iter().map(Tensor::shallow_clone).collect(),
        0.0,
    )
    .share(model.shared_parameters())
    .unwrap();
    let grads = optimizer.gradients(loss).unwrap();
    vs.variables()
        .into_iter()
        .map(|(name, var)| {
            let i = params
                .iter()
                .position(|p| p.data_ptr() == var.data_ptr())
                .unwrap();
            (name, grads[i].shallow_clone())
        })
        .collect()
}

/// A class output layer for the 8-token test vocabulary: head 0..3, clusters 3..5, 5..8.
fn class_layer() -> OutputConfig {
    OutputConfig::Class {
        cutoffs: vec![3, 5],
    }
}

/// Both output layers, for the tests that must hold for each.
fn output_layers() -> [OutputConfig; 2] {
    [OutputConfig::Full, class_layer()]
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
    let _rng = torch_rng();
    let (vs, model) = model_of_kind(Cell::Rnn, 8, 1, 3, OutputConfig::Full, Kind::Double);
    let sentences = sentences();
    let grads = named_gradients(&vs, &model, &batch_loss(&model, &sentences));
    let params = vs.variables();
    let expected = tch::no_grad(|| hand_bptt(&params, &sentences));
    for (name, hand) in expected {
        let auto = grads[&name].shallow_clone();
        let error =
            f64::try_from((&auto - &hand).norm()).unwrap() / f64::try_from(hand.norm()).unwrap();
        assert!(error < 1e-6, "{name}: relative error {error:e}");
    }
}

#[test]
fn chain_rule_equals_step_by_step_conditionals() {
    let _rng = torch_rng();
    let cases = [(Cell::Rnn, 1), (Cell::Gru, 2), (Cell::Lstm, 2)];
    for ((cell, layers), output) in cases
        .into_iter()
        .flat_map(|c| output_layers().map(|o| (c, o)))
    {
        let (_vs, model) = model_with(cell, 8, layers, 5, output.clone());
        let sentences = sentences();
        let batched = token_log_probs(&model, &sentences, 3).unwrap();
        let _guard = tch::no_grad_guard();
        for (sentence, batched) in sentences.iter().zip(&batched) {
            let mut state = model.zero_state(1);
            let mut input = ZERO_INPUT;
            let mut total = 0.0;
            for &token in sentence {
                let (hidden, next) = model.step(&Tensor::from_slice(&[input]), &state);
                let log_probs = model.log_probs(&hidden);
                let mass = f64::try_from(log_probs.exp().sum(Kind::Double)).unwrap();
                assert!(
                    (mass - 1.0).abs() < 1e-5,
                    "{cell:?} {output:?}: next-token distribution sums to {mass}"
                );
                total += f64::try_from(log_probs.get(0).get(token)).unwrap();
                state = next;
                input = token;
            }
            let chain = sentence_log_prob(batched);
            assert!(
                (chain - total).abs() < 1e-4,
                "{cell:?} {output:?}: batched {chain} vs step-by-step {total}"
            );
        }
    }
}

#[test]
fn a_sentence_score_does_not_depend_on_its_batch() {
    let _rng = torch_rng();
    for output in output_layers() {
        let (_vs, model) = model_with(Cell::Lstm, 8, 2, 7, output);
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
}

#[test]
fn training_loss_does_not_depend_on_the_batch_padding() {
    let _rng = torch_rng();
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
    let _rng = torch_rng();
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
    let _rng = torch_rng();
    for output in output_layers() {
        let (_vs, model) = model_with(Cell::Lstm, 8, 1, 13, output);
        let first = tch::no_grad(|| {
            let (hidden, _) = model.step(&Tensor::from_slice(&[ZERO_INPUT]), &model.zero_state(1));
            model.log_probs(&hidden)
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
}

#[test]
fn unk_is_never_sampled_even_when_it_is_most_probable() {
    let _rng = torch_rng();
    for output in output_layers() {
        let (vs, model) = model_with(Cell::Rnn, 8, 1, 19, output);
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
}

#[test]
fn sample_log_prob_equals_the_chain_rule_score() {
    let _rng = torch_rng();
    for output in output_layers() {
        let (_vs, model) = model_with(Cell::Gru, 8, 2, 29, output);
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
}

#[test]
fn same_seed_same_samples() {
    let _rng = torch_rng();
    let (_vs, model) = model(Cell::Lstm, 8, 1, 37);
    let a = sample(&model, &[], 20, 15, &mut Sampler::new(41)).unwrap();
    let b = sample(&model, &[], 20, 15, &mut Sampler::new(41)).unwrap();
    assert_eq!(a, b);
    let other = sample(&model, &[], 20, 15, &mut Sampler::new(42)).unwrap();
    assert_ne!(a, other, "another seed draws other sequences");
}

#[test]
fn dropout_is_off_at_evaluation() {
    let _rng = torch_rng();
    tch::manual_seed(17);
    let vs = nn::VarStore::new(Device::Cpu);
    let with_dropout = ModelConfig {
        dropout: 0.5,
        ..config(Cell::Lstm, 9, 2)
    };
    let model = RnnLm::new(&vs.root(), &with_dropout);
    let mut plain_vs = nn::VarStore::new(Device::Cpu);
    let plain = RnnLm::new(
        &plain_vs.root(),
        &ModelConfig {
            dropout: 0.0,
            ..with_dropout.clone()
        },
    );
    plain_vs.copy(&vs).unwrap();
    let inputs = Tensor::from_slice(&[-1i64, 3, 4, 2, 7, 1]).reshape([2, 3]);
    let _guard = tch::no_grad_guard();
    let run = |m: &RnnLm, train: bool| m.forward(&inputs, &m.zero_state(2), train).0;
    let evaluated = run(&model, false);
    assert!(
        evaluated.allclose(&run(&plain, false), 0.0, 0.0, false),
        "at evaluation, dropout 0.5 gives what dropout 0 gives"
    );
    assert!(
        !run(&model, true).allclose(&evaluated, 1e-3, 1e-3, false),
        "in training, dropout changes the outputs"
    );
}

#[test]
fn class_layer_distribution_sums_to_one() {
    let _rng = torch_rng();
    tch::manual_seed(43);
    let vs = nn::VarStore::new(Device::Cpu);
    let config = ModelConfig {
        output: OutputConfig::Class {
            cutoffs: vec![40, 150, 600],
        },
        embed: 16,
        hidden: 16,
        ..config(Cell::Lstm, 1000, 1)
    };
    let model = RnnLm::new(&vs.root(), &config);
    let _guard = tch::no_grad_guard();
    let hidden = Tensor::randn([64, 16], (Kind::Float, Device::Cpu)) * 3.0;
    let log_probs = model.log_probs(&hidden);
    assert_eq!(log_probs.size(), [64, 1000]);
    let mass =
        Vec::<f64>::try_from(log_probs.exp().sum_dim_intlist(1, false, Kind::Double)).unwrap();
    for m in &mass {
        assert!((m - 1.0).abs() < 1e-5, "a row sums to {m}");
    }
    // The target path gives the same numbers as the whole distribution.
    let targets = Tensor::randint(1000, [64], (Kind::Int64, Device::Cpu));
    let direct = model.target_log_probs(&hidden, &targets);
    let gathered = log_probs
        .gather(1, &targets.unsqueeze(1), false)
        .squeeze_dim(1);
    let gap = f64::try_from((direct - gathered).abs().max()).unwrap();
    assert!(gap < 1e-5, "target path differs by {gap}");
}

/// A cluster wider than a scoring block's logits allow is taken a block of rows at a
/// time (here 64 rows of the 100,000-word cluster); the targets' log-probabilities are
/// still those of the whole distribution, row by row.
#[test]
fn a_wide_cluster_taken_in_blocks_gives_the_whole_distribution() {
    let _rng = torch_rng();
    tch::manual_seed(44);
    let vs = nn::VarStore::new(Device::Cpu);
    let vocab = 100_150;
    let config = ModelConfig {
        output: OutputConfig::Class {
            cutoffs: vec![40, 150],
        },
        embed: 4,
        hidden: 4,
        ..config(Cell::Lstm, vocab, 1)
    };
    let model = RnnLm::new(&vs.root(), &config);
    let _guard = tch::no_grad_guard();
    let rows = 160;
    let hidden = Tensor::randn([rows, 4], (Kind::Float, Device::Cpu)) * 3.0;
    // Three in four targets in the wide cluster, the rest anywhere.
    let wide = Tensor::randint_low(150, vocab, [rows], (Kind::Int64, Device::Cpu));
    let any = Tensor::randint(vocab, [rows], (Kind::Int64, Device::Cpu));
    let pick = Tensor::arange(rows, (Kind::Int64, Device::Cpu))
        .remainder(4)
        .eq(0);
    let targets = any.where_self(&pick, &wide);
    let direct = model.target_log_probs(&hidden, &targets);
    let gathered = model
        .log_probs(&hidden)
        .gather(1, &targets.unsqueeze(1), false)
        .squeeze_dim(1);
    let gap = f64::try_from((direct - gathered).abs().max()).unwrap();
    assert!(gap < 1e-5, "the target path in blocks differs by {gap}");
}

/// The class factorization written densely, token by token: the head softmax over
/// [head words, cluster tokens], then the target's cluster softmax.
fn naive_class_log_prob(
    params: &std::collections::HashMap<String, Tensor>,
    hidden: &Tensor,
    targets: &[i64],
    bounds: &[i64],
) -> Tensor {
    let (w, b) = (&params["encoder.weight"], &params["decoder.bias"]);
    let (cw, cb) = (
        &params["decoder.cluster_weight"],
        &params["decoder.cluster_bias"],
    );
    let k = bounds[0];
    let mut total = Tensor::zeros([], (Kind::Double, Device::Cpu));
    for (row, &t) in targets.iter().enumerate() {
        let h = hidden.get(row as i64);
        let head_logits = Tensor::cat(
            &[w.narrow(0, 0, k).mv(&h) + b.narrow(0, 0, k), cw.mv(&h) + cb],
            0,
        );
        let head_lse = head_logits.logsumexp([0], false);
        let lp = if t < k {
            head_logits.get(t) - head_lse
        } else {
            let i = bounds.iter().rposition(|&start| t >= start).unwrap();
            let (start, end) = (bounds[i], bounds[i + 1]);
            let logits = w.narrow(0, start, end - start).mv(&h) + b.narrow(0, start, end - start);
            head_logits.get(k + i as i64) - &head_lse + logits.get(t - start)
                - logits.logsumexp([0], false)
        };
        total += lp;
    }
    total
}

#[test]
fn class_loss_gradient_equals_autograd_of_the_dense_factorization() {
    let _rng = torch_rng();
    tch::manual_seed(47);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let config = ModelConfig {
        output: class_layer(),
        tie: true,
        embed: 7,
        ..config(Cell::Rnn, 8, 1)
    };
    vs.set_kind(Kind::Double);
    let model = RnnLm::new(&vs.root(), &config);
    let hidden = Tensor::randn([12, 7], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let targets: Vec<i64> = vec![0, 1, 2, 3, 4, 5, 6, 7, 3, 7, 2, 5];
    let class_loss = || {
        -model
            .target_log_probs(&hidden, &Tensor::from_slice(&targets))
            .sum(Kind::Double)
    };
    let loss = class_loss();
    let names = [
        "encoder.weight",
        "decoder.bias",
        "decoder.cluster_weight",
        "decoder.cluster_bias",
    ];
    let variables = vs.variables();
    let by_name = named_gradients(&vs, &model, &class_loss());
    let mut ours: Vec<Tensor> = names.iter().map(|n| by_name[*n].shallow_clone()).collect();
    ours.extend(Tensor::run_backward(
        &[&class_loss()],
        &[&hidden],
        false,
        false,
    ));

    // The dense formulation on copies of the same numbers, differentiated by autograd.
    let copies: std::collections::HashMap<String, Tensor> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                variables[*n].detach().copy().set_requires_grad(true),
            )
        })
        .collect();
    let hidden_copy = hidden.detach().copy().set_requires_grad(true);
    let naive = -naive_class_log_prob(&copies, &hidden_copy, &targets, &[3, 5, 8]);
    let loss_gap = f64::try_from((&loss - &naive).abs()).unwrap();
    assert!(loss_gap < 1e-12, "losses differ by {loss_gap}");
    let mut inputs: Vec<Tensor> = names.iter().map(|n| copies[*n].shallow_clone()).collect();
    inputs.push(hidden_copy);
    let theirs = Tensor::run_backward(&[&naive], &inputs, false, false);
    for (name, (a, b)) in names
        .iter()
        .chain(&["hidden"])
        .zip(ours.iter().zip(&theirs))
    {
        let gap = f64::try_from((a - b).abs().max()).unwrap();
        let scale = f64::try_from(b.abs().max()).unwrap().max(1e-12);
        assert!(
            gap / scale < 1e-10,
            "{name}: relative gradient gap {}",
            gap / scale
        );
    }
}

/// With tied weights the embedding matrix is read twice, by the lookup and by every
/// block of the output layer; its gradient must be the sum of the two that an untied
/// model with the same numbers gives its embedding and its output matrix.
#[test]
fn tied_gradient_is_the_sum_of_the_embedding_and_output_gradients() {
    let _rng = torch_rng();
    for output in output_layers() {
        let build = |tie: bool| {
            let mut vs = nn::VarStore::new(Device::Cpu);
            vs.set_kind(Kind::Double);
            let config = ModelConfig {
                output: output.clone(),
                embed: 7,
                tie,
                ..config(Cell::Lstm, 8, 2)
            };
            let model = RnnLm::new(&vs.root(), &config);
            (vs, model)
        };
        tch::manual_seed(51);
        let (tied_vs, tied) = build(true);
        let (untied_vs, untied) = build(false);
        let tied_vars = tied_vs.variables();
        tch::no_grad(|| {
            for (name, mut var) in untied_vs.variables() {
                let source = if name == "decoder.weight" {
                    "encoder.weight"
                } else {
                    name.as_str()
                };
                var.copy_(&tied_vars[source]);
            }
        });
        let sentences = sentences();
        let tied_grads = named_gradients(&tied_vs, &tied, &batch_loss(&tied, &sentences));
        let untied_grads = named_gradients(&untied_vs, &untied, &batch_loss(&untied, &sentences));
        for (name, grad) in &tied_grads {
            let expected = if name == "encoder.weight" {
                &untied_grads["encoder.weight"] + &untied_grads["decoder.weight"]
            } else {
                untied_grads[name].shallow_clone()
            };
            let gap = f64::try_from((grad - &expected).abs().max()).unwrap();
            let scale = f64::try_from(expected.abs().max()).unwrap();
            assert!(
                scale > 0.0 && gap < 1e-12 * scale.max(1.0),
                "{output:?} {name}: gap {gap}"
            );
        }
    }
}

/// Dropout keeps each element with probability 1 − p, independently of its position,
/// and scales the kept ones so that the expectation is unchanged.
#[test]
fn dropout_keeps_elements_at_the_asked_rate_and_preserves_the_mean() {
    let _rng = torch_rng();
    tch::manual_seed(5);
    let n = 400_000i64;
    let ones = Tensor::ones([n / 100, 100], (Kind::Float, Device::Cpu));
    for p in [0.1, 0.35, 0.5, 0.9] {
        let out = rnnlm::regularize::dropout(&ones, p, true);
        let kept = out.ne(0.0).to_kind(Kind::Double);
        let rate = f64::try_from(kept.mean(Kind::Double)).unwrap();
        // Four standard deviations of a binomial proportion.
        let sd = ((1.0 - p) * p / n as f64).sqrt();
        assert!((rate - (1.0 - p)).abs() < 4.0 * sd, "p {p}: kept {rate}");
        // Each lane of a 64-bit word, and each column, keeps at the same rate.
        for lane in 0..4 {
            let column = kept.reshape([-1, 4]).select(1, lane);
            let lane_rate = f64::try_from(column.mean(Kind::Double)).unwrap();
            assert!(
                (lane_rate - (1.0 - p)).abs() < 8.0 * sd,
                "p {p}, lane {lane}: {lane_rate}"
            );
        }
        let mean = f64::try_from(out.to_kind(Kind::Double).mean(Kind::Double)).unwrap();
        assert!(
            (mean - 1.0).abs() < 4.0 * sd / (1.0 - p),
            "p {p}: mean {mean}"
        );
        // Neighbouring elements are not correlated.
        let flat = kept.reshape([-1]);
        let both = (flat.narrow(0, 0, n - 1) * flat.narrow(0, 1, n - 1)).mean(Kind::Double);
        let joint = f64::try_from(both).unwrap();
        assert!(
            (joint - (1.0 - p).powi(2)).abs() < 8.0 * sd,
            "p {p}: neighbours {joint}"
        );
    }
    let untouched = rnnlm::regularize::dropout(&ones, 0.5, false);
    assert!(untouched.equal(&ones));
}

/// The count that refuses an oversized configuration before it is built must be the
/// number of values the built model holds, for every cell, depth, tie and output layer.
#[test]
fn parameter_count_is_what_the_built_model_holds() {
    let _rng = torch_rng();
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        for layers in [1, 3] {
            for (tie, output) in [
                (false, OutputConfig::Full),
                (true, OutputConfig::Full),
                (
                    false,
                    OutputConfig::Class {
                        cutoffs: vec![4, 9],
                    },
                ),
                (true, OutputConfig::Class { cutoffs: vec![5] }),
            ] {
                let config = ModelConfig {
                    embed: 7,
                    tie,
                    output,
                    ..config(cell, 13, layers)
                };
                let vs = nn::VarStore::new(Device::Cpu);
                let _model = RnnLm::new(&vs.root(), &config);
                let built: usize = vs.variables().values().map(Tensor::numel).sum();
                assert_eq!(config.parameter_count(), built as u128, "{config:?}");
            }
        }
    }
}

/// The expected softmax width of a class layer with `cutoffs`, as `choose_cutoffs`
/// defines it: the head (its words and one entry per cluster) for every token, plus
/// each cluster's width for the tokens that fall in it.
fn expected_width(counts: &[u64], cutoffs: &[i64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let mut bounds: Vec<usize> = cutoffs.iter().map(|&c| c as usize).collect();
    bounds.push(counts.len());
    let mut width = (bounds[0] + cutoffs.len()) as f64;
    for pair in bounds.windows(2) {
        let mass: u64 = counts[pair[0]..pair[1]].iter().sum();
        width += mass as f64 / total as f64 * (pair[1] - pair[0]) as f64;
    }
    width
}

/// Every increasing choice of `clusters` cutoffs in 2..vocab.
fn all_cutoffs(vocab: usize, clusters: usize, from: usize) -> Vec<Vec<i64>> {
    if clusters == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for first in from..vocab {
        for rest in all_cutoffs(vocab, clusters - 1, first + 1) {
            let mut cutoffs = vec![first as i64];
            cutoffs.extend(rest);
            all.push(cutoffs);
        }
    }
    all
}

#[test]
fn chosen_cutoffs_are_the_cheapest_of_all_by_brute_force() {
    let _rng = torch_rng();
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for trial in 0..30 {
        let vocab = rng.gen_range(5..14);
        // Zipf-like falling counts, with ties and a long flat tail by turns.
        let mut counts: Vec<u64> = (0..vocab)
            .map(|i| match trial % 3 {
                0 => 1000 / (i as u64 + 1),
                1 => rng.gen_range(1..500),
                _ => (vocab - i) as u64,
            })
            .collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        for clusters in 1..=3.min(vocab - 2) {
            let chosen = rnnlm::output::choose_cutoffs(&counts, clusters);
            assert_eq!(chosen.len(), clusters, "{counts:?}");
            let best = all_cutoffs(vocab, clusters, 2)
                .iter()
                .map(|c| expected_width(&counts, c))
                .fold(f64::INFINITY, f64::min);
            let got = expected_width(&counts, &chosen);
            assert!(
                (got - best).abs() < 1e-9,
                "{counts:?}, {clusters} clusters: {chosen:?} costs {got}, the best {best}"
            );
        }
    }
}

/// The stream layout is the picture in `TokenStream`'s documentation: 12 tokens
/// a … l (here 10 … 21, across sentences of uneven length) in 3 rows read left to
/// right, chunks of 2 steps, inputs the targets shifted right behind the zero input;
/// a tail that does not fill a row is dropped.
#[test]
fn the_token_stream_is_laid_out_as_its_picture() {
    let _rng = torch_rng();
    use rnnlm::data::{Corpus, TokenStream};
    let corpus = Corpus {
        sentences: vec![(10..15).collect(), (15..18).collect(), (18..23).collect()],
        oov_count: 0,
        oov_tokens: HashMap::new(),
        empty_lines: 0,
    };
    let stream = TokenStream::new(&corpus, 3, Device::Cpu).unwrap();
    assert_eq!(stream.tokens(), 12, "token 22 does not fill a row");
    let rows = |t: &Tensor| -> Vec<Vec<i64>> {
        (0..t.size()[0])
            .map(|r| Vec::<i64>::try_from(t.get(r)).unwrap())
            .collect()
    };
    let z = ZERO_INPUT;
    let chunks: Vec<(Tensor, Tensor)> = stream.chunks(2).collect();
    assert_eq!(chunks.len(), 2);
    let (inputs, targets) = &chunks[0];
    assert_eq!(rows(targets), [[10, 11], [14, 15], [18, 19]]);
    assert_eq!(rows(inputs), [[z, 10], [z, 14], [z, 18]]);
    let (inputs, targets) = &chunks[1];
    assert_eq!(rows(targets), [[12, 13], [16, 17], [20, 21]]);
    assert_eq!(rows(inputs), [[11, 12], [15, 16], [19, 20]]);
    // A last chunk shorter than bptt.
    let widths: Vec<i64> = stream.chunks(3).map(|(_, t)| t.size()[1]).collect();
    assert_eq!(widths, [3, 1]);
}
