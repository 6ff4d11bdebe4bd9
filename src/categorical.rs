//! Categorical draws with a seeded generator of our own: the primitive that the
//! output layer samples with.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use tch::{Kind, Tensor};

/// A categorical sampler that owns its seeded random number generator.
///
/// Draws by inverse transform: a uniform u per row, and the first index whose
/// cumulative probability reaches u times the row's total. The uniforms come from
/// this generator, not torch's global one, so a seed reproduces a run.
pub struct Sampler {
    rng: ChaCha12Rng,
}

impl Sampler {
    /// A sampler seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Sampler {
            rng: ChaCha12Rng::seed_from_u64(seed),
        }
    }

    /// One index per row of `weights` `[n, vocab]` (non-negative, not necessarily
    /// normalized), drawn with probability proportional to the weight. An index of
    /// weight zero is never drawn.
    pub fn draw(&mut self, weights: &Tensor) -> Tensor {
        let rows = weights.size()[0];
        // In (0, 1]: at u = 0 the target would be 0, which a leading zero-weight index
        // (a cluster's first word whose probability underflowed) already reaches.
        let uniforms: Vec<f64> = (0..rows).map(|_| 1.0 - self.rng.gen::<f64>()).collect();
        pick(weights, &uniforms)
    }
}

/// For each row, the first index whose cumulative weight reaches `u` (in (0, 1]) times
/// the row's total; a zero-weight index repeats its predecessor's cumulative value, so
/// it is never the first.
fn pick(weights: &Tensor, uniforms: &[f64]) -> Tensor {
    let cumulative = weights.to_kind(Kind::Double).cumsum(-1, Kind::Double);
    let total = cumulative.select(1, -1).unsqueeze(1);
    let target = Tensor::from_slice(uniforms)
        .to(weights.device())
        .unsqueeze(1)
        * total;
    let below = cumulative
        .lt_tensor(&target)
        .sum_dim_intlist(1, false, Kind::Int64);
    below.clamp_max(weights.size()[1] - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At both ends of (0, 1] the pick lands on a positive weight, whatever zeros
    /// surround it.
    #[test]
    fn the_extreme_uniforms_never_pick_a_zero_weight() {
        let weights = Tensor::from_slice(&[0.0f32, 0.0, 3.0, 0.0, 1.0, 0.0]).view([1, 6]);
        for (u, index) in [
            (f64::MIN_POSITIVE, 2),
            (1e-300, 2),
            (0.75, 2),
            (0.76, 4),
            (1.0, 4),
        ] {
            let picked = pick(&weights, &[u]).int64_value(&[0]);
            assert_eq!(picked, index, "u = {u}");
        }
    }
}
