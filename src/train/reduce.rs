//! Summing a step's gradients across the ranks of a data-parallel run.
//!
//! Dense gradients go through one all-reduce. An embedding lookup's gradient is the
//! rows of the batch's tokens only (a few hundred of a vocabulary of tens of
//! thousands), so it is gathered rather than summed dense: every rank's coalesced
//! rows, placed one after the other in rank order in a buffer of the rows all ranks
//! touched, which the same all-reduce fills (each rank adds its own rows to zeros).
//! The gathered rows are identical on every rank, and the optimizer adds them into
//! the parameter as it adds one process's.
//!
//! The output layer's gradients (most of the bytes: its word vectors) are summed while
//! the backward pass of the recurrent layers runs, as DDP's buckets are: the last
//! batch's backward pass stops at the output layer's input, its gradients are sent in
//! the background, and the pass goes on from there.

use super::batches::BatchLoss;
use crate::distributed::World;
use crate::optim::Optimizer;
use anyhow::Result;
use std::time::Instant;
use tch::{Kind, Tensor};

/// A batch's objective, its backward pass not yet run: the last of a rank's step
/// runs it in two parts around the output layer's sum.
pub(super) struct BatchObjective {
    /// The output layer's input (in the graph).
    pub(super) hidden: Tensor,
    /// The part of the objective that the output layer computes from `hidden`.
    pub(super) error: Tensor,
    /// The rest of it (activation penalties), which reads the recurrent layers alone.
    pub(super) penalty: Option<Tensor>,
}

impl BatchObjective {
    /// A batch's part of a step's objective, the mean loss per token of the step's
    /// `total_tokens` plus the penalties in the batch's share.
    pub(super) fn of(loss: BatchLoss, total_tokens: usize) -> Self {
        let error = &loss.sum / total_tokens as f64;
        let penalty = loss
            .penalty
            .map(|penalty| match loss.tokens == total_tokens {
                true => penalty,
                false => penalty * (loss.tokens as f64 / total_tokens as f64),
            });
        BatchObjective {
            hidden: loss.hidden,
            error,
            penalty,
        }
    }

    /// The whole of it, for one backward pass.
    pub(super) fn objective(&self) -> Tensor {
        match &self.penalty {
            Some(penalty) => &self.error + penalty,
            None => self.error.shallow_clone(),
        }
    }
}

/// Sums a step's gradients across the ranks. `before`: the gradients of this rank's
/// earlier batches of the step; `last`: its last batch (none: it has no batch in the
/// step), whose backward pass runs in two parts around the output layer's sum.
/// Returns the summed gradients, the summed loss and where the time went.
pub(super) fn sum_step(
    world: &World,
    optimizer: &Optimizer,
    output: &[bool],
    last: Option<BatchObjective>,
    before: Option<Vec<Tensor>>,
    loss_sum: f64,
) -> Result<(Vec<Tensor>, f64, ReduceSeconds)> {
    let (before_output, before_rest) = match before {
        Some(grads) => {
            let (early, late) = split(grads, output);
            (Some(early), Some(late))
        }
        None => (None, None),
    };
    let zeros = || optimizer.zero_gradients();
    let (early, through) = match &last {
        Some(batch) => {
            let mut grads = optimizer.backward_part(&batch.error, output, true, &[&batch.hidden]);
            let through = grads.pop();
            (optimizer.zero_filled_part(grads, output, true), through)
        }
        None => (split(zeros(), output).0, None),
    };
    let pending = world.start_all_reduce_sum(added(early, before_output))?;
    let overlap_started = Instant::now();
    let late = match (&last, through) {
        (Some(batch), Some(through)) => {
            // The output layer's gradient at its input, passed on unchanged.
            let through = (&batch.hidden * through).sum(None);
            let rest = match &batch.penalty {
                Some(penalty) => through + penalty,
                None => through,
            };
            let grads = optimizer.backward_part(&rest, output, false, &[]);
            optimizer.zero_filled_part(grads, output, false)
        }
        _ => split(zeros(), output).1,
    };
    let overlapped = overlap_started.elapsed().as_secs_f64();
    let lookups = split(optimizer.lookup_leaves(), output).1;
    let (late, loss_sum, mut seconds) =
        sum_gradients(world, added(late, before_rest), &lookups, loss_sum)?;
    let started = Instant::now();
    let early = pending.wait()?;
    seconds.summing += started.elapsed().as_secs_f64();
    seconds.overlapped = overlapped;
    Ok((merged(output, early, late), loss_sum, seconds))
}

/// The items where `mask` is true and those where it is false, each in order.
fn split<T>(items: Vec<T>, mask: &[bool]) -> (Vec<T>, Vec<T>) {
    let (picked, rest): (Vec<_>, Vec<_>) = items.into_iter().zip(mask).partition(|(_, &m)| m);
    (
        picked.into_iter().map(|(item, _)| item).collect(),
        rest.into_iter().map(|(item, _)| item).collect(),
    )
}

/// `grads` plus `before`, leaf by leaf.
pub(super) fn added(grads: Vec<Tensor>, before: Option<Vec<Tensor>>) -> Vec<Tensor> {
    match before {
        None => grads,
        Some(before) => before.iter().zip(grads).map(|(a, b)| a + b).collect(),
    }
}

/// The two parts of [`split`] put back in order.
fn merged(mask: &[bool], picked: Vec<Tensor>, rest: Vec<Tensor>) -> Vec<Tensor> {
    let (mut picked, mut rest) = (picked.into_iter(), rest.into_iter());
    mask.iter()
        .map(|&m| match m {
            true => picked.next(),
            false => rest.next(),
        })
        .collect::<Option<_>>()
        .expect("one gradient per leaf")
}

/// Where the seconds of a sum went.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ReduceSeconds {
    /// In the first, tiny collective: mostly waiting for the slowest rank's batches.
    pub(super) waiting: f64,
    /// In the all-reduce of the gradients, after the backward pass.
    pub(super) summing: f64,
    /// In the part of the backward pass that ran while the output layer's gradients
    /// were summed.
    pub(super) overlapped: f64,
}

/// A lookup's gradient as this rank's coalesced rows: indices `[n]`, values `[n, ...]`.
struct Rows {
    indices: Tensor,
    values: Tensor,
    size: Vec<i64>,
}

impl Rows {
    fn of(gradient: &Tensor) -> Result<Rows> {
        let sparse = match gradient.is_sparse() {
            true => gradient.f_coalesce()?,
            // A rank with no batch in the step has zero gradients, dense.
            false => gradient.f_to_sparse_sparse_dim(1)?,
        };
        Ok(Rows {
            indices: sparse.f_internal_indices()?.f_select(0, 0)?,
            values: sparse.f_internal_values()?,
            size: gradient.size(),
        })
    }

    fn count(&self) -> i64 {
        self.indices.size()[0]
    }

    /// Buffers for every rank's rows (`counts`, in rank order), holding this rank's at
    /// its place and zeros elsewhere.
    fn placed(&self, counts: &[i64], rank: usize) -> Result<(Tensor, Tensor)> {
        let total: i64 = counts.iter().sum();
        let offset: i64 = counts[..rank].iter().sum();
        let mut shape = self.values.size();
        shape[0] = total;
        let device = self.values.device();
        let values = Tensor::f_zeros(&shape, (self.values.kind(), device))?;
        let indices = Tensor::f_zeros([total], (Kind::Int64, device))?;
        values
            .f_narrow(0, offset, self.count())?
            .f_copy_(&self.values)?;
        indices
            .f_narrow(0, offset, self.count())?
            .f_copy_(&self.indices)?;
        Ok((indices, values))
    }
}

/// Sums `gradients` (one per optimizer leaf; `lookups[i]`: leaf i is an embedding
/// lookup) and this rank's `loss_sum` over the ranks. Returns the summed gradients,
/// the summed loss and where the time went.
fn sum_gradients(
    world: &World,
    gradients: Vec<Tensor>,
    lookups: &[bool],
    loss_sum: f64,
) -> Result<(Vec<Tensor>, f64, ReduceSeconds)> {
    let (rank, ranks) = (world.rank(), world.size());
    let rows: Vec<Option<Rows>> = gradients
        .iter()
        .zip(lookups)
        .map(|(gradient, &lookup)| lookup.then(|| Rows::of(gradient)).transpose())
        .collect::<Result<_>>()?;
    let started = Instant::now();
    // The loss and each lookup's row count at this rank's slot, in one small sum.
    let mut small = vec![loss_sum];
    for part in rows.iter().flatten() {
        let mut slots = vec![0.0; ranks];
        slots[rank] = part.count() as f64;
        small.extend(slots);
    }
    let small = world.sum(&small)?;
    let waited = Instant::now();
    let placed: Vec<(Tensor, Tensor)> = rows
        .iter()
        .flatten()
        .zip(small[1..].chunks(ranks))
        .map(|(part, counts)| {
            let counts: Vec<i64> = counts.iter().map(|&c| c as i64).collect();
            part.placed(&counts, rank)
        })
        .collect::<Result<_>>()?;
    // The dense gradients and the rows' buffers, in one all-reduce.
    let dense = gradients
        .iter()
        .zip(&rows)
        .filter(|(_, part)| part.is_none());
    let mut buffers: Vec<Tensor> = dense.map(|(g, _)| g.shallow_clone()).collect();
    for (indices, values) in &placed {
        buffers.push(indices.shallow_clone());
        buffers.push(values.shallow_clone());
    }
    world.all_reduce_sum(&buffers)?;
    let summed = with_gathered_rows(gradients, rows, placed)?;
    let seconds = ReduceSeconds {
        waiting: (waited - started).as_secs_f64(),
        summing: waited.elapsed().as_secs_f64(),
        overlapped: 0.0,
    };
    Ok((summed, small[0], seconds))
}

/// The summed `gradients`, each lookup's (where `rows` has its part) replaced by the
/// sparse gradient of every rank's rows, from its `gathered` indices and values.
fn with_gathered_rows(
    gradients: Vec<Tensor>,
    rows: Vec<Option<Rows>>,
    gathered: Vec<(Tensor, Tensor)>,
) -> Result<Vec<Tensor>> {
    let mut gathered = gathered.into_iter();
    gradients
        .into_iter()
        .zip(rows)
        .map(|(gradient, part)| match part {
            None => Ok(gradient),
            Some(part) => {
                let (indices, values) = gathered.next().expect("one buffer per lookup");
                Ok(Tensor::f_sparse_coo_tensor_indices_size(
                    &indices.unsqueeze(0),
                    &values,
                    part.size.as_slice(),
                    (values.kind(), values.device()),
                    false,
                )?)
            }
        })
        .collect()
}
