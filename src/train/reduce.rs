//! Summing a step's gradients across the ranks of a data-parallel run.
//!
//! Dense gradients go through one all-reduce. An embedding lookup's gradient is the
//! rows of the batch's tokens only (a few hundred of a vocabulary of tens of
//! thousands), so it is gathered rather than summed dense: every rank's coalesced
//! rows, placed one after the other in rank order in a buffer of the rows all ranks
//! touched, which the same all-reduce fills (each rank adds its own rows to zeros).
//! The gathered rows are identical on every rank, and the optimizer adds them into
//! the parameter as it adds one process's.

use crate::distributed::World;
use anyhow::Result;
use std::time::Instant;
use tch::{Kind, Tensor};

/// Where the seconds of a sum went.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ReduceSeconds {
    /// In the first, tiny collective: mostly waiting for the slowest rank's batches.
    pub(super) waiting: f64,
    /// In the all-reduce of the gradients.
    pub(super) summing: f64,
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
pub(super) fn sum_gradients(
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
    let mut gathered = placed.into_iter();
    let mut summed = Vec::with_capacity(gradients.len());
    for (gradient, part) in gradients.into_iter().zip(rows) {
        summed.push(match part {
            None => gradient,
            Some(part) => {
                let (indices, values) = gathered.next().expect("one buffer per lookup");
                Tensor::f_sparse_coo_tensor_indices_size(
                    &indices.unsqueeze(0),
                    &values,
                    part.size.as_slice(),
                    (values.kind(), values.device()),
                    false,
                )?
            }
        });
    }
    let seconds = ReduceSeconds {
        waiting: (waited - started).as_secs_f64(),
        summing: waited.elapsed().as_secs_f64(),
    };
    Ok((summed, small[0], seconds))
}
