//! The output layer: hidden state `a<t>` → log `ŷ<t>` over the vocabulary.
//!
//! Training, scoring and sampling reach it only through [`OutputLayer::log_probs`] (the
//! whole distribution), [`OutputLayer::target_log_probs`] (the log-probability of given
//! targets) and [`OutputLayer::draw`] (a sample), so the layers below are
//! interchangeable.
//!
//! - [`SoftmaxOutput`]: one linear map to the vocabulary, then log-softmax.
//! - [`ClassOutput`]: an exactly normalized two-level softmax. The vocabulary is in
//!   falling training count, and `cutoffs` cut it into a *head* of the most frequent
//!   words and a few *clusters* of rarer ones:
//!
//! ```text
//!  index  0 (<EOS>) 1 (<UNK>) … K-1 | K … c1-1 | c1 … V-1        cutoffs = [K, c1]
//!         head words                | cluster 1 | cluster 2
//!
//!  P(w | h) = head_softmax(h)[w]                                   w in the head
//!  P(w | h) = head_softmax(h)[K + i] · cluster_softmax_i(h)[w]      w in cluster i
//! ```
//!
//! The head softmax runs over the K head words and one token per cluster. The word
//! vectors are the full-size rows of `weight` (the embedding matrix when tied), so a
//! cluster's softmax is one product with a slice of the same matrix. A token's loss
//! needs the head softmax and its own cluster's softmax only: the tokens of a batch
//! are grouped by the cluster of their target, one large product per cluster.

use crate::categorical::Sampler;
use crate::rows::{pad_rows, with_min_rows};
use crate::shared::alias;
use crate::vocab::UNK_ID;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Bytes of logits one product of the output layer makes at most when it is given
/// many rows (scoring): their rows are taken a block at a time. Blocks under glibc's
/// largest mmap threshold (32 MiB) are reused from the heap from one block to the next
/// instead of being mapped and zeroed afresh each time, which doubles scoring speed; a
/// block of a few hundred rows keeps the product as fast per row as one call over all.
pub const LOGIT_BLOCK_BYTES: i64 = 24 << 20;

/// Rows per product for logits `width` wide, [`LOGIT_BLOCK_BYTES`] at most.
fn block_rows(width: i64) -> i64 {
    (LOGIT_BLOCK_BYTES / (4 * width.max(1))).clamp(64, 16384)
}

/// Which output layer a model has; saved in `config.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OutputConfig {
    /// A softmax over the whole vocabulary.
    #[default]
    Full,
    /// A head of the most frequent words and clusters of the rest.
    Class {
        /// Where the head ends and each cluster after the first begins, as vocabulary
        /// indices: head `[0, cutoffs[0])`, cluster i `[cutoffs[i-1], cutoffs[i])`, the
        /// last cluster up to the end of the vocabulary.
        cutoffs: Vec<i64>,
    },
}

impl OutputConfig {
    /// Checks the cutoffs against a vocabulary of `vocab` tokens.
    pub fn check(&self, vocab: i64) -> Result<()> {
        if let OutputConfig::Class { cutoffs } = self {
            if cutoffs.is_empty() {
                bail!("a class output layer needs at least one cutoff");
            }
            if cutoffs[0] < 2 {
                bail!(
                    "the head must hold <EOS> and <UNK>: first cutoff {} < 2",
                    cutoffs[0]
                );
            }
            if cutoffs.windows(2).any(|w| w[0] >= w[1]) {
                bail!("cutoffs {cutoffs:?} do not increase");
            }
            if cutoffs[cutoffs.len() - 1] >= vocab {
                bail!(
                    "cutoff {} leaves an empty cluster: the vocabulary has {vocab} tokens",
                    cutoffs[cutoffs.len() - 1]
                );
            }
        }
        Ok(())
    }
}

/// Cutoffs for `clusters` clusters that minimize the expected width of the softmaxes a
/// token needs, head + (probability of each cluster) × (its width), for vocabulary
/// indices with training counts `counts` (in vocabulary order, falling).
pub fn choose_cutoffs(counts: &[u64], clusters: usize) -> Vec<i64> {
    let vocab = counts.len();
    let total: f64 = counts.iter().sum::<u64>().max(1) as f64;
    let mut prefix = vec![0.0; vocab + 1];
    for (i, &c) in counts.iter().enumerate() {
        prefix[i + 1] = prefix[i] + c as f64 / total;
    }
    let mass = |a: usize, b: usize| prefix[b] - prefix[a];
    let clusters = clusters.clamp(1, vocab.saturating_sub(2).max(1));
    // cost[k][j]: cheapest expected width of the words from j to the end in k clusters.
    // Candidate cut points on a grid keep the search fast for large vocabularies.
    let step = (vocab / 400).max(1);
    let mut points: Vec<usize> = (2..vocab).step_by(step).collect();
    points.push(vocab);
    let width = |a: usize, b: usize| mass(a, b) * (b - a) as f64;
    let n = points.len();
    // best[k][p]: (cost, next point index) to cover points[p]..vocab with k clusters.
    let mut best = vec![vec![(f64::INFINITY, n - 1); n]; clusters + 1];
    best[0][n - 1] = (0.0, n - 1);
    for k in 1..=clusters {
        for p in 0..n - 1 {
            for q in p + 1..n {
                let rest = best[k - 1][q].0;
                if rest.is_finite() {
                    let cost = width(points[p], points[q]) + rest;
                    if cost < best[k][p].0 {
                        best[k][p] = (cost, q);
                    }
                }
            }
        }
    }
    let mut chosen = (f64::INFINITY, 0);
    for p in 0..n - 1 {
        let cost = points[p] as f64 + clusters as f64 + best[clusters][p].0;
        if cost < chosen.0 {
            chosen = (cost, p);
        }
    }
    let mut cutoffs = vec![points[chosen.1] as i64];
    let mut p = chosen.1;
    for k in (2..=clusters).rev() {
        p = best[k][p].1;
        cutoffs.push(points[p] as i64);
    }
    cutoffs
}

/// The output layer of a model.
#[derive(Debug)]
pub enum OutputLayer {
    /// Full softmax.
    Full(SoftmaxOutput),
    /// Head and clusters.
    Class(ClassOutput),
}

impl OutputLayer {
    /// Creates the layer's parameters under `vs` (`weight` unless `tied` gives it).
    pub fn new(
        vs: &nn::Path,
        config: &OutputConfig,
        hidden: i64,
        vocab: i64,
        tied: Option<Tensor>,
    ) -> Self {
        let weight = tied.unwrap_or_else(|| {
            vs.var(
                "weight",
                &[vocab, hidden],
                nn::Init::Uniform { lo: -0.1, up: 0.1 },
            )
        });
        let bias = vs.var("bias", &[vocab], nn::Init::Const(0.0));
        match config {
            OutputConfig::Full => OutputLayer::Full(SoftmaxOutput {
                block: alias(&weight),
                weight,
                bias,
            }),
            OutputConfig::Class { cutoffs } => {
                let clusters = cutoffs.len() as i64;
                let cluster_weight = vs.var(
                    "cluster_weight",
                    &[clusters, hidden],
                    nn::Init::Uniform { lo: -0.1, up: 0.1 },
                );
                let cluster_bias = vs.var("cluster_bias", &[clusters], nn::Init::Const(0.0));
                let mut bounds = cutoffs.clone();
                bounds.push(vocab);
                let starts = std::iter::once(0).chain(bounds.iter().copied());
                let blocks = starts
                    .zip(&bounds)
                    .map(|(start, &end)| alias(&weight.narrow(0, start, end - start)))
                    .collect();
                OutputLayer::Class(ClassOutput {
                    weight,
                    blocks,
                    bias,
                    cluster_weight,
                    cluster_bias,
                    bounds,
                })
            }
        }
    }

    /// The word vectors `[vocab, hidden]` (the embedding matrix when tied).
    pub fn word_vectors(&self) -> Tensor {
        match self {
            OutputLayer::Full(o) => o.weight.shallow_clone(),
            OutputLayer::Class(o) => o.weight.shallow_clone(),
        }
    }

    /// The leaves through which the layer reads the word vectors: consecutive row
    /// blocks of them, the whole matrix for a full softmax and the head and each
    /// cluster for a class layer. Each gets the gradient of its own rows, so the
    /// gradients are never assembled into a vocabulary-sized matrix.
    pub fn word_vector_blocks(&self) -> Vec<Tensor> {
        match self {
            OutputLayer::Full(o) => vec![o.block.shallow_clone()],
            OutputLayer::Class(o) => o.blocks.iter().map(Tensor::shallow_clone).collect(),
        }
    }

    /// The layer's parameters that it reads directly, not through the word vectors'
    /// blocks: the biases, and a class layer's cluster vectors.
    pub fn direct_parameters(&self) -> Vec<Tensor> {
        match self {
            OutputLayer::Full(o) => vec![o.bias.shallow_clone()],
            OutputLayer::Class(o) => vec![
                o.bias.shallow_clone(),
                o.cluster_weight.shallow_clone(),
                o.cluster_bias.shallow_clone(),
            ],
        }
    }

    /// Log-probabilities over the vocabulary: `[..., hidden]` → `[..., vocab]`.
    pub fn log_probs(&self, hidden: &Tensor) -> Tensor {
        match self {
            OutputLayer::Full(o) => o.log_probs(hidden),
            OutputLayer::Class(o) => o.log_probs(hidden),
        }
    }

    /// Rows of hidden states to give [`OutputLayer::target_log_probs`] at a time so
    /// that its logits stay within [`LOGIT_BLOCK_BYTES`]: a full softmax's are
    /// vocabulary-wide; a class layer's head is narrow and it takes its clusters' rows
    /// a block at a time itself, so it is given many rows, and each cluster's product
    /// then has many rows too.
    pub fn rows_per_call(&self) -> i64 {
        match self {
            OutputLayer::Full(o) => block_rows(o.bias.size()[0]),
            OutputLayer::Class(o) => block_rows(o.head_size() + o.clusters() as i64),
        }
    }

    /// Log-probability of each target: hidden `[n, hidden]`, targets `[n]` → `[n]`.
    ///
    /// Each row's result is independent of the other rows (see [`crate::rows`]).
    pub fn target_log_probs(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        // Padded as the hidden states are, with token 0 on the padding rows.
        let targets = pad_rows(targets);
        with_min_rows(hidden, |hidden| match self {
            OutputLayer::Full(o) => o.target_log_probs(hidden, &targets),
            OutputLayer::Class(o) => o.target_log_probs(hidden, &targets),
        })
    }

    /// Draws one token per row of `hidden` `[n, hidden]`, never `<UNK>` (its probability
    /// set to zero and the rest renormalized); returns the tokens `[n]` and their
    /// log-probabilities under the model (before renormalization) `[n]`.
    pub fn draw(&self, hidden: &Tensor, sampler: &mut Sampler) -> (Tensor, Tensor) {
        match self {
            OutputLayer::Full(o) => draw_from(&o.log_probs(hidden), sampler),
            OutputLayer::Class(o) => o.draw(hidden, sampler),
        }
    }
}

/// Draws from log-probabilities `[n, k]` with `<UNK>` zeroed; the draws and their
/// log-probabilities.
fn draw_from(log_probs: &Tensor, sampler: &mut Sampler) -> (Tensor, Tensor) {
    let unk = Tensor::from_slice(&[UNK_ID]).to(log_probs.device());
    let weights = log_probs.exp().index_fill(1, &unk, 0.0);
    let drawn = sampler.draw(&weights);
    let drawn_log_prob = log_probs
        .gather(1, &drawn.unsqueeze(1), false)
        .squeeze_dim(1);
    (drawn, drawn_log_prob)
}

/// A full softmax: one linear map to the vocabulary, then log-softmax.
#[derive(Debug)]
pub struct SoftmaxOutput {
    /// `[vocab, hidden]`; the embedding matrix itself when weights are tied.
    weight: Tensor,
    /// The leaf aliasing `weight` that the layer reads.
    block: Tensor,
    /// `[vocab]`.
    bias: Tensor,
}

impl SoftmaxOutput {
    fn log_probs(&self, hidden: &Tensor) -> Tensor {
        hidden
            .linear(&self.block, Some(&self.bias))
            .log_softmax(-1, None)
    }

    fn target_log_probs(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        self.log_probs(hidden)
            .gather(-1, &targets.unsqueeze(-1), false)
            .squeeze_dim(-1)
    }
}

/// The two-level softmax of the module documentation.
#[derive(Debug)]
pub struct ClassOutput {
    /// `[vocab, hidden]` word vectors; the embedding matrix itself when tied.
    weight: Tensor,
    /// Leaves aliasing the head's and each cluster's rows of `weight`, which the layer
    /// reads.
    blocks: Vec<Tensor>,
    /// `[vocab]` word biases.
    bias: Tensor,
    /// `[clusters, hidden]`: the head's vector for each cluster.
    cluster_weight: Tensor,
    /// `[clusters]`.
    cluster_bias: Tensor,
    /// `[K, c1, …, vocab]`: cluster i (from 0) is `bounds[i]..bounds[i + 1]`.
    bounds: Vec<i64>,
}

impl ClassOutput {
    fn head_size(&self) -> i64 {
        self.bounds[0]
    }

    fn clusters(&self) -> usize {
        self.bounds.len() - 1
    }

    /// The head words' and each cluster's slice of the word vectors and biases.
    ///
    /// The biases are one `split` rather than a `narrow` per slice: the gradient of a
    /// narrowed slice is a zero-filled vocabulary-sized tensor, one per slice, while
    /// `split` gathers the gradients of all slices into a single one.
    fn slices(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        let sizes: Vec<i64> = self.blocks.iter().map(|b| b.size()[0]).collect();
        (
            self.blocks.iter().map(Tensor::shallow_clone).collect(),
            self.bias.split_with_sizes(&sizes, 0),
        )
    }

    /// The head distribution `[n, K + clusters]`: the head words, then one entry per cluster.
    fn head_log_probs(&self, hidden: &Tensor, weights: &[Tensor], biases: &[Tensor]) -> Tensor {
        let weight = Tensor::cat(&[&weights[0], &self.cluster_weight], 0);
        let bias = Tensor::cat(&[&biases[0], &self.cluster_bias], 0);
        hidden.linear(&weight, Some(&bias)).log_softmax(-1, None)
    }

    /// Within-cluster distribution of cluster `i` `[n, size]`.
    fn cluster_log_probs(
        hidden: &Tensor,
        i: usize,
        weights: &[Tensor],
        biases: &[Tensor],
    ) -> Tensor {
        hidden
            .linear(&weights[i + 1], Some(&biases[i + 1]))
            .log_softmax(-1, None)
    }

    fn log_probs(&self, hidden: &Tensor) -> Tensor {
        let shape = hidden.size();
        let width = shape[shape.len() - 1];
        let flat = hidden.reshape([-1, width]);
        let (weights, biases) = self.slices();
        let head = self.head_log_probs(&flat, &weights, &biases);
        let k = self.head_size();
        let mut parts = vec![head.narrow(1, 0, k)];
        for i in 0..self.clusters() {
            let within = Self::cluster_log_probs(&flat, i, &weights, &biases);
            parts.push(head.narrow(1, k + i as i64, 1) + within);
        }
        let mut out_shape = shape[..shape.len() - 1].to_vec();
        out_shape.push(*self.bounds.last().unwrap_or(&k));
        Tensor::cat(&parts, 1).reshape(out_shape)
    }

    /// Rows of `targets` in cluster `i`, as indices `[m]`.
    fn rows_in_cluster(&self, targets: &Tensor, i: usize) -> Tensor {
        targets
            .ge(self.bounds[i])
            .logical_and(&targets.lt(self.bounds[i + 1]))
            .nonzero()
            .squeeze_dim(1)
    }

    fn target_log_probs(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        let k = self.head_size();
        // Each target's entry in the head: itself, or its cluster's token (K + i).
        let mut cluster = targets.zeros_like();
        for &start in &self.bounds[..self.clusters()] {
            cluster += targets.ge(start).to_kind(Kind::Int64);
        }
        let head_index = targets.where_self(&cluster.eq(0), &(&cluster + (k - 1)));
        let (weights, biases) = self.slices();
        let mut result = self
            .head_log_probs(hidden, &weights, &biases)
            .gather(1, &head_index.unsqueeze(1), false)
            .squeeze_dim(1);
        for i in 0..self.clusters() {
            let rows = self.rows_in_cluster(targets, i);
            if rows.numel() == 0 {
                continue;
            }
            let local = targets.index_select(0, &rows) - self.bounds[i];
            let size = self.bounds[i + 1] - self.bounds[i];
            // The cluster's rows a block at a time, so that its logits stay bounded
            // however many rows the call was given.
            let within: Vec<Tensor> = rows
                .split(block_rows(size), 0)
                .iter()
                .zip(local.split(block_rows(size), 0))
                .map(|(rows, local)| {
                    with_min_rows(&hidden.index_select(0, rows), |h| {
                        Self::cluster_log_probs(h, i, &weights, &biases)
                    })
                    .gather(1, &local.unsqueeze(1), false)
                    .squeeze_dim(1)
                })
                .collect();
            result = result.index_add(0, &rows, &Tensor::cat(&within, 0));
        }
        result
    }

    /// Draws a head entry (`<UNK>` excluded), then, for rows that drew a cluster, a word
    /// of that cluster. `<UNK>` is in the head, so zeroing it there renormalizes the
    /// whole distribution exactly as redrawing would.
    fn draw(&self, hidden: &Tensor, sampler: &mut Sampler) -> (Tensor, Tensor) {
        let k = self.head_size();
        let (weights, biases) = self.slices();
        let head = self.head_log_probs(hidden, &weights, &biases);
        let (head_drawn, mut log_prob) = draw_from(&head, sampler);
        let mut drawn = head_drawn.shallow_clone();
        for i in 0..self.clusters() {
            // Rows by the head draw: a word already drawn may equal a cluster's token index.
            let rows = head_drawn.eq(k + i as i64).nonzero().squeeze_dim(1);
            if rows.numel() == 0 {
                continue;
            }
            let within =
                Self::cluster_log_probs(&hidden.index_select(0, &rows), i, &weights, &biases);
            let local = sampler.draw(&within.exp());
            let within_log_prob = within.gather(1, &local.unsqueeze(1), false).squeeze_dim(1);
            drawn = drawn.index_copy(0, &rows, &(local + self.bounds[i]));
            log_prob = log_prob.index_add(0, &rows, &within_log_prob);
        }
        (drawn, log_prob)
    }
}
