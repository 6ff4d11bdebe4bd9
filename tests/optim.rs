//! The optimizers against their update rules written out by hand.

use rnnlm::optim::{Optimizer, OptimizerKind};
use tch::{Kind, Tensor};

/// Loss Σ (p − target)², gradient 2 (p − target).
fn loss(p: &Tensor, target: &Tensor) -> Tensor {
    (p - target).square().sum(Kind::Double)
}

#[test]
fn adam_steps_equal_the_textbook_update_with_norm_clipping() {
    for clip in [0.0, 1.5, 100.0] {
        adam_matches_by_hand(clip);
    }
}

fn adam_matches_by_hand(clip: f64) {
    let target = Tensor::from_slice(&[1.0f64, -2.0, 0.5, 3.0]);
    let start = [0.3f64, 0.1, -0.4, 2.0];
    let p = Tensor::from_slice(&start).set_requires_grad(true);
    let lr = 0.05;
    let mut optimizer = Optimizer::new(OptimizerKind::Adam, vec![p.shallow_clone()], lr);
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
