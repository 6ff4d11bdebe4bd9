//! The batches of an epoch, whichever layout training reads: sentence batches of
//! similar length, each from the zero state, or the chunks of one token stream, each
//! from the state the chunk before it left. Either gives a batch's summed loss, its
//! activation penalty and its token count, so an epoch is one loop over [`Batches`].

use super::TrainConfig;
use crate::data::{length_batches_in_steps, Corpus, SentenceBatch, TokenStream};
use crate::model::{RnnLm, State};
use crate::regularize::{activation_penalty, consecutive_positions, Regularization};
use anyhow::{Context, Result};
use rand_chacha::ChaCha12Rng;
use tch::Tensor;

/// What a batch's forward pass gives the step.
pub(super) struct BatchLoss {
    /// Σ −log ŷ<t>[y<t>] over the batch's tokens, in the graph.
    pub(super) sum: Tensor,
    /// The activation penalties (AR, TAR), added to the mean loss that is minimized
    /// but not to the loss that is reported.
    pub(super) penalty: Option<Tensor>,
    /// Target tokens in the batch.
    pub(super) tokens: usize,
    /// What the output layer read: the recurrent layers' output at every target, in
    /// the graph (a data-parallel step's backward pass splits there).
    pub(super) hidden: Tensor,
}

/// An epoch's batches, in the order they are trained.
pub(super) trait Batches {
    /// How many the epoch has.
    fn len(&self) -> usize;
    /// Target tokens of batch `index`, known without running it.
    fn tokens(&self, index: usize) -> usize;
    /// The forward pass of batch `index` in training mode.
    fn forward(
        &mut self,
        index: usize,
        model: &RnnLm,
        regularization: &Regularization,
    ) -> BatchLoss;
    /// The recurrent state the next batch would read, where batches carry one (stream
    /// mode): what a checkpoint cut inside the epoch saves.
    fn carried(&self) -> Option<State>;
}

/// The epoch's batches of `corpus` as `config` lays them out, for steps of
/// `per_step` batches; `rng` shuffles sentence batches, and `carried` is where a
/// stream cut inside the epoch left its state.
pub(super) fn epoch_batches<'a>(
    config: &TrainConfig,
    corpus: &'a Corpus,
    model: &RnnLm,
    rng: &mut ChaCha12Rng,
    per_step: usize,
    carried: Option<State>,
) -> Result<Box<dyn Batches + 'a>> {
    if config.stream {
        let stream = TokenStream::new(corpus, config.batch_size, model.device())
            .with_context(|| config.data.join("train.txt").display().to_string())?;
        Ok(Box::new(StreamChunks {
            chunks: stream.chunks(config.bptt).collect(),
            state: carried.unwrap_or_else(|| model.zero_state(config.batch_size as i64)),
        }))
    } else {
        let lengths: Vec<usize> = corpus.sentences.iter().map(Vec::len).collect();
        Ok(Box::new(SentenceBatches {
            corpus,
            rows: length_batches_in_steps(&lengths, config.batch_size, Some(rng), per_step),
        }))
    }
}

/// Sentences grouped by length, each sentence from `a<0>` = 0.
struct SentenceBatches<'a> {
    corpus: &'a Corpus,
    rows: Vec<Vec<usize>>,
}

impl Batches for SentenceBatches<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn tokens(&self, index: usize) -> usize {
        self.rows[index]
            .iter()
            .map(|&r| self.corpus.sentences[r].len())
            .sum()
    }

    fn forward(
        &mut self,
        index: usize,
        model: &RnnLm,
        regularization: &Regularization,
    ) -> BatchLoss {
        let sentences: Vec<&[i64]> = self.rows[index]
            .iter()
            .map(|&r| self.corpus.sentences[r].as_slice())
            .collect();
        let batch = SentenceBatch::new(&sentences, model.device());
        let pass = model.forward_train(
            &batch.inputs,
            &model.zero_state(batch.size()),
            regularization,
        );
        let hidden = batch.gather(&pass.output);
        let log_probs = model.target_log_probs(&hidden, &batch.targets);
        // The temporal penalty compares consecutive real positions, never padding.
        let steps = pass.raw.as_ref().map(|raw| {
            let size = raw.size();
            let (next, previous) = consecutive_positions(&batch.lengths, size[1] as usize);
            let flat = raw.reshape([-1, size[2]]);
            let rows = |index: Vec<i64>| {
                flat.index_select(0, &Tensor::from_slice(&index).to(flat.device()))
            };
            (rows(next), rows(previous))
        });
        BatchLoss {
            sum: -log_probs.sum(None),
            penalty: activation_penalty(
                regularization,
                &hidden,
                steps.as_ref().map(|(n, p)| (n, p)),
            ),
            tokens: batch.lengths.iter().sum(),
            hidden,
        }
    }

    fn carried(&self) -> Option<State> {
        None
    }
}

/// The token stream in `bptt`-step chunks, the state carried forward detached.
struct StreamChunks {
    chunks: Vec<(Tensor, Tensor)>,
    state: State,
}

impl Batches for StreamChunks {
    fn len(&self) -> usize {
        self.chunks.len()
    }

    fn tokens(&self, index: usize) -> usize {
        self.chunks[index].1.numel()
    }

    fn forward(
        &mut self,
        index: usize,
        model: &RnnLm,
        regularization: &Regularization,
    ) -> BatchLoss {
        let (inputs, targets) = &self.chunks[index];
        let pass = model.forward_train(inputs, &self.state.detach(), regularization);
        self.state = pass.state;
        let width = pass.output.size()[2];
        let hidden = pass.output.reshape([-1, width]);
        let log_probs = model.target_log_probs(&hidden, &targets.reshape([-1]));
        let steps = pass.raw.as_ref().map(|raw| {
            let time = raw.size()[1];
            (raw.narrow(1, 1, time - 1), raw.narrow(1, 0, time - 1))
        });
        BatchLoss {
            sum: -log_probs.sum(None),
            penalty: activation_penalty(
                regularization,
                &hidden,
                steps.as_ref().map(|(n, p)| (n, p)),
            ),
            tokens: targets.numel(),
            hidden,
        }
    }

    fn carried(&self) -> Option<State> {
        Some(self.state.detach())
    }
}
