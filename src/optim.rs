//! Optimizers: Adam through ATen's fused kernel, and plain SGD.
//!
//! A step takes the gradients straight from autograd (`run_backward`), so nothing is
//! zeroed or accumulated into `.grad`, clips them by their global norm the way
//! PyTorch's `clip_grad_norm_` does, and updates the parameters. Adam's update is one
//! fused pass over each parameter and its two moment estimates; the gradient-norm
//! clip is folded into it as a scale, so clipping costs no pass of its own. With
//! tied embeddings the vocabulary-sized matrix dominates a step's memory traffic,
//! and the unfused update read and wrote it about eight times.
//!
//! For the same reason a [`SharedParameter`] (that matrix) is never given a gradient
//! of its own by autograd: the model reads it through leaves that alias its storage,
//! one per row block of the output layer and one for the embedding lookup. Their
//! gradients (dense blocks, and the lookup's sparse rows added into them in place)
//! are updated block by block. Autograd would zero a vocabulary-sized matrix for the
//! lookup, copy the blocks into another, and add the two.

use crate::shared::SharedParameter;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use tch::{Kind, Tensor};

/// The optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum OptimizerKind {
    /// Adam with PyTorch's default betas and epsilon.
    Adam,
    /// Plain stochastic gradient descent.
    Sgd,
}

crate::names::named_enum!(OptimizerKind {
    Adam => "adam",
    Sgd => "sgd",
});

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
}

/// Adam's betas and epsilon, PyTorch's defaults.
const BETAS: (f64, f64) = (0.9, 0.999);
const EPS: f64 = 1e-8;

/// Where the gradient of a parameter comes from.
enum Source {
    /// Autograd's gradient of the parameter itself.
    Direct,
    /// Row blocks `(first row, rows, leaf)` and sparse lookups, as [`SharedParameter`].
    Shared {
        blocks: Vec<(i64, i64, Option<Tensor>)>,
        lookups: Vec<Tensor>,
    },
}

/// One piece of the update: a parameter or a row block of one, its gradient and its
/// rows of Adam's moment estimates.
struct Piece {
    param: Tensor,
    grad: Tensor,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
}

/// Updates a set of parameters from a loss.
pub struct Optimizer {
    kind: OptimizerKind,
    params: Vec<Tensor>,
    sources: Vec<Source>,
    /// What the saved state calls each parameter: its name in the model, or its
    /// position for an optimizer built without names.
    names: Vec<String>,
    /// Adam's first and second moment estimates, one per parameter.
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
    /// Adam's step count, shared by every parameter (the kernel reads it, the caller
    /// counts it, as PyTorch's Adam does).
    step: Tensor,
    lr: f64,
    /// Decoupled weight decay: each step multiplies the weights by 1 − lr · this.
    weight_decay: f64,
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
        let sources = params.iter().map(|_| Source::Direct).collect();
        let names = (0..params.len()).map(|i| i.to_string()).collect();
        Optimizer {
            kind,
            params,
            sources,
            names,
            exp_avgs,
            exp_avg_sqs,
            step,
            lr,
            weight_decay: 0.0,
        }
    }

    /// Decoupled weight decay (Loshchilov and Hutter's AdamW; for SGD the same
    /// shrinking): each step multiplies the weights by 1 − lr · `weight_decay` apart
    /// from the gradient's update.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Keys the saved state by the parameters' names in `vs`, so that it loads into
    /// the same parameters whatever order they come in.
    pub fn named(mut self, vs: &tch::nn::VarStore) -> Result<Self> {
        let variables = vs.variables();
        self.names = self
            .params
            .iter()
            .map(|p| {
                variables
                    .iter()
                    .find(|(_, v)| v.data_ptr() == p.data_ptr() && v.size() == p.size())
                    .map(|(name, _)| name.clone())
                    .ok_or_else(|| anyhow!("a parameter of the optimizer is not in the model"))
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// Takes the gradients of `shared` parameters from their aliasing leaves. Each must
    /// be one of this optimizer's parameters (the same storage); its blocks must cover
    /// its rows in order.
    pub fn share(mut self, shared: Vec<SharedParameter>) -> Result<Self> {
        for s in shared {
            let index = self
                .params
                .iter()
                .position(|p| p.data_ptr() == s.param.data_ptr())
                .ok_or_else(|| anyhow!("a shared parameter is not one of the optimizer's"))?;
            let rows = s.param.size()[0];
            let mut blocks = Vec::new();
            let mut start = 0;
            for leaf in s.blocks {
                let len = leaf.size()[0];
                blocks.push((start, len, Some(leaf)));
                start += len;
            }
            if blocks.is_empty() {
                blocks.push((0, rows, None));
                start = rows;
            }
            if start != rows {
                bail!("the blocks of a shared parameter cover {start} of its {rows} rows");
            }
            self.sources[index] = Source::Shared {
                blocks,
                lookups: s.lookups,
            };
        }
        Ok(self)
    }

    /// The state a resumed run needs (Adam's step count and moment estimates), by name.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        if self.kind == OptimizerKind::Sgd {
            return Vec::new();
        }
        let mut named = vec![("step".to_string(), self.step.shallow_clone())];
        for ((m, v), name) in self.exp_avgs.iter().zip(&self.exp_avg_sqs).zip(&self.names) {
            named.push((format!("exp_avg.{name}"), m.shallow_clone()));
            named.push((format!("exp_avg_sq.{name}"), v.shallow_clone()));
        }
        named
    }

    /// Restores what [`Optimizer::state`] returned, checking every name and shape.
    pub fn load_state(&mut self, stored: &HashMap<String, Tensor>) -> Result<()> {
        if self.kind == OptimizerKind::Sgd {
            return Ok(());
        }
        let _guard = tch::no_grad_guard();
        // Directories of older versions key the state by position.
        let by_position = !self.names.is_empty()
            && !stored.contains_key(&format!("exp_avg.{}", self.names[0]))
            && stored.contains_key("exp_avg.0");
        let mut targets = vec![("step".to_string(), &mut self.step)];
        let pairs = self.exp_avgs.iter_mut().zip(self.exp_avg_sqs.iter_mut());
        for (i, ((m, v), name)) in pairs.zip(&self.names).enumerate() {
            let key = if by_position {
                i.to_string()
            } else {
                name.clone()
            };
            targets.push((format!("exp_avg.{key}"), m));
            targets.push((format!("exp_avg_sq.{key}"), v));
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
        let grads = self.backward(loss);
        self.apply(grads, clip)
    }

    /// The gradients of `loss` for the leaves autograd differentiates, in the order
    /// [`Optimizer::apply`] takes them: what a data-parallel run sums across its
    /// processes before the step.
    pub fn backward(&self, loss: &Tensor) -> Vec<Tensor> {
        Tensor::run_backward(&[loss], &self.leaves(), false, false)
    }

    /// Which leaves of [`Optimizer::backward`] the output layer reads: every shared
    /// parameter's blocks (the word vectors, see
    /// [`RnnLm::shared_parameters`](crate::model::RnnLm::shared_parameters)) and the
    /// direct parameters among `direct` (the layer's own, matched by storage).
    pub fn output_leaves(&self, direct: &[Tensor]) -> Vec<bool> {
        let mut output = Vec::new();
        for (param, source) in self.params.iter().zip(&self.sources) {
            match source {
                Source::Direct => output.push(
                    direct
                        .iter()
                        .any(|d| d.data_ptr() == param.data_ptr() && d.size() == param.size()),
                ),
                Source::Shared { blocks, lookups } => {
                    output.extend(blocks.iter().filter(|b| b.2.is_some()).map(|_| true));
                    output.extend(lookups.iter().map(|_| false));
                }
            }
        }
        output
    }

    /// The gradients of `loss` for the leaves where `mask` is `want`, in the order of
    /// [`Optimizer::backward`], followed by those for `extra` (tensors of the graph
    /// that are not leaves). A backward pass in two parts: the first part's gradients
    /// can be sent while the second runs. The graph is not kept: a second part that
    /// starts from an `extra` tensor runs nodes the first did not.
    pub fn backward_part(
        &self,
        loss: &Tensor,
        mask: &[bool],
        want: bool,
        extra: &[&Tensor],
    ) -> Vec<Tensor> {
        let mut inputs: Vec<Tensor> = self
            .leaves()
            .into_iter()
            .zip(mask)
            .filter(|(_, &m)| m == want)
            .map(|(leaf, _)| leaf)
            .collect();
        inputs.extend(extra.iter().map(|t| t.shallow_clone()));
        Tensor::run_backward(&[loss], &inputs, false, false)
    }

    /// `grads` from [`Optimizer::backward`] with a zero gradient where autograd gave
    /// none (a class layer's cluster that no target of the batch is in), so that the
    /// gradients of several batches, or of several processes, add up leaf by leaf.
    pub fn zero_filled(&self, grads: Vec<Tensor>) -> Vec<Tensor> {
        self.zero_filled_part(grads, &[], true)
    }

    /// [`Optimizer::zero_filled`] for the gradients of [`Optimizer::backward_part`]
    /// (those of the leaves where `mask` is `want`; an empty mask: all leaves).
    pub fn zero_filled_part(&self, grads: Vec<Tensor>, mask: &[bool], want: bool) -> Vec<Tensor> {
        let leaves = self
            .leaves()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask.get(*i).is_none_or(|&m| m == want))
            .map(|(_, leaf)| leaf);
        grads
            .into_iter()
            .zip(leaves)
            .map(|(grad, leaf)| match grad.defined() {
                true => grad,
                false => leaf.zeros_like(),
            })
            .collect()
    }

    /// Zero gradients, one per leaf of [`Optimizer::backward`]: what a process with no
    /// batch in a step adds to the others'.
    pub fn zero_gradients(&self) -> Vec<Tensor> {
        self.leaves().iter().map(Tensor::zeros_like).collect()
    }

    /// Clips `grads` (from [`Optimizer::backward`]) to the norm `clip` (0: no
    /// clipping) and updates the parameters with them.
    pub fn apply(&mut self, grads: Vec<Tensor>, clip: f64) -> Result<()> {
        let mut grads = grads.into_iter();
        let _guard = tch::no_grad_guard();
        let pieces = self.pieces(&mut grads, true)?;
        // clip_grad_norm_: multiply by clip / (norm + 1e-6) when that is below 1, here
        // as a divisor max((norm + 1e-6) / clip, 1) kept on the device. Each norm is one
        // read of its gradient, with no squared copy.
        let scale = (clip > 0.0).then(|| {
            let norms: Vec<Tensor> = pieces
                .iter()
                .map(|p| p.grad.norm().to_kind(Kind::Float))
                .collect();
            let norm = Tensor::stack(&norms, 0).norm();
            ((norm + 1e-6) / clip).clamp_min(1.0)
        });
        match self.kind {
            OptimizerKind::Sgd => {
                for mut piece in pieces {
                    if self.weight_decay > 0.0 {
                        let _ = piece
                            .param
                            .f_mul_scalar_(1.0 - self.lr * self.weight_decay)?;
                    }
                    let update = match &scale {
                        Some(s) => &piece.grad / s * self.lr,
                        None => &piece.grad * self.lr,
                    };
                    let _ = piece.param.f_sub_(&update)?;
                }
                Ok(())
            }
            OptimizerKind::Adam => self.fused_adam(&pieces, scale.as_ref()),
        }
    }

    /// The gradient of `loss` for each parameter, whole, in the optimizer's order
    /// (zero for one the loss does not read); nothing is updated.
    pub fn gradients(&self, loss: &Tensor) -> Result<Vec<Tensor>> {
        let mut grads = Tensor::run_backward(&[loss], &self.leaves(), false, false).into_iter();
        let _guard = tch::no_grad_guard();
        let mut pieces = self.pieces(&mut grads, false)?.into_iter();
        let mut whole = Vec::new();
        for source in &self.sources {
            let count = match source {
                Source::Direct => 1,
                Source::Shared { blocks, .. } => blocks.len(),
            };
            let parts: Vec<Tensor> = pieces.by_ref().take(count).map(|p| p.grad).collect();
            whole.push(Tensor::cat(&parts, 0));
        }
        Ok(whole)
    }

    /// Per leaf of [`Optimizer::backward`]: whether it is an embedding lookup, whose
    /// gradient is sparse (the rows of the batch's tokens).
    pub fn lookup_leaves(&self) -> Vec<bool> {
        let mut lookup = Vec::new();
        for source in &self.sources {
            match source {
                Source::Direct => lookup.push(false),
                Source::Shared { blocks, lookups } => {
                    lookup.extend(blocks.iter().filter(|b| b.2.is_some()).map(|_| false));
                    lookup.extend(lookups.iter().map(|_| true));
                }
            }
        }
        lookup
    }

    /// The leaves autograd differentiates for: each parameter, or the leaves that
    /// stand for it.
    fn leaves(&self) -> Vec<Tensor> {
        let mut leaves = Vec::new();
        for (param, source) in self.params.iter().zip(&self.sources) {
            match source {
                Source::Direct => leaves.push(param.shallow_clone()),
                Source::Shared { blocks, lookups } => {
                    leaves.extend(
                        blocks
                            .iter()
                            .filter_map(|b| b.2.as_ref().map(Tensor::shallow_clone)),
                    );
                    leaves.extend(lookups.iter().map(Tensor::shallow_clone));
                }
            }
        }
        leaves
    }

    /// Pairs every parameter, or row block of one, with its gradient from `grads` (in
    /// the order of [`Optimizer::leaves`]). `strict`: a parameter that the loss does not
    /// read is an error (training reads them all), else its gradient is zero.
    fn pieces(&self, grads: &mut impl Iterator<Item = Tensor>, strict: bool) -> Result<Vec<Piece>> {
        let mut next = || {
            grads
                .next()
                .ok_or_else(|| anyhow!("autograd returned too few gradients"))
        };
        let mut pieces = Vec::new();
        for (i, (param, source)) in self.params.iter().zip(&self.sources).enumerate() {
            let moments = |start: i64, len: i64| match self.kind {
                OptimizerKind::Sgd => (None, None),
                OptimizerKind::Adam => (
                    Some(self.exp_avgs[i].narrow(0, start, len)),
                    Some(self.exp_avg_sqs[i].narrow(0, start, len)),
                ),
            };
            match source {
                Source::Direct => {
                    let grad = next()?;
                    let grad = match (grad.defined(), strict) {
                        (true, _) => grad,
                        (false, false) => param.zeros_like(),
                        (false, true) => bail!("parameter {i} has no gradient: the loss does not read it, or reads it through leaves not given to `share`"),
                    };
                    let (exp_avg, exp_avg_sq) = moments(0, param.size()[0]);
                    pieces.push(Piece {
                        param: param.shallow_clone(),
                        grad,
                        exp_avg,
                        exp_avg_sq,
                    });
                }
                Source::Shared { blocks, lookups } => {
                    let mut block_grads = Vec::new();
                    for &(start, len, ref leaf) in blocks {
                        let grad = match leaf {
                            Some(_) => next()?,
                            None => Tensor::new(),
                        };
                        block_grads.push(if grad.defined() {
                            grad
                        } else {
                            param.narrow(0, start, len).zeros_like()
                        });
                    }
                    for _ in lookups {
                        let sparse = next()?;
                        if sparse.defined() {
                            add_sparse_rows(&mut block_grads, blocks, &sparse)?;
                        }
                    }
                    for (grad, &(start, len, _)) in block_grads.into_iter().zip(blocks) {
                        let (exp_avg, exp_avg_sq) = moments(start, len);
                        pieces.push(Piece {
                            param: param.narrow(0, start, len),
                            grad,
                            exp_avg,
                            exp_avg_sq,
                        });
                    }
                }
            }
        }
        Ok(pieces)
    }

    fn fused_adam(&mut self, pieces: &[Piece], scale: Option<&Tensor>) -> Result<()> {
        let pointers = |field: fn(&Piece) -> Option<&Tensor>| -> Result<Vec<*mut c_void>> {
            pieces
                .iter()
                .map(|p| {
                    field(p)
                        .map(|t| t.as_ptr() as *mut c_void)
                        .ok_or_else(|| anyhow!("Adam has no moment estimates for a parameter"))
                })
                .collect()
        };
        let params = pointers(|p| Some(&p.param))?;
        let grads_ptr = pointers(|p| Some(&p.grad))?;
        let exp_avgs = pointers(|p| p.exp_avg.as_ref())?;
        let exp_avg_sqs = pointers(|p| p.exp_avg_sq.as_ref())?;
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
                self.weight_decay,
                scale_ptr,
            )
        };
        // SAFETY: the binding's result, used once.
        match unsafe { crate::torch_error::binding_error(error) } {
            None => Ok(()),
            Some(message) => Err(anyhow!("Adam update failed: {message}")),
        }
    }
}

/// Adds the rows of a sparse gradient of the whole parameter (a lookup's: indices
/// `[1, n]`, values `[n, ...]`, repeats allowed) into the dense gradients of its blocks.
fn add_sparse_rows(
    block_grads: &mut [Tensor],
    blocks: &[(i64, i64, Option<Tensor>)],
    sparse: &Tensor,
) -> Result<()> {
    // Dense where it was summed dense (by a caller of `backward`).
    if !sparse.is_sparse() {
        for (grad, &(start, len, _)) in block_grads.iter_mut().zip(blocks) {
            let _ = grad.f_add_(&sparse.narrow(0, start, len))?;
        }
        return Ok(());
    }
    let rows = sparse.internal_indices().select(0, 0);
    let values = sparse.internal_values();
    for (grad, &(start, len, _)) in block_grads.iter_mut().zip(blocks) {
        if blocks.len() == 1 {
            let _ = grad.f_index_add_(0, &rows, &values)?;
            continue;
        }
        let inside = rows
            .ge(start)
            .logical_and(&rows.lt(start + len))
            .nonzero()
            .squeeze_dim(1);
        if inside.numel() > 0 {
            let local = rows.index_select(0, &inside) - start;
            let _ = grad.f_index_add_(0, &local, &values.index_select(0, &inside))?;
        }
    }
    Ok(())
}
