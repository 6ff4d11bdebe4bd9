//! Word- and character-level recurrent language models on libtorch.
//!
//! - [`vocab`]: tokenization and the vocabulary;
//! - [`data`]: corpora as batches of sentences or as a token stream;
//! - [`model`]: the RNN language model (tanh RNN, GRU, LSTM) and its output layer ([`output`]);
//! - [`train`]: training by backpropagation through time, with [`optim`]'s optimizers
//!   (which take the gradients of [`shared`] parameters in parts), [`regularize`]'s
//!   training-time regularizers and [`average`]'s weight averaging;
//! - [`score`]: sentence log-probabilities by the chain rule, and [`rescore`] for CSV files
//!   ([`prefix`]: N-best candidates' shared prefixes run once; [`rows`]: batches padded so a
//!   sentence's score does not depend on its neighbours);
//! - [`oov`]: open-vocabulary scoring of out-of-vocabulary tokens;
//! - [`sample`]: drawing new sequences, with [`categorical`]'s seeded draws;
//! - [`tune`]: combination weights chosen on a dev set by word error rate ([`wer`]);
//! - [`report`]: HTML pages of scored N-best lists and of sampling, step by step;
//! - [`checkpoint`]: the model directory, saved whole by [`swap`] and [`files`], with [`metrics`]
//!   (`metrics.csv`) and [`plot`] (`loss.png`); [`device`]: `--device`; [`torch_error`]:
//!   libtorch's errors as one line.

pub mod average;
pub mod categorical;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod distributed;
pub mod files;
pub mod memory;
pub mod metrics;
pub mod model;
mod names;
pub mod oov;
pub mod optim;
pub mod output;
pub mod plot;
pub mod prefix;
pub mod progress;
pub mod regularize;
pub mod report;
pub mod rescore;
pub mod rows;
pub mod sample;
pub mod score;
pub mod shared;
pub mod swap;
pub mod torch_error;
pub mod train;
pub mod tune;
pub mod vocab;
pub mod wer;
