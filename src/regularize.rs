//! Training-time regularizers (Merity et al.'s AWD-LSTM set, 2017) and the masks they
//! draw.
//!
//! None of them changes the network that is scored: each acts only while training,
//! on masks, penalties and updates, so a model trained with them is read, scored
//! and sampled as any other.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The regularizers of a run, all off by default; saved in `config.json`'s training
/// record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Regularization {
    /// The model's dropout draws one mask per sequence, shared by every time step
    /// (variational dropout), instead of one per element.
    pub locked_dropout: bool,
    /// Probability of dropping a word type from the embedding for a whole batch, every
    /// occurrence of it at once; the kept rows are scaled by 1/(1 − p).
    pub embed_dropout: f64,
    /// DropConnect on each layer's hidden-to-hidden weights W_hh: one mask per batch.
    pub weight_drop: f64,
    /// Activation regularization: α · mean of the squared (dropped) top-layer outputs.
    pub ar: f64,
    /// Temporal activation regularization: β · mean of the squared change of the
    /// top-layer outputs from one step to the next, before dropout.
    pub tar: f64,
    /// Decoupled weight decay (AdamW): each step shrinks the weights by lr · this.
    pub weight_decay: f64,
    /// Exponential moving average of the weights with this decay (0: none). Validation
    /// and the kept model use the averaged weights.
    pub ema_decay: f64,
}

impl Regularization {
    /// Checks the ranges: rates and the average's decay in [0, 1), coefficients ≥ 0.
    pub fn check(&self) -> Result<()> {
        for (name, value) in [
            ("embed_dropout", self.embed_dropout),
            ("weight_drop", self.weight_drop),
            ("ema_decay", self.ema_decay),
        ] {
            if !(0.0..1.0).contains(&value) {
                bail!("{name} {value} is outside [0, 1)");
            }
        }
        for (name, value) in [
            ("ar", self.ar),
            ("tar", self.tar),
            ("weight_decay", self.weight_decay),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                bail!("{name} {value} is not a finite number ≥ 0");
            }
        }
        Ok(())
    }

    /// Whether the forward pass needs the top layer's outputs before dropout.
    pub fn needs_raw_output(&self) -> bool {
        self.tar > 0.0
    }
}

/// Locked dropout of `x`, `[batch, time, width]`: one inverted-dropout mask per row,
/// `[batch, 1, width]`, at every time step.
pub fn locked_dropout(x: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let size = x.size();
    let ones = Tensor::ones([size[0], 1, size[2]], (x.kind(), x.device()));
    x * dropout(&ones, p, true)
}

/// One scale per word type, `[vocab]`: 0 for a dropped type, 1/(1 − p) for a kept one.
pub fn embedding_type_scale(vocab: i64, p: f64, kind: Kind, device: tch::Device) -> Tensor {
    dropout(&Tensor::ones([vocab], (kind, device)), p, true)
}

/// DropConnect: `weight` with each element dropped with probability `p` and the rest
/// scaled by 1/(1 − p). The gradient reaches the kept elements only.
pub fn drop_connect(weight: &Tensor, p: f64) -> Tensor {
    dropout(weight, p, true)
}

/// α · mean(`dropped`²) + β · mean((`raw<t>` − `raw<t−1>`)²).
///
/// `dropped`: the top layer's outputs after dropout at the real positions, `[n, width]`.
/// `steps`: the pairs of consecutive real positions of `raw`, as two `[m, width]`
/// tensors (`next`, `previous`), or `None` when β is 0.
pub fn activation_penalty(
    regularization: &Regularization,
    dropped: &Tensor,
    steps: Option<(&Tensor, &Tensor)>,
) -> Option<Tensor> {
    let mut penalty: Option<Tensor> = None;
    let mut add = |term: Tensor| {
        penalty = Some(match penalty.take() {
            Some(p) => p + term,
            None => term,
        })
    };
    if regularization.ar > 0.0 && dropped.numel() > 0 {
        add(dropped.square().mean(Kind::Float) * regularization.ar);
    }
    if let (true, Some((next, previous))) = (regularization.tar > 0.0, steps) {
        if next.numel() > 0 {
            add((next - previous).square().mean(Kind::Float) * regularization.tar);
        }
    }
    penalty
}

/// The consecutive real positions of a padded batch whose rows have `lengths`:
/// flat indices (`row * time + t`) of each step t ≥ 1 and of its previous step.
pub fn consecutive_positions(lengths: &[usize], time: usize) -> (Vec<i64>, Vec<i64>) {
    let mut next = Vec::new();
    let mut previous = Vec::new();
    for (row, &length) in lengths.iter().enumerate() {
        let base = row * time;
        for t in 1..length {
            next.push((base + t) as i64);
            previous.push((base + t - 1) as i64);
        }
    }
    (next, previous)
}

/// Inverted dropout: zeroes each element with probability `p` (rounded to a multiple
/// of 2⁻¹⁶) and scales the rest by the inverse of the keep probability; `x` itself
/// when not training.
///
/// The mask comes from 16-bit lanes of 64-bit random words, one draw of libtorch's
/// generator for four elements. `Tensor::dropout` draws a double per element, one at
/// a time, which on a CPU costs a twentieth of a training step.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    const LANES: f64 = 65536.0;
    let kept_values = ((1.0 - p) * LANES).round().clamp(1.0, LANES) as i64;
    let n = x.numel() as i64;
    let mut words = Tensor::empty([(n + 3) / 4], (Kind::Int64, x.device()));
    let _ = words.random_from_(i64::MIN, None);
    // A lane is uniform on [-32768, 32767]: kept_values of its values lie below this.
    let below = kept_values - 32768;
    let mask = words
        .view_dtype(Kind::Int16)
        .narrow(0, 0, n)
        .lt(below)
        .view(x.size().as_slice())
        .to_kind(x.kind())
        * (LANES / kept_values as f64);
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_positions_stay_inside_rows() {
        let (next, previous) = consecutive_positions(&[3, 1, 2], 3);
        assert_eq!(next, vec![1, 2, 7]);
        assert_eq!(previous, vec![0, 1, 6]);
    }

    #[test]
    fn ranges_are_checked() {
        let bad = Regularization {
            weight_drop: 1.0,
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("weight_drop"));
        let bad = Regularization {
            tar: -1.0,
            ..Default::default()
        };
        assert!(bad.check().is_err());
        assert!(Regularization::default().check().is_ok());
    }
}
