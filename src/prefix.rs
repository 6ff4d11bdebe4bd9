//! Shared-prefix scoring: N-best candidates that begin alike run their common
//! beginning through the network once.
//!
//! The hidden state that predicts `y<t>` depends only on `y<1>…y<t-1>`, so two
//! sentences with the same first k tokens have the same first k + 1 hidden states and
//! the same first k token log-probabilities. The sentences of a window form a prefix
//! tree of their token ids (`<EOS>` included). Each tree node that has children is run
//! once through the recurrent layers, all nodes of one depth in one batch, from its
//! parent's state; each node below the root is scored once by the output layer,
//! log P(its token | its parent's hidden state), and a sentence's token log-probabilities
//! are those of the nodes on its path. A backward model's ids are reversed sentences,
//! so the same tree shares their ends. Nothing is approximated: the output layer is
//! exactly normalized, and every number is the one the per-sentence pass computes, up
//! to float rounding.

use crate::data::ZERO_INPUT;
use crate::model::RnnLm;
use crate::rows::{padded, MIN_ROWS};
use anyhow::Result;
use std::collections::HashMap;
use tch::{Device, Tensor};

/// Sentences per prefix tree: consecutive sentences, as an N-best list's groups are.
/// Memory is one hidden vector per tree node (at most the window's tokens), and a
/// depth's batch is at most this many rows.
pub const WINDOW: usize = 1024;

/// What a shared-prefix pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Tokens scored, `<EOS>` included: the steps a per-sentence pass runs.
    pub tokens: u64,
    /// Steps of the recurrent layers run (tree nodes with children).
    pub recurrent_steps: u64,
    /// Rows scored by the output layer (tree nodes below the root).
    pub output_rows: u64,
}

impl Work {
    /// Adds another pass's counts.
    pub fn add(&mut self, other: Work) {
        self.tokens += other.tokens;
        self.recurrent_steps += other.recurrent_steps;
        self.output_rows += other.output_rows;
    }
}

/// The prefix tree of a window's sentences.
struct Tree {
    /// Per node: its parent (the root's is itself), its token, its depth.
    parent: Vec<usize>,
    token: Vec<i64>,
    depth: Vec<usize>,
    has_children: Vec<bool>,
    /// Per sentence: the node of each of its tokens.
    paths: Vec<Vec<usize>>,
}

impl Tree {
    fn new(sentences: &[Vec<i64>]) -> Self {
        let mut tree = Tree {
            parent: vec![0],
            token: vec![ZERO_INPUT],
            depth: vec![0],
            has_children: vec![false],
            paths: Vec::with_capacity(sentences.len()),
        };
        let mut children: HashMap<(usize, i64), usize> = HashMap::new();
        for sentence in sentences {
            let mut node = 0;
            let mut path = Vec::with_capacity(sentence.len());
            for &id in sentence {
                tree.has_children[node] = true;
                node = *children.entry((node, id)).or_insert_with(|| {
                    tree.parent.push(node);
                    tree.token.push(id);
                    tree.depth.push(tree.depth[node] + 1);
                    tree.has_children.push(false);
                    tree.parent.len() - 1
                });
                path.push(node);
            }
            tree.paths.push(path);
        }
        tree
    }
}

/// log P(`y<t>` | `y<1>…y<t-1>`) for every token of every sentence, in input order, with
/// shared prefixes run once; and the work done.
pub fn shared_token_log_probs(
    model: &RnnLm,
    sentences: &[Vec<i64>],
) -> Result<(Vec<Vec<f32>>, Work)> {
    let _guard = tch::no_grad_guard();
    let mut result = Vec::with_capacity(sentences.len());
    let mut work = Work::default();
    for window in sentences.chunks(WINDOW) {
        let (log_probs, window_work) = score_window(model, window)?;
        result.extend(log_probs);
        work.add(window_work);
    }
    Ok((result, work))
}

fn score_window(model: &RnnLm, sentences: &[Vec<i64>]) -> Result<(Vec<Vec<f32>>, Work)> {
    let tree = Tree::new(sentences);
    let (hidden, row, steps) = run_levels(model, &tree);
    let node_log_probs = score_nodes(model, &tree, &hidden, &row)?;
    let log_probs = tree
        .paths
        .iter()
        .map(|path| path.iter().map(|&n| node_log_probs[n]).collect())
        .collect();
    let work = Work {
        tokens: sentences.iter().map(|s| s.len() as u64).sum(),
        recurrent_steps: steps as u64,
        output_rows: (tree.parent.len() - 1) as u64,
    };
    Ok((log_probs, work))
}

/// Runs every node with children through the recurrent layers, a depth at a time from
/// its parent's state: their hidden states `[steps, hidden]`, each node's row among
/// them (`usize::MAX` for a leaf), and the steps run.
fn run_levels(model: &RnnLm, tree: &Tree) -> (Tensor, Vec<usize>, usize) {
    let nodes = tree.parent.len();
    let device = model.device();
    // The nodes that need a hidden state, by depth; each one's row among them.
    let mut levels: Vec<Vec<usize>> = Vec::new();
    let mut row = vec![usize::MAX; nodes];
    let mut rows = 0;
    for node in (0..nodes).filter(|&n| tree.has_children[n]) {
        let depth = tree.depth[node];
        if levels.len() <= depth {
            levels.resize_with(depth + 1, Vec::new);
        }
        levels[depth].push(node);
    }
    let mut hidden_blocks = Vec::with_capacity(levels.len());
    // Each node's position within its level, to pick its children's parent states.
    let mut position = vec![0usize; nodes];
    // Each level runs with at least MIN_ROWS rows (the first node repeated), so a node's
    // state does not depend on how many others share its depth in this window; the
    // padding rows are never selected as parents.
    let mut state = model.zero_state(MIN_ROWS as i64);
    for (depth, level) in levels.iter().enumerate() {
        for (i, &node) in level.iter().enumerate() {
            position[node] = i;
            row[node] = rows + i;
        }
        rows += level.len();
        let parents = if depth == 0 {
            state
        } else {
            let index: Vec<i64> = level
                .iter()
                .map(|&n| position[tree.parent[n]] as i64)
                .collect();
            state.select(&Tensor::from_slice(&padded(&index)).to_device(device))
        };
        let inputs: Vec<i64> = level.iter().map(|&n| tree.token[n]).collect();
        let inputs = Tensor::from_slice(&padded(&inputs)).to_device(device);
        // The fused one-step call rather than `RnnLm::step`'s cell ops: it runs the
        // per-sentence pass's kernel, about 1.16x faster here than the cell ops, and
        // gives the plain pass's numbers to the printed digit.
        let (hidden, next) = model.forward_step(&inputs, &parents);
        hidden_blocks.push(hidden.narrow(0, 0, level.len() as i64));
        state = next;
    }
    (Tensor::cat(&hidden_blocks, 0), row, rows)
}

/// log P(each node's token | its parent's hidden state) for every node below the root
/// (the root's entry stays 0), the output layer given rows a block at a time.
fn score_nodes(model: &RnnLm, tree: &Tree, hidden: &Tensor, row: &[usize]) -> Result<Vec<f32>> {
    let nodes = tree.parent.len();
    let device = model.device();
    let parent_rows: Vec<i64> = (1..nodes).map(|n| row[tree.parent[n]] as i64).collect();
    let targets: Vec<i64> = tree.token[1..].to_vec();
    let block = model.output_rows_per_call() as usize;
    let mut node_log_probs = vec![0f32; nodes];
    for (start, (rows_block, targets_block)) in parent_rows
        .chunks(block)
        .zip(targets.chunks(block))
        .enumerate()
    {
        let h = hidden.index_select(0, &Tensor::from_slice(rows_block).to_device(device));
        let lp = model.target_log_probs(&h, &Tensor::from_slice(targets_block).to_device(device));
        let lp = Vec::<f32>::try_from(lp.to_device(Device::Cpu))?;
        let first = 1 + start * block;
        node_log_probs[first..first + lp.len()].copy_from_slice(&lp);
    }
    Ok(node_log_probs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_shares_exactly_the_common_prefixes() {
        let sentences = vec![vec![5, 6, 0], vec![5, 6, 7, 0], vec![5, 8, 0], vec![0]];
        let tree = Tree::new(&sentences);
        // root, 5, 6, 0(after 5 6), 7, 0(after 7), 8, 0(after 8), 0(after root)
        assert_eq!(tree.parent.len(), 9);
        assert_eq!(tree.paths[0][..2], tree.paths[1][..2]);
        assert_ne!(tree.paths[0][2], tree.paths[1][2]);
        assert_eq!(tree.paths[2][0], tree.paths[0][0]);
        let internal = tree.has_children.iter().filter(|&&c| c).count();
        // root, 5, 6, 7, 8 run through the recurrent layers; leaves (<EOS>) do not.
        assert_eq!(internal, 5);
    }
}
