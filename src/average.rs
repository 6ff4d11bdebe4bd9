//! An exponential moving average of the weights, the averaging idea of NT-ASGD
//! (Merity et al. 2017) under Adam: the averaged weights of the last stretch of
//! training generalize better than the last weights alone.
//!
//! After step k the average is `avg_k = d · avg_{k−1} + (1 − d) · w_k`, starting from
//! the weights before the first step.

use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use tch::{nn, Tensor};

/// The prefix of the averaged weights' names in `optimizer.safetensors`.
const PREFIX: &str = "average.";

/// The running average of every variable of a [`nn::VarStore`].
pub struct WeightAverage {
    decay: f64,
    /// (name, the variable, its average), sorted by name.
    entries: Vec<(String, Tensor, Tensor)>,
    /// Whether the variables now hold the averages (see [`WeightAverage::swap`]).
    swapped: bool,
}

impl WeightAverage {
    /// Starts the average at the variables' current values.
    pub fn new(vs: &nn::VarStore, decay: f64) -> Self {
        let _guard = tch::no_grad_guard();
        let mut entries: Vec<(String, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(name, var)| {
                let average = var.detach().copy();
                (name, var, average)
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        WeightAverage {
            decay,
            entries,
            swapped: false,
        }
    }

    /// The decay d of the average.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Folds the variables' current values into the average (after an optimizer step).
    pub fn update(&mut self) -> Result<()> {
        if self.swapped {
            bail!("the weight average cannot be updated while the variables hold it");
        }
        let _guard = tch::no_grad_guard();
        for (_, var, average) in &mut self.entries {
            let _ = average.f_lerp_(&*var, 1.0 - self.decay)?;
        }
        Ok(())
    }

    /// Exchanges the variables' values with the averages: after one call the model
    /// computes with the averaged weights, after a second with the trained ones again.
    pub fn swap(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (_, var, average) in &mut self.entries {
            let trained = var.detach().copy();
            var.f_copy_(average)?;
            average.f_copy_(&trained)?;
        }
        self.swapped = !self.swapped;
        Ok(())
    }

    /// The averaged weights by variable name (as a checkpoint saves the model).
    pub fn averaged(&self) -> Vec<(String, Tensor)> {
        self.entries
            .iter()
            .map(|(name, var, average)| {
                let value = if self.swapped { var } else { average };
                (name.clone(), value.shallow_clone())
            })
            .collect()
    }

    /// The state a resumed run needs, named for `optimizer.safetensors`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.averaged()
            .into_iter()
            .map(|(name, value)| (format!("{PREFIX}{name}"), value))
            .collect()
    }

    /// Takes this average's tensors out of `stored` (what [`WeightAverage::state`]
    /// saved) and restores them, checking every name and shape.
    pub fn load_state(&mut self, stored: &mut HashMap<String, Tensor>) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, var, average) in &mut self.entries {
            let value = stored
                .remove(&format!("{PREFIX}{name}"))
                .ok_or_else(|| anyhow!("no averaged weights for '{name}'"))?;
            if value.size() != var.size() || value.kind() != var.kind() {
                bail!("the averaged '{name}' does not fit this model");
            }
            average.f_copy_(&value)?;
        }
        Ok(())
    }

    /// Removes any averaged weights from `stored`, for a run that does not average.
    pub fn strip(stored: &mut HashMap<String, Tensor>) -> bool {
        let before = stored.len();
        stored.retain(|name, _| !name.starts_with(PREFIX));
        stored.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn the_average_follows_the_recursion() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().zeros("w", &[3]);
        let mut average = WeightAverage::new(&vs, 0.5);
        let mut expected = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        for step in 1..=4 {
            tch::no_grad(|| {
                let mut w = w.shallow_clone();
                let _ = w.fill_(step as f64);
            });
            average.update().unwrap();
            expected =
                &expected * 0.5 + Tensor::full([3], step as f64, (Kind::Float, Device::Cpu)) * 0.5;
        }
        // 0 → 0.5 → 1.25 → 2.125 → 3.0625
        let got = &average.averaged()[0].1;
        assert!(got.allclose(&expected, 1e-6, 1e-6, false));
        assert!((f64::try_from(got.get(0)).unwrap() - 3.0625).abs() < 1e-6);
        average.swap().unwrap();
        assert!((f64::try_from(w.get(0)).unwrap() - 3.0625).abs() < 1e-6);
        assert!(
            average.update().is_err(),
            "updating while swapped is refused"
        );
        average.swap().unwrap();
        assert_eq!(f64::try_from(w.get(0)).unwrap(), 4.0);
    }
}
