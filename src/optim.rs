//! Optimizers: Adam through ATen's fused kernel, and plain SGD.
//!
//! A step takes the gradients straight from autograd (`run_backward`), so nothing is
//! zeroed or accumulated into `.grad`, clips them by their global norm the way
//! PyTorch's `clip_grad_norm_` does, and updates the parameters. Adam's update is one
//! fused pass over each parameter and its two moment estimates; the gradient-norm
//! clip is folded into it as a scale, so clipping costs no pass of its own. With
//! tied embeddings the vocabulary-sized matrix dominates a step's memory traffic,
//! and the unfused update read and wrote it about eight times.

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use tch::{Kind, Tensor};

/// The optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with PyTorch's default betas and epsilon.
    Adam,
    /// Plain stochastic gradient descent.
    Sgd,
}

extern "C" {
    fn rnnlm_fused_adam(
        params: *const *mut c_void,
        grads: *const *mut c_void,
        exp_avgs: *const *mut c_void,
        exp_avg_sqs: *const *mut c_void,
        steps: *const *mut c_void,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        grad_scale: *mut c_void,
    ) -> *mut c_char;
    fn rnnlm_free_error(message: *mut c_char);
}

/// Adam's betas and epsilon, PyTorch's defaults.
const BETAS: (f64, f64) = (0.9, 0.999);
const EPS: f64 = 1e-8;

/// Updates a set of parameters from a loss.
pub struct Optimizer {
    kind: OptimizerKind,
    params: Vec<Tensor>,
    /// Adam's first and second moment estimates, one per parameter.
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
    /// Adam's step count, shared by every parameter (the kernel reads it, the caller
    /// counts it, as PyTorch's Adam does).
    step: Tensor,
    lr: f64,
}

impl Optimizer {
    /// An optimizer for `params` (leaf tensors that require gradients).
    pub fn new(kind: OptimizerKind, params: Vec<Tensor>, lr: f64) -> Self {
        let device = params.first().map_or(tch::Device::Cpu, Tensor::device);
        let step = Tensor::zeros([], (Kind::Float, device));
        let (exp_avgs, exp_avg_sqs) = match kind {
            OptimizerKind::Sgd => (Vec::new(), Vec::new()),
            OptimizerKind::Adam => tch::no_grad(|| {
                (
                    params.iter().map(Tensor::zeros_like).collect(),
                    params.iter().map(Tensor::zeros_like).collect(),
                )
            }),
        };
        Optimizer {
            kind,
            params,
            exp_avgs,
            exp_avg_sqs,
            step,
            lr,
        }
    }

    /// The state a resumed run needs (Adam's step count and moment estimates), by name.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        if self.kind == OptimizerKind::Sgd {
            return Vec::new();
        }
        let mut named = vec![("step".to_string(), self.step.shallow_clone())];
        for (i, (m, v)) in self.exp_avgs.iter().zip(&self.exp_avg_sqs).enumerate() {
            named.push((format!("exp_avg.{i}"), m.shallow_clone()));
            named.push((format!("exp_avg_sq.{i}"), v.shallow_clone()));
        }
        named
    }

    /// Restores what [`Optimizer::state`] returned, checking every name and shape.
    pub fn load_state(&mut self, stored: &HashMap<String, Tensor>) -> Result<()> {
        if self.kind == OptimizerKind::Sgd {
            return Ok(());
        }
        let _guard = tch::no_grad_guard();
        let mut targets = vec![("step".to_string(), &mut self.step)];
        for (i, (m, v)) in self
            .exp_avgs
            .iter_mut()
            .zip(self.exp_avg_sqs.iter_mut())
            .enumerate()
        {
            targets.push((format!("exp_avg.{i}"), m));
            targets.push((format!("exp_avg_sq.{i}"), v));
        }
        if stored.len() != targets.len() {
            bail!(
                "{} tensors, this model's Adam state has {}",
                stored.len(),
                targets.len()
            );
        }
        for (name, target) in targets {
            let value = stored
                .get(&name)
                .ok_or_else(|| anyhow!("no tensor '{name}'"))?;
            if value.size() != target.size() || value.kind() != target.kind() {
                bail!("'{name}' does not fit this model");
            }
            target.f_copy_(value)?;
        }
        Ok(())
    }

    /// Sets the learning rate.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Backpropagates `loss` and updates every parameter, the gradient's global norm
    /// clipped to `clip` first (0: no clipping).
    pub fn step(&mut self, loss: &Tensor, clip: f64) -> Result<()> {
        let grads = Tensor::run_backward(&[loss], &self.params, false, false);
        let _guard = tch::no_grad_guard();
        // clip_grad_norm_: multiply by clip / (norm + 1e-6) when that is below 1, here
        // as a divisor max((norm + 1e-6) / clip, 1) kept on the device.
        let scale = (clip > 0.0).then(|| {
            let squares: Vec<Tensor> = grads
                .iter()
                .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
                .collect();
            let norm = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt();
            ((norm + 1e-6) / clip).clamp_min(1.0)
        });
        match self.kind {
            OptimizerKind::Sgd => {
                for (p, g) in self.params.iter_mut().zip(&grads) {
                    let update = match &scale {
                        Some(s) => g / s * self.lr,
                        None => g * self.lr,
                    };
                    let _ = p.f_sub_(&update)?;
                }
                Ok(())
            }
            OptimizerKind::Adam => self.fused_adam(&grads, scale.as_ref()),
        }
    }

    fn fused_adam(&mut self, grads: &[Tensor], scale: Option<&Tensor>) -> Result<()> {
        let pointers = |ts: &[Tensor]| -> Vec<*mut c_void> {
            ts.iter().map(|t| t.as_ptr() as *mut c_void).collect()
        };
        let (params, grads_ptr) = (pointers(&self.params), pointers(grads));
        let (exp_avgs, exp_avg_sqs) = (pointers(&self.exp_avgs), pointers(&self.exp_avg_sqs));
        let _ = self.step.f_add_scalar_(1.0)?;
        let steps = vec![self.step.as_ptr() as *mut c_void; params.len()];
        let scale_ptr = scale.map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut c_void);
        // SAFETY: every pointer is a live `at::Tensor` owned by a `Tensor` borrowed for
        // the call; the lists all have `params.len()` entries.
        let error = unsafe {
            rnnlm_fused_adam(
                params.as_ptr(),
                grads_ptr.as_ptr(),
                exp_avgs.as_ptr(),
                exp_avg_sqs.as_ptr(),
                steps.as_ptr(),
                params.len() as i64,
                self.lr,
                BETAS.0,
                BETAS.1,
                EPS,
                0.0,
                scale_ptr,
            )
        };
        if error.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null result is a NUL-terminated string from strdup.
        let message = unsafe { CStr::from_ptr(error) }
            .to_string_lossy()
            .into_owned();
        unsafe { rnnlm_free_error(error) };
        Err(anyhow!(
            "Adam update failed: {}",
            message.lines().next().unwrap_or("")
        ))
    }
}
