//! The optimizers against their update rules written out by hand.

use rnnlm::optim::{Optimizer, OptimizerKind};
use rnnlm::shared::{alias, SharedParameter};
use tch::{Kind, Tensor};

/// Loss Σ (p − target)², gradient 2 (p − target).
fn loss(p: &Tensor, target: &Tensor) -> Tensor {
    (p - target).square().sum(Kind::Double)
}

#[test]
fn adam_steps_equal_the_textbook_update_with_norm_clipping() {
    for clip in [0.0, 1.5, 100.0] {
        adam_matches_by_hand(clip, 0.0);
    }
}

#[test]
fn adamw_decays_the_weights_apart_from_the_moments() {
    for clip in [0.0, 1.5] {
        adam_matches_by_hand(clip, 0.3);
    }
}

/// Adam, or with `weight_decay` AdamW (Loshchilov and Hutter: the weights shrink by
/// lr · weight_decay before the update, the moments never see the decay).
fn adam_matches_by_hand(clip: f64, weight_decay: f64) {
    let target = Tensor::from_slice(&[1.0f64, -2.0, 0.5, 3.0]);
    let start = [0.3f64, 0.1, -0.4, 2.0];
    let p = Tensor::from_slice(&start).set_requires_grad(true);
    let lr = 0.05;
    let mut optimizer = Optimizer::new(OptimizerKind::Adam, vec![p.shallow_clone()], lr)
        .with_weight_decay(weight_decay);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut expected = start.to_vec();
    let goal = [1.0f64, -2.0, 0.5, 3.0];
    let (mut m, mut v) = (vec![0.0; 4], vec![0.0; 4]);
    for step in 1..=5 {
        optimizer.step(&loss(&p, &target), clip).unwrap();
        let mut g: Vec<f64> = expected
            .iter()
            .zip(&goal)
            .map(|(x, t)| 2.0 * (x - t))
            .collect();
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        let coef = clip / (norm + 1e-6);
        if clip > 0.0 && coef < 1.0 {
            g.iter_mut().for_each(|x| *x *= coef);
        }
        for i in 0..4 {
            expected[i] *= 1.0 - lr * weight_decay;
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let m_hat = m[i] / (1.0 - b1.powi(step));
            let v_hat = v[i] / (1.0 - b2.powi(step));
            expected[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
        let got = Vec::<f64>::try_from(&p).unwrap();
        for (a, b) in got.iter().zip(&expected) {
            assert!(
                (a - b).abs() < 1e-6,
                "clip {clip}, step {step}: {got:?} vs {expected:?}"
            );
        }
    }
}

#[test]
fn sgd_steps_equal_the_textbook_update() {
    let target = Tensor::from_slice(&[1.0f64, -2.0]);
    let p = Tensor::from_slice(&[0.0f64, 0.0]).set_requires_grad(true);
    let mut optimizer = Optimizer::new(OptimizerKind::Sgd, vec![p.shallow_clone()], 0.1);
    optimizer.step(&loss(&p, &target), 0.0).unwrap();
    // Gradient (−2, 4); p − 0.1 g.
    let got = Vec::<f64>::try_from(&p).unwrap();
    assert!(
        (got[0] - 0.2).abs() < 1e-12 && (got[1] + 0.4).abs() < 1e-12,
        "{got:?}"
    );
}

/// A loss that reads a matrix through two row blocks (as the output layer does) and a
/// lookup with repeated rows (as the embedding does).
fn shared_loss(blocks: [&Tensor; 2], lookup: &Tensor, target: &Tensor) -> Tensor {
    let rows = Tensor::from_slice(&[4i64, 0, 4, 2]);
    let looked_up = Tensor::embedding(lookup, &rows, -1, false, true);
    let read = Tensor::cat(&[blocks[0].shallow_clone(), blocks[1] * 3.0], 0);
    (read - target).square().sum(Kind::Double) + looked_up.sin().sum(Kind::Double)
}

#[test]
fn a_parameter_read_through_blocks_and_a_lookup_steps_as_one_read_directly() {
    let start: Vec<f64> = (0..10).map(|i| 0.3 * i as f64 - 1.0).collect();
    let target = Tensor::from_slice(&[0.5f64; 10]).reshape([5, 2]);
    for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
        for clip in [0.0, 0.5] {
            // Directly: the parameter itself in every place.
            let direct = Tensor::from_slice(&start)
                .reshape([5, 2])
                .set_requires_grad(true);
            let mut plain = Optimizer::new(kind, vec![direct.shallow_clone()], 0.05);
            // Shared: leaves over the same storage, rows 0-2 and 3-4, and a lookup.
            let param = Tensor::from_slice(&start)
                .reshape([5, 2])
                .set_requires_grad(true);
            let blocks = [alias(&param.narrow(0, 0, 3)), alias(&param.narrow(0, 3, 2))];
            let lookup = alias(&param);
            let mut shared = Optimizer::new(kind, vec![param.shallow_clone()], 0.05)
                .share(vec![SharedParameter {
                    param: param.shallow_clone(),
                    blocks: blocks.iter().map(Tensor::shallow_clone).collect(),
                    lookups: vec![lookup.shallow_clone()],
                }])
                .unwrap();
            for _ in 0..4 {
                let direct_blocks = [direct.narrow(0, 0, 3), direct.narrow(0, 3, 2)];
                plain
                    .step(
                        &shared_loss([&direct_blocks[0], &direct_blocks[1]], &direct, &target),
                        clip,
                    )
                    .unwrap();
                shared
                    .step(
                        &shared_loss([&blocks[0], &blocks[1]], &lookup, &target),
                        clip,
                    )
                    .unwrap();
            }
            let gap = f64::try_from((&direct - &param).abs().max()).unwrap();
            // The clipping norm is summed in single precision, in pieces on one side.
            assert!(
                gap < 1e-7,
                "{kind:?}, clip {clip}: parameters differ by {gap}"
            );
            let moved = f64::try_from(
                (&param - Tensor::from_slice(&start).reshape([5, 2]))
                    .abs()
                    .max(),
            )
            .unwrap();
            assert!(moved > 1e-3, "{kind:?}: the parameter did not move");
        }
    }
}
