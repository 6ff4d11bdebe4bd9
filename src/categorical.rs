//! Categorical draws with a seeded generator of our own: the primitive that the
//! output layer samples with.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::{Kind, Tensor};

/// A categorical sampler that owns its seeded random number generator.
///
/// Draws by inverse transform: a uniform u per row, and the first index whose
/// cumulative probability reaches u times the row's total. The uniforms come from
/// this generator, not torch's global one, so a seed reproduces a run.
pub struct Sampler {
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Sampler {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// One index per row of `weights` `[n, vocab]` (non-negative, not necessarily
    /// normalized), drawn with probability proportional to the weight. An index of
    /// weight zero is never drawn.
    pub fn draw(&mut self, weights: &Tensor) -> Tensor {
        let rows = weights.size()[0];
        let cumulative = weights.to_kind(Kind::Double).cumsum(-1, Kind::Double);
        let total = cumulative.select(1, -1).unsqueeze(1);
        let uniforms: Vec<f64> = (0..rows).map(|_| self.rng.gen::<f64>()).collect();
        let target = Tensor::from_slice(&uniforms)
            .to(weights.device())
            .unsqueeze(1)
            * total;
        // Index of the first cumulative value ≥ target; a zero-weight index repeats its
        // predecessor's cumulative value, so it is never the first.
        let below = cumulative
            .lt_tensor(&target)
            .sum_dim_intlist(1, false, Kind::Int64);
        below.clamp_max(weights.size()[1] - 1)
    }
}
