//! The training-time regularizers: their masks have the rate and shape they claim,
//! the penalties equal their formulas, each changes training, and none is on when a
//! model is judged or scored: the kept model of a regularized (and averaged) run
//! scores exactly what training recorded for it.

use rnnlm::checkpoint::ModelDir;
use rnnlm::data::Corpus;
use rnnlm::model::{Cell, ModelConfig, RnnLm, ZERO_INPUT};
use rnnlm::oov::OovScorer;
use rnnlm::optim::{Optimizer, OptimizerKind};
use rnnlm::regularize::{
    activation_penalty, drop_connect, embedding_type_scale, locked_dropout, Regularization,
};
use rnnlm::score::evaluate;
use rnnlm::train::train;
use tch::{nn, Device, Kind, Tensor};

#[path = "common/torch_rng.rs"]
mod torch_rng;
use torch_rng::torch_rng;
#[path = "common/training.rs"]
mod training;
use training::{config, corpus_dir, THREE};

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

fn zero_share(t: &Tensor) -> f64 {
    let v = values(t);
    v.iter().filter(|x| **x == 0.0).count() as f64 / v.len() as f64
}

#[test]
fn locked_dropout_draws_one_mask_per_sequence() {
    let _rng = torch_rng();
    tch::manual_seed(3);
    let (batch, time, width, p) = (8, 30, 64, 0.3);
    let x = Tensor::ones([batch, time, width], (Kind::Float, Device::Cpu));
    let dropped = locked_dropout(&x, p);
    assert_eq!(dropped.size(), x.size());
    // Every time step of a row carries the row's mask.
    let first = dropped.narrow(1, 0, 1);
    assert!(
        dropped
            .eq_tensor(&first.expand_as(&dropped))
            .all()
            .int64_value(&[])
            == 1
    );
    let share = zero_share(&first);
    assert!((share - p).abs() < 0.05, "dropped share {share}");
    let kept: Vec<f64> = values(&first).into_iter().filter(|v| *v != 0.0).collect();
    assert!(kept.iter().all(|v| (v - 1.0 / (1.0 - p)).abs() < 1e-5));
    // The rows differ from one another: one mask per sequence, not per batch.
    assert!(first.get(0).ne_tensor(&first.get(1)).any().int64_value(&[]) == 1);
}

#[test]
fn embedding_dropout_scales_whole_types() {
    let _rng = torch_rng();
    tch::manual_seed(4);
    let p = 0.25;
    let scale = embedding_type_scale(20_000, p, Kind::Float, Device::Cpu);
    assert_eq!(scale.size(), vec![20_000]);
    let share = zero_share(&scale);
    assert!((share - p).abs() < 0.015, "dropped share {share}");
    assert!(values(&scale)
        .iter()
        .all(|v| *v == 0.0 || (v - 1.0 / (1.0 - p)).abs() < 1e-5));
}

/// A small untied model with a full softmax and no plain dropout.
fn small(cell: Cell, vocab: i64) -> (nn::VarStore, RnnLm) {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = RnnLm::new(
        &vs.root(),
        &ModelConfig {
            cell,
            vocab_size: vocab,
            embed: 6,
            hidden: 32,
            layers: 1,
            dropout: 0.0,
            tie: false,
            output: Default::default(),
        },
    );
    (vs, model)
}

/// Inputs `[rows, time]` in which every token of 3..vocab occurs several times.
fn repeated_inputs(rows: i64, time: i64, vocab: i64) -> Tensor {
    let tokens = Tensor::arange(rows * time, (Kind::Int64, Device::Cpu)).remainder(vocab - 3) + 3;
    let inputs = tokens.view([rows, time]);
    let _ = inputs.narrow(1, 0, 1).fill_(ZERO_INPUT);
    inputs
}

/// The gradient of Σ output for the variable `name`, as training gathers it.
fn gradient(vs: &nn::VarStore, model: &RnnLm, loss: &Tensor, name: &str) -> Tensor {
    let params = vs.trainable_variables();
    let optimizer = Optimizer::new(
        OptimizerKind::Sgd,
        params.iter().map(Tensor::shallow_clone).collect(),
        0.0,
    )
    .share(model.shared_parameters())
    .unwrap();
    let grads = optimizer.gradients(loss).unwrap();
    let var = &vs.variables()[name];
    let i = params
        .iter()
        .position(|p| p.data_ptr() == var.data_ptr())
        .unwrap();
    grads[i].shallow_clone()
}

#[test]
fn embedding_dropout_silences_every_occurrence_of_a_dropped_type() {
    let _rng = torch_rng();
    let vocab = 203;
    let (vs, model) = small(Cell::Gru, vocab);
    let inputs = repeated_inputs(10, 60, vocab);
    let regularization = Regularization {
        embed_dropout: 0.5,
        ..Default::default()
    };
    tch::manual_seed(5);
    let pass = model.forward_train(&inputs, &model.zero_state(10), &regularization);
    let grad = gradient(&vs, &model, &pass.output.sum(Kind::Float), "encoder.weight");
    // Rows of the types in the input: each either wholly zero (dropped: none of its
    // occurrences reached the network) or not.
    let rows = grad.narrow(0, 3, vocab - 3);
    let row_is_zero = rows.abs().sum_dim_intlist(1, false, Kind::Float).eq(0.0);
    let share = f64::try_from(row_is_zero.to_kind(Kind::Double).mean(Kind::Double)).unwrap();
    assert!((share - 0.5).abs() < 0.12, "dropped types {share}");
    // Without it no row is zero.
    let plain = model.forward_train(&inputs, &model.zero_state(10), &Regularization::default());
    let grad = gradient(
        &vs,
        &model,
        &plain.output.sum(Kind::Float),
        "encoder.weight",
    );
    let rows = grad
        .narrow(0, 3, vocab - 3)
        .abs()
        .sum_dim_intlist(1, false, Kind::Float);
    assert_eq!(rows.eq(0.0).sum(Kind::Int64).int64_value(&[]), 0);
}

#[test]
fn drop_connect_masks_the_recurrent_weights_of_the_fused_call() {
    let _rng = torch_rng();
    tch::manual_seed(6);
    let w = Tensor::ones([400, 100], (Kind::Float, Device::Cpu));
    let share = zero_share(&drop_connect(&w, 0.4));
    assert!((share - 0.4).abs() < 0.02, "dropped share {share}");
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        let (vs, model) = small(cell, 30);
        let inputs = repeated_inputs(6, 12, 30);
        let regularization = Regularization {
            weight_drop: 0.5,
            ..Default::default()
        };
        let pass = model.forward_train(&inputs, &model.zero_state(6), &regularization);
        let grad = gradient(
            &vs,
            &model,
            &pass.output.sum(Kind::Float),
            "rnn.weight_hh_l0",
        );
        // A dropped weight gets no gradient: about half of W_hh's entries are zero.
        let share = zero_share(&grad);
        assert!(
            (share - 0.5).abs() < 0.05,
            "{cell:?}: zero gradients {share}"
        );
        let plain = model.forward_train(&inputs, &model.zero_state(6), &Regularization::default());
        let grad = gradient(
            &vs,
            &model,
            &plain.output.sum(Kind::Float),
            "rnn.weight_hh_l0",
        );
        assert!(zero_share(&grad) < 0.01, "{cell:?}: without DropConnect");
        // The input weights are never masked.
        let again = model.forward_train(&inputs, &model.zero_state(6), &regularization);
        let grad = gradient(
            &vs,
            &model,
            &again.output.sum(Kind::Float),
            "rnn.weight_ih_l0",
        );
        assert!(zero_share(&grad) < 0.01);
    }
}

#[test]
fn the_activation_penalties_equal_their_formulas() {
    tch::manual_seed(7);
    let dropped = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
    let next = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let previous = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let (ar, tar) = (2.0, 0.7);
    let regularization = Regularization {
        ar,
        tar,
        ..Default::default()
    };
    let got = f64::try_from(
        activation_penalty(&regularization, &dropped, Some((&next, &previous))).unwrap(),
    )
    .unwrap();
    let d = values(&dropped);
    let (n, p) = (values(&next), values(&previous));
    let expected = ar * d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64
        + tar
            * n.iter()
                .zip(&p)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
            / n.len() as f64;
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    assert!(activation_penalty(&Regularization::default(), &dropped, None).is_none());
}

/// Each regularizer alone and all together: training differs from the plain run,
/// and the kept model, loaded as `eval` loads it, scores the valid loss that training
/// recorded for it (the masks are off, and validation judged the averaged weights
/// that were saved).
#[test]
fn the_kept_model_of_a_regularized_run_scores_what_training_recorded() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path(), &THREE, &THREE[1..]);
    let all = Regularization {
        locked_dropout: true,
        embed_dropout: 0.2,
        weight_drop: 0.3,
        ar: 1.0,
        tar: 1.0,
        weight_decay: 0.1,
        ema_decay: 0.8,
    };
    let runs = [
        ("plain", Regularization::default()),
        (
            "locked",
            Regularization {
                locked_dropout: true,
                ..Default::default()
            },
        ),
        (
            "embed",
            Regularization {
                embed_dropout: all.embed_dropout,
                ..Default::default()
            },
        ),
        (
            "weight-drop",
            Regularization {
                weight_drop: all.weight_drop,
                ..Default::default()
            },
        ),
        (
            "ar",
            Regularization {
                ar: all.ar,
                ..Default::default()
            },
        ),
        (
            "tar",
            Regularization {
                tar: all.tar,
                ..Default::default()
            },
        ),
        (
            "decay",
            Regularization {
                weight_decay: all.weight_decay,
                ..Default::default()
            },
        ),
        (
            "average",
            Regularization {
                ema_decay: all.ema_decay,
                ..Default::default()
            },
        ),
        ("all", all.clone()),
    ];
    let mut plain_losses = Vec::new();
    for (name, regularization) in runs {
        let mut cfg = config(dir.path(), Cell::Lstm, 3);
        cfg.model.dropout = 0.2;
        cfg.out = dir.path().join(name);
        cfg.regularization = regularization.clone();
        let summary = train(&cfg, Device::Cpu).unwrap();
        // The average leaves the trained weights alone and changes what is judged.
        let losses: Vec<(f64, f64)> = summary
            .history
            .iter()
            .map(|r| (r.train_loss, r.valid_loss))
            .collect();
        if name == "plain" {
            plain_losses = losses;
        } else {
            assert_ne!(losses, plain_losses, "{name} left training as it was");
        }
        let loaded = ModelDir::new(&cfg.out).load(Device::Cpu).unwrap();
        let saved: serde_json::Value = loaded.config.training.clone();
        assert_eq!(
            serde_json::from_value::<Regularization>(saved["regularization"].clone()).unwrap(),
            regularization,
            "{name}: config.json records the regularizers"
        );
        let corpus = Corpus::load(
            &dir.path().join("valid.txt"),
            &loaded.config.tokenizer,
            &loaded.vocab,
        )
        .unwrap();
        let eval = evaluate(&loaded.model, &corpus, 4, &OovScorer::closed()).unwrap();
        assert!(
            (eval.nats_per_token - summary.best_valid_loss).abs() < 1e-5,
            "{name}: eval {} vs recorded best {}",
            eval.nats_per_token,
            summary.best_valid_loss
        );
    }
}
