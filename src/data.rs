//! Corpora as tensors: batches of whole sentences, or one token stream in columns.
//!
//! Sentence mode pads a batch of sentences to its longest one:
//!
//! ```text
//!  targets  y<1>  y<2>  y<3>  <EOS>          inputs   0    y<1>  y<2>  y<3>
//!           y<1>  <EOS> pad   pad                     0    y<1>  pad   pad
//! ```
//!
//! The inputs are the targets shifted right by one with the zero vector in front
//! (`x<1>` = 0, `x<t>` = `y<t-1>`). The RNN is causal, so padding after a sentence cannot
//! change its outputs; the loss is taken only at the real positions, listed in
//! `positions`, so it never sees the padding either.

use crate::vocab::{read_lines, Tokenizer, Vocab, EOS_ID, UNK_ID};
use anyhow::Result;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// An input index that stands for the zero vector: `x<1>`, before any token is seen.
pub const ZERO_INPUT: i64 = -1;

/// A text file as encoded sentences, each ending in `<EOS>`.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    /// Token indices per non-empty line, `<EOS>` appended.
    pub sentences: Vec<Vec<i64>>,
    /// Tokens mapped to `<UNK>`.
    pub oov_count: usize,
    /// How often each out-of-vocabulary token occurs.
    pub oov_tokens: HashMap<String, usize>,
    /// Empty lines skipped.
    pub empty_lines: usize,
}

impl Corpus {
    /// Reads, tokenizes and encodes a file.
    pub fn load(path: &Path, tokenizer: &Tokenizer, vocab: &Vocab) -> Result<Self> {
        let (lines, empty_lines) = read_lines(path)?;
        Ok(Self::encode(
            lines.iter().map(|l| tokenizer.tokenize(l)),
            vocab,
            empty_lines,
        ))
    }

    /// Tokenizes and encodes lines given in memory, skipping the empty ones as
    /// [`Corpus::load`] skips a file's.
    pub fn from_lines(lines: &[String], tokenizer: &Tokenizer, vocab: &Vocab) -> Self {
        let kept: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
        let empty_lines = lines.len() - kept.len();
        Self::encode(
            kept.iter().map(|l| tokenizer.tokenize(l)),
            vocab,
            empty_lines,
        )
    }

    /// Encodes tokenized sentences.
    pub fn encode(
        sentences: impl Iterator<Item = Vec<String>>,
        vocab: &Vocab,
        empty_lines: usize,
    ) -> Self {
        let mut corpus = Corpus {
            empty_lines,
            ..Default::default()
        };
        for tokens in sentences {
            let (ids, oov_count) = vocab.encode(&tokens);
            corpus.oov_count += oov_count;
            for (token, &id) in tokens.iter().zip(&ids) {
                if id == UNK_ID {
                    *corpus.oov_tokens.entry(token.clone()).or_default() += 1;
                }
            }
            corpus.sentences.push(ids);
        }
        corpus
    }

    /// Appends another corpus's sentences and counts, as if both were one file.
    pub fn extend(&mut self, other: Corpus) {
        self.sentences.extend(other.sentences);
        self.oov_count += other.oov_count;
        for (token, count) in other.oov_tokens {
            *self.oov_tokens.entry(token).or_default() += count;
        }
        self.empty_lines += other.empty_lines;
    }

    /// The corpus as trained on `weight` times per epoch: each sentence `⌊weight⌋`
    /// times, and a share `weight − ⌊weight⌋` of them once more, drawn with `seed`.
    /// The OOV counts stay those of the text.
    pub fn weighted(self, weight: f64, seed: u64) -> Corpus {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        if weight == 1.0 {
            return self;
        }
        let whole = weight.floor() as usize;
        let part = ((weight - weight.floor()) * self.sentences.len() as f64).round() as usize;
        let mut order: Vec<usize> = (0..self.sentences.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha12Rng::seed_from_u64(seed));
        let mut sentences = Vec::with_capacity(whole * self.sentences.len() + part);
        for _ in 0..whole {
            sentences.extend(self.sentences.iter().cloned());
        }
        sentences.extend(order[..part].iter().map(|&i| self.sentences[i].clone()));
        Corpus { sentences, ..self }
    }

    /// Tokens, `<EOS>` included.
    pub fn tokens(&self) -> usize {
        self.sentences.iter().map(Vec::len).sum()
    }
}

/// A padded batch of sentences on a device.
#[derive(Debug)]
pub struct SentenceBatch {
    /// `[batch, time]` previous-token indices, [`ZERO_INPUT`] first.
    pub inputs: Tensor,
    /// `[n]` the targets at the real positions, row by row.
    pub targets: Tensor,
    /// `[n]` flat indices (`row * time + t`) of the real positions.
    pub positions: Tensor,
    /// Length of each row, `<EOS>` included.
    pub lengths: Vec<usize>,
}

impl SentenceBatch {
    /// Pads `sentences` into one batch on `device`.
    pub fn new(sentences: &[&[i64]], device: Device) -> Self {
        let time = sentences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut inputs = vec![EOS_ID; sentences.len() * time];
        let mut targets = Vec::new();
        let mut positions = Vec::new();
        for (row, sentence) in sentences.iter().enumerate() {
            let base = row * time;
            inputs[base] = ZERO_INPUT;
            inputs[base + 1..base + sentence.len()]
                .copy_from_slice(&sentence[..sentence.len() - 1]);
            targets.extend_from_slice(sentence);
            positions.extend((base..base + sentence.len()).map(|p| p as i64));
        }
        SentenceBatch {
            inputs: Tensor::from_slice(&inputs)
                .view([sentences.len() as i64, time as i64])
                .to(device),
            targets: Tensor::from_slice(&targets).to(device),
            positions: Tensor::from_slice(&positions).to(device),
            lengths: sentences.iter().map(|s| s.len()).collect(),
        }
    }

    /// Rows in the batch.
    pub fn size(&self) -> i64 {
        self.lengths.len() as i64
    }

    /// The hidden states `[batch, time, hidden]` at the real positions, `[n, hidden]`.
    pub fn gather(&self, hidden: &Tensor) -> Tensor {
        let width = hidden.size()[2];
        hidden.reshape([-1, width]).index_select(0, &self.positions)
    }
}

/// Groups sentence indices into batches of similar length, so little is padded.
///
/// With `rng`, ties in length are broken at random and the batches are shuffled; without,
/// the order is deterministic (sorted by length).
pub fn length_batches(
    lengths: &[usize],
    batch_size: usize,
    rng: Option<&mut impl Rng>,
) -> Vec<Vec<usize>> {
    length_batches_in_steps(lengths, batch_size, rng, 1)
}

/// [`length_batches`] for steps of `per_step` batches: the batches are shuffled in
/// runs of `per_step` neighbours in length, so that the batches of one step are alike
/// (a step's ranks finish together) and the steps come in random order. A run short
/// of `per_step` (the longest sentences') stays last, where the epoch's short step is.
/// With `per_step` 1 this is [`length_batches`].
pub fn length_batches_in_steps(
    lengths: &[usize],
    batch_size: usize,
    rng: Option<&mut impl Rng>,
    per_step: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    let mut batches: Vec<Vec<usize>>;
    match rng {
        Some(rng) => {
            order.shuffle(rng);
            order.sort_by_key(|&i| lengths[i]);
            batches = order
                .chunks(batch_size.max(1))
                .map(<[usize]>::to_vec)
                .collect();
            if per_step <= 1 {
                batches.shuffle(rng);
            } else {
                let whole = batches.len() / per_step * per_step;
                let short = batches.split_off(whole);
                let mut runs: Vec<Vec<Vec<usize>>> =
                    batches.chunks(per_step).map(<[_]>::to_vec).collect();
                runs.shuffle(rng);
                batches = runs.into_iter().flatten().chain(short).collect();
            }
        }
        None => {
            order.sort_by_key(|&i| lengths[i]);
            batches = order
                .chunks(batch_size.max(1))
                .map(<[usize]>::to_vec)
                .collect();
        }
    }
    batches
}

/// A corpus laid out as one token stream in `batch` rows, for truncated BPTT:
///
/// ```text
///  stream  a b c d e f g h i j k l     batch = 3, bptt = 2
///  rows    a b c d | chunk 0 = [a b]  chunk 1 = [c d]
///          e f g h |           [e f]            [g h]
///          i j k l |           [i j]            [k l]
/// ```
///
/// Each row is read left to right and the recurrent state is carried from one chunk
/// to the next, so the model sees each row as one long sequence.
#[derive(Debug)]
pub struct TokenStream {
    /// `[batch, length]` targets.
    targets: Tensor,
    /// `[batch, length]` inputs: the targets shifted right, [`ZERO_INPUT`] first.
    inputs: Tensor,
}

impl TokenStream {
    /// Lays the corpus out in `batch` rows; the tail that does not fill a row is dropped.
    /// Fails when the corpus has fewer than two tokens per row.
    pub fn new(corpus: &Corpus, batch: usize, device: Device) -> Result<Self> {
        let flat: Vec<i64> = corpus.sentences.iter().flatten().copied().collect();
        let batch = batch.max(1);
        let length = (flat.len() / batch) as i64;
        if length < 2 {
            anyhow::bail!(
                "{} tokens are too few for a stream of {batch} rows: lower --batch-size",
                flat.len()
            );
        }
        let targets =
            Tensor::from_slice(&flat[..(length as usize) * batch]).view([batch as i64, length]);
        let zero = Tensor::full([batch as i64, 1], ZERO_INPUT, (Kind::Int64, Device::Cpu));
        let inputs = Tensor::cat(&[zero, targets.narrow(1, 0, length - 1)], 1);
        Ok(TokenStream {
            targets: targets.to(device),
            inputs: inputs.to(device),
        })
    }

    /// `(inputs, targets)` of each chunk of at most `bptt` steps, in order.
    pub fn chunks(&self, bptt: usize) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let length = self.targets.size()[1];
        (0..length).step_by(bptt.max(1)).map(move |start| {
            let width = (bptt as i64).min(length - start);
            (
                self.inputs.narrow(1, start, width),
                self.targets.narrow(1, start, width),
            )
        })
    }

    /// Tokens laid out.
    pub fn tokens(&self) -> i64 {
        self.targets.numel() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    /// A step's batches are neighbours in length, the steps are shuffled, and a short
    /// run of batches comes last; with one batch a step nothing changes.
    #[test]
    fn batches_are_shuffled_in_whole_steps_of_neighbours() {
        let lengths: Vec<usize> = (0..230).map(|i| 1 + (i * 37) % 50).collect();
        let rng = || ChaCha12Rng::seed_from_u64(7);
        let plain = length_batches(&lengths, 10, Some(&mut rng()));
        assert_eq!(
            length_batches_in_steps(&lengths, 10, Some(&mut rng()), 1),
            plain
        );
        let stepped = length_batches_in_steps(&lengths, 10, Some(&mut rng()), 3);
        let mut sorted = lengths.clone();
        sorted.sort_unstable();
        let lengths_of = |batches: &[Vec<usize>]| {
            let mut l: Vec<usize> = batches.concat().iter().map(|&i| lengths[i]).collect();
            l.sort_unstable();
            l
        };
        // Each step of 3 batches holds the 30 sentences of one place in length order.
        let places: Vec<usize> = stepped[..21]
            .chunks(3)
            .map(|step| {
                let l = lengths_of(step);
                (0..7)
                    .find(|&m| sorted[30 * m..30 * m + 30] == l[..])
                    .expect("a step of neighbours")
            })
            .collect();
        let mut seen = places.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert_ne!(places, seen, "the steps are not shuffled");
        // The run short of 3 batches (the longest sentences) comes last.
        assert_eq!(lengths_of(&stepped[21..]), sorted[210..]);
        let mut all: Vec<usize> = stepped.concat();
        all.sort_unstable();
        assert_eq!(all, (0..230).collect::<Vec<_>>());
    }

    fn corpus(n: i64) -> Corpus {
        Corpus {
            sentences: (0..n).map(|i| vec![i + 10, 0]).collect(),
            oov_count: 3,
            ..Corpus::default()
        }
    }

    fn counts(c: &Corpus) -> HashMap<i64, usize> {
        let mut counts = HashMap::new();
        for s in &c.sentences {
            *counts.entry(s[0]).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn a_weight_repeats_whole_copies_and_draws_the_fraction() {
        let weighted = corpus(8).weighted(2.25, 5);
        assert_eq!(weighted.sentences.len(), 18);
        let repeats = counts(&weighted);
        assert_eq!(repeats.len(), 8);
        assert_eq!(repeats.values().filter(|&&c| c == 3).count(), 2);
        assert_eq!(repeats.values().filter(|&&c| c == 2).count(), 6);
        assert_eq!(weighted.oov_count, 3, "the text's own counts");
        // The draw is the seed's.
        assert_eq!(corpus(8).weighted(2.25, 5).sentences, weighted.sentences);
        assert_ne!(
            corpus(8).weighted(0.5, 5).sentences,
            corpus(8).weighted(0.5, 6).sentences
        );
        let half = corpus(8).weighted(0.5, 5);
        assert_eq!(counts(&half).len(), 4);
        assert_eq!(corpus(8).weighted(1.0, 5).sentences, corpus(8).sentences);
    }
}
