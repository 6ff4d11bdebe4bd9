//! Parameters read through leaves that share their storage.
//!
//! The network reads the embedding matrix through an aliasing leaf (its lookup), and a
//! class output layer reads its word vectors block by block, each block a leaf of its
//! own: so each gets its own gradient, dense for a block, sparse for a lookup, and the
//! optimizer ([`crate::optim`]) puts the parts together without ever building the
//! whole dense gradient. Both sides import these types from here.

use tch::Tensor;

/// A leaf that shares `param`'s storage (and sees every update of it) but collects
/// its own gradient: what a [`SharedParameter`]'s blocks and lookups are made of.
pub fn alias(param: &Tensor) -> Tensor {
    param.detach().set_requires_grad(param.requires_grad())
}

/// A parameter that the model reads through leaves sharing its storage, so that its
/// gradient arrives in parts.
#[derive(Debug)]
pub struct SharedParameter {
    /// The variable itself.
    pub param: Tensor,
    /// Leaves for consecutive blocks of its rows, together all of them, each given a
    /// dense gradient; none: the whole parameter is one block with no dense gradient.
    pub blocks: Vec<Tensor>,
    /// Leaves aliasing the whole parameter that are given sparse gradients (lookups).
    pub lookups: Vec<Tensor>,
}
