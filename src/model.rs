//! The recurrent language model.
//!
//! At step t the model reads `x<t>`, the embedding of the previous true token (`x<1>` is
//! the zero vector), updates `a<t>` from `a<t-1>` (`a<0>` = 0) with a tanh RNN, GRU or LSTM
//! cell, and the output layer turns `a<t>` into log `ŷ<t>`, a distribution over the
//! vocabulary. The same parameters serve every step.
//!
//! Layout: batch first. Token tensors are `[batch, time]` of i64, hidden states are
//! `[batch, time, hidden]`, a recurrent state is `[layers, batch, hidden]`. Parameter
//! names are PyTorch's (`encoder.weight`, `rnn.weight_ih_l0`, `decoder.bias`), so the
//! saved weights load into a PyTorch `nn.Embedding` + `nn.LSTM`/`nn.GRU`/`nn.RNN` +
//! `nn.Linear` by name.

use crate::categorical::Sampler;
use crate::output::{OutputConfig, OutputLayer};
use crate::regularize::{
    drop_connect, dropout, embedding_type_scale, locked_dropout, Regularization,
};
use crate::shared::{alias, SharedParameter};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

pub use crate::data::ZERO_INPUT;

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Cell {
    /// `a<t>` = tanh(W_aa `a<t-1>` + W_ax `x<t>` + b_a), the textbook RNN.
    Rnn,
    /// Gated recurrent unit.
    Gru,
    /// Long short-term memory.
    Lstm,
}

crate::names::named_enum!(Cell {
    Rnn => "rnn",
    Gru => "gru",
    Lstm => "lstm",
});

impl Cell {
    /// Rows of `weight_ih` per hidden unit: one per gate.
    fn gates(self) -> i64 {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
}

/// The shape of the network; saved in `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Recurrent cell.
    pub cell: Cell,
    /// Vocabulary size, `<EOS>` and `<UNK>` included.
    pub vocab_size: i64,
    /// Embedding size (the width of `x<t>`).
    pub embed: i64,
    /// Hidden units per layer (the width of `a<t>`).
    pub hidden: i64,
    /// Stacked recurrent layers.
    pub layers: i64,
    /// Dropout on the embeddings, between layers and before the output layer.
    pub dropout: f64,
    /// Output matrix = embedding matrix (needs `embed == hidden`).
    pub tie: bool,
    /// Full softmax or head and clusters; models saved without it have a full one.
    #[serde(default)]
    pub output: OutputConfig,
}

/// The largest embedding or hidden width a configuration may ask for: a wider one is a
/// corrupted file, not a model, and would only fail inside libtorch's allocator.
pub const MAX_WIDTH: i64 = 1 << 16;
/// The most recurrent layers a configuration may ask for.
pub const MAX_LAYERS: i64 = 64;

impl ModelConfig {
    /// Checks every field: positive sizes, dropout in [0, 1), `tie` only with
    /// `embed == hidden`, and an output layer that fits the vocabulary.
    pub fn check(&self) -> Result<()> {
        if self.vocab_size < 3 {
            bail!(
                "vocab_size {} is below 3 (<EOS>, <UNK> and one token)",
                self.vocab_size
            );
        }
        for (name, value) in [("embed", self.embed), ("hidden", self.hidden)] {
            if !(1..=MAX_WIDTH).contains(&value) {
                bail!("{name} {value} is outside 1..={MAX_WIDTH}");
            }
        }
        if !(1..=MAX_LAYERS).contains(&self.layers) {
            bail!("layers {} is outside 1..={MAX_LAYERS}", self.layers);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("dropout {} is outside [0, 1)", self.dropout);
        }
        if self.tie && self.embed != self.hidden {
            bail!(
                "tie needs embed equal to hidden (got {} and {})",
                self.embed,
                self.hidden
            );
        }
        self.output.check(self.vocab_size)
    }

    /// How many parameters (f32 values) a model of this shape holds, counted without
    /// building it, so that a configuration too big to allocate is refused first.
    pub fn parameter_count(&self) -> u128 {
        let (vocab, embed, hidden) = (
            self.vocab_size.max(0) as u128,
            self.embed.max(0) as u128,
            self.hidden.max(0) as u128,
        );
        let gate_rows = self.cell.gates() as u128 * hidden;
        let recurrent: u128 = (0..self.layers.max(0))
            .map(|layer| {
                let input = if layer == 0 { embed } else { hidden };
                gate_rows * (input + hidden + 2)
            })
            .sum();
        let word_vectors = if self.tie { 0 } else { vocab * hidden };
        let clusters = match &self.output {
            OutputConfig::Full => 0,
            OutputConfig::Class { cutoffs } => cutoffs.len() as u128 * (hidden + 1),
        };
        vocab * embed + recurrent + word_vectors + vocab + clusters
    }
}

/// The recurrent state `a<t>` of every layer.
#[derive(Debug)]
pub enum State {
    /// Hidden state of a tanh RNN or GRU, `[layers, batch, hidden]`.
    Hidden(Tensor),
    /// LSTM hidden and cell state, each `[layers, batch, hidden]`.
    Lstm(Tensor, Tensor),
}

impl State {
    /// A copy cut off from the autograd graph (truncated backpropagation through time).
    pub fn detach(&self) -> State {
        match self {
            State::Hidden(h) => State::Hidden(h.detach()),
            State::Lstm(h, c) => State::Lstm(h.detach(), c.detach()),
        }
    }

    /// The rows of the batch selected by `index` (a 1-D i64 tensor).
    pub fn select(&self, index: &Tensor) -> State {
        match self {
            State::Hidden(h) => State::Hidden(h.index_select(1, index)),
            State::Lstm(h, c) => State::Lstm(h.index_select(1, index), c.index_select(1, index)),
        }
    }
}

/// What a forward pass in training mode returns.
#[derive(Debug)]
pub struct TrainForward {
    /// The top layer's `a<t>` after dropout, `[batch, time, hidden]`: the output
    /// layer's input.
    pub output: Tensor,
    /// The same before dropout, when a penalty on it asked for it.
    pub raw: Option<Tensor>,
    /// The final state.
    pub state: State,
}

/// The recurrent language model: embedding → recurrent layers → output layer.
#[derive(Debug)]
pub struct RnnLm {
    config: ModelConfig,
    encoder: Tensor,
    /// A leaf sharing `encoder`'s storage that the embedding lookup reads, so that its
    /// sparse gradient stays apart from the output layer's (see [`RnnLm::shared_parameters`]).
    lookup: Tensor,
    /// Per layer: weight_ih, weight_hh, bias_ih, bias_hh, in the order the fused ops take.
    rnn_weights: Vec<Tensor>,
    output: OutputLayer,
    device: Device,
}

impl RnnLm {
    /// Creates the model's parameters under `vs` (`encoder`, `rnn`, `decoder`),
    /// initialized as PyTorch's word_language_model does.
    ///
    /// # Panics
    /// If `config.tie` is set and `embed != hidden`; [`ModelConfig`]s made by the
    /// command line are checked before they get here.
    pub fn new(vs: &nn::Path, config: &ModelConfig) -> Self {
        assert!(
            !config.tie || config.embed == config.hidden,
            "--tie needs --embed equal to --hidden"
        );
        let encoder = vs.sub("encoder").var(
            "weight",
            &[config.vocab_size, config.embed],
            nn::Init::Uniform { lo: -0.1, up: 0.1 },
        );
        let rnn_weights = recurrent_weights(&(vs / "rnn"), config);
        let tied = config.tie.then(|| encoder.shallow_clone());
        let output = OutputLayer::new(
            &(vs / "decoder"),
            &config.output,
            config.hidden,
            config.vocab_size,
            tied,
        );
        let lookup = alias(&encoder);
        RnnLm {
            config: config.clone(),
            encoder,
            lookup,
            rnn_weights,
            output,
            device: vs.device(),
        }
    }

    /// The parameters that the model reads through aliasing leaves (the embedding, and
    /// the output layer's word vectors, one matrix when tied), for
    /// [`Optimizer::share`](crate::optim::Optimizer::share): an optimizer that is not
    /// told of them finds them without a gradient.
    ///
    /// The leaves are made when the model is built, so the variables' kind and device
    /// must be set before, not changed after.
    pub fn shared_parameters(&self) -> Vec<SharedParameter> {
        let blocks = self.output.word_vector_blocks();
        if self.config.tie {
            vec![SharedParameter {
                param: self.encoder.shallow_clone(),
                blocks,
                lookups: vec![self.lookup.shallow_clone()],
            }]
        } else {
            vec![
                SharedParameter {
                    param: self.encoder.shallow_clone(),
                    blocks: Vec::new(),
                    lookups: vec![self.lookup.shallow_clone()],
                },
                SharedParameter {
                    param: self.output.word_vectors(),
                    blocks,
                    lookups: Vec::new(),
                },
            ]
        }
    }

    /// The output layer's parameters that it reads directly (see
    /// [`OutputLayer::direct_parameters`]); its word vectors are read through the
    /// blocks of [`RnnLm::shared_parameters`].
    pub fn output_parameters(&self) -> Vec<Tensor> {
        self.output.direct_parameters()
    }

    /// Rows to give [`RnnLm::target_log_probs`] at a time (see
    /// [`OutputLayer::rows_per_call`]).
    pub fn output_rows_per_call(&self) -> i64 {
        self.output.rows_per_call()
    }

    /// The configuration this model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// `a<0>` = 0 for a batch.
    pub fn zero_state(&self, batch: i64) -> State {
        let zeros = || {
            Tensor::zeros(
                [self.config.layers, batch, self.config.hidden],
                (self.encoder.kind(), self.device),
            )
        };
        match self.config.cell {
            Cell::Lstm => State::Lstm(zeros(), zeros()),
            _ => State::Hidden(zeros()),
        }
    }

    /// `x<t>` for input indices `[batch, time]`: embedding rows, and the zero vector
    /// wherever the index is [`ZERO_INPUT`].
    ///
    /// The lookup's gradient is sparse, the batch's rows only: a dense one is a zeroed
    /// vocabulary-sized matrix per step.
    fn embed(&self, inputs: &Tensor) -> Tensor {
        let is_token = inputs.ge(0);
        let rows = Tensor::embedding(&self.lookup, &inputs.clamp_min(0), -1, false, true);
        let mask = is_token.unsqueeze(-1).to_kind(rows.kind());
        rows * mask
    }

    /// Runs the recurrent layers over whole sequences with libtorch's fused kernels.
    ///
    /// `inputs`: `[batch, time]` previous-token indices ([`ZERO_INPUT`] for the zero
    /// vector). Returns the top layer's `a<t>`, `[batch, time, hidden]`, and the final
    /// state. `train` turns dropout on.
    ///
    /// # Panics
    /// If `state` is not of this model's cell (an LSTM state for a GRU, say); states
    /// come from [`RnnLm::zero_state`] or an earlier call, so they always match.
    pub fn forward(&self, inputs: &Tensor, state: &State, train: bool) -> (Tensor, State) {
        let plain = Regularization::default();
        let pass = self.run(inputs, state, train.then_some(&plain));
        (pass.output, pass.state)
    }

    /// [`RnnLm::forward`] in training mode with `regularization`'s masks: locked or
    /// plain dropout, embedding dropout and DropConnect on W_hh. The raw top-layer
    /// outputs come back too when the penalties need them.
    pub fn forward_train(
        &self,
        inputs: &Tensor,
        state: &State,
        regularization: &Regularization,
    ) -> TrainForward {
        self.run(inputs, state, Some(regularization))
    }

    fn run(&self, inputs: &Tensor, state: &State, train: Option<&Regularization>) -> TrainForward {
        let c = &self.config;
        let training = train.is_some();
        let regularization = train.cloned().unwrap_or_default();
        let drop = |x: &Tensor| match (training, regularization.locked_dropout) {
            (false, _) => x.shallow_clone(),
            (true, true) => locked_dropout(x, c.dropout),
            (true, false) => dropout(x, c.dropout, true),
        };
        let mut x = self.embed(inputs);
        if training && regularization.embed_dropout > 0.0 {
            let scale = embedding_type_scale(
                c.vocab_size,
                regularization.embed_dropout,
                x.kind(),
                self.device,
            );
            x *= scale
                .index_select(0, &inputs.clamp_min(0).reshape([-1]))
                .view([inputs.size()[0], inputs.size()[1], 1]);
        }
        // One fused call per layer, so that the dropout between layers is ours too.
        let mut x = drop(&x);
        let mut hs = Vec::new();
        let mut cs = Vec::new();
        for layer in 0..c.layers {
            if layer > 0 {
                x = drop(&x);
            }
            let mut weights: Vec<Tensor> = self
                .layer_weights(layer)
                .iter()
                .map(Tensor::shallow_clone)
                .collect();
            if training && regularization.weight_drop > 0.0 {
                weights[1] = drop_connect(&weights[1], regularization.weight_drop);
            }
            let (out, h, cell) = self.layer_pass(layer, &x, &weights, state, training);
            hs.push(h);
            cs.extend(cell);
            x = out;
        }
        let state = match c.cell {
            Cell::Lstm => State::Lstm(Tensor::cat(&hs, 0), Tensor::cat(&cs, 0)),
            _ => State::Hidden(Tensor::cat(&hs, 0)),
        };
        TrainForward {
            output: drop(&x),
            raw: regularization.needs_raw_output().then_some(x),
            state,
        }
    }

    /// Layer `layer`'s fused pass over `x` from its slice of `state`, with `weights`:
    /// the layer's output, its last hidden state and (LSTM) its last cell state.
    fn layer_pass(
        &self,
        layer: i64,
        x: &Tensor,
        weights: &[Tensor],
        state: &State,
        training: bool,
    ) -> (Tensor, Tensor, Option<Tensor>) {
        let one = |t: &Tensor| t.narrow(0, layer, 1);
        match (self.config.cell, state) {
            (Cell::Lstm, State::Lstm(h, cell)) => {
                let (out, h, cell) = x.lstm(
                    &[one(h), one(cell)],
                    weights,
                    true,
                    1,
                    0.0,
                    training,
                    false,
                    true,
                );
                (out, h, Some(cell))
            }
            (Cell::Gru, State::Hidden(h)) => {
                let (out, h) = x.gru(&one(h), weights, true, 1, 0.0, training, false, true);
                (out, h, None)
            }
            (Cell::Rnn, State::Hidden(h)) => {
                let (out, h) = x.rnn_tanh(&one(h), weights, true, 1, 0.0, training, false, true);
                (out, h, None)
            }
            _ => panic!("state does not match the {:?} cell", self.config.cell),
        }
    }

    /// Layer `layer`'s weight_ih, weight_hh, bias_ih and bias_hh.
    fn layer_weights(&self, layer: i64) -> &[Tensor] {
        let first = 4 * layer as usize;
        &self.rnn_weights[first..first + 4]
    }

    /// One time step for a batch in eval mode, as a one-step sequence through the
    /// fused layer call of [`RnnLm::forward`].
    ///
    /// On the CPU the fused call runs a JIT-compiled RNN kernel, the one the
    /// per-sentence pass runs too, where [`RnnLm::step`]'s cell ops run separate
    /// matrix products: this is faster, and its numbers are the full pass's.
    /// `input`: `[batch]` previous-token indices; returns the top layer's `a<t>`,
    /// `[batch, hidden]`, and the state of every layer.
    pub fn forward_step(&self, input: &Tensor, state: &State) -> (Tensor, State) {
        let (hidden, state) = self.forward(&input.unsqueeze(1), state, false);
        (hidden.squeeze_dim(1), state)
    }

    /// One time step for a batch, with the single-step cell ops (no dropout): the
    /// textbook update written out, which the tests hold the fused calls against.
    ///
    /// `input`: `[batch]` previous-token indices ([`ZERO_INPUT`] for the zero vector).
    /// Returns the top layer's `a<t>`, `[batch, hidden]`, for the output layer, and
    /// the state of every layer.
    pub fn step(&self, input: &Tensor, state: &State) -> (Tensor, State) {
        let c = &self.config;
        let mut x = self.embed(&input.unsqueeze(1)).squeeze_dim(1);
        let mut hs = Vec::new();
        let mut cs = Vec::new();
        for layer in 0..c.layers {
            let w = self.layer_weights(layer);
            let (w_ih, w_hh, b_ih, b_hh) = (&w[0], &w[1], Some(&w[2]), Some(&w[3]));
            match state {
                State::Lstm(h, cell) => {
                    let (h_layer, c_layer) = (h.get(layer), cell.get(layer));
                    let (h, cell) = x.lstm_cell(&[&h_layer, &c_layer], w_ih, w_hh, b_ih, b_hh);
                    x = h.shallow_clone();
                    hs.push(h);
                    cs.push(cell);
                }
                State::Hidden(h) => {
                    let h = match c.cell {
                        Cell::Gru => x.gru_cell(&h.get(layer), w_ih, w_hh, b_ih, b_hh),
                        _ => x.rnn_tanh_cell(&h.get(layer), w_ih, w_hh, b_ih, b_hh),
                    };
                    x = h.shallow_clone();
                    hs.push(h);
                }
            }
        }
        let state = match state {
            State::Lstm(..) => State::Lstm(Tensor::stack(&hs, 0), Tensor::stack(&cs, 0)),
            State::Hidden(_) => State::Hidden(Tensor::stack(&hs, 0)),
        };
        (x, state)
    }

    /// Draws the next token for each row of hidden states `[n, hidden]`, never `<UNK>`;
    /// returns the tokens `[n]` and their log-probabilities `[n]`.
    pub fn draw(&self, hidden: &Tensor, sampler: &mut Sampler) -> (Tensor, Tensor) {
        self.output.draw(hidden, sampler)
    }

    /// log ŷ over the whole vocabulary for hidden states `[..., hidden]` → `[..., vocab]`.
    pub fn log_probs(&self, hidden: &Tensor) -> Tensor {
        self.output.log_probs(hidden)
    }

    /// log `ŷ<t>[y<t>]`: the log-probability of each target, for hidden states
    /// `[n, hidden]` and targets `[n]` → `[n]`.
    pub fn target_log_probs(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        self.output.target_log_probs(hidden, targets)
    }
}

/// The recurrent parameters with PyTorch's names and initialization, U(-1/√H, 1/√H).
fn recurrent_weights(vs: &nn::Path, c: &ModelConfig) -> Vec<Tensor> {
    let bound = 1.0 / (c.hidden as f64).sqrt();
    let init = nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let gate_rows = c.cell.gates() * c.hidden;
    let mut weights = Vec::new();
    for layer in 0..c.layers {
        let in_dim = if layer == 0 { c.embed } else { c.hidden };
        weights.push(vs.var(&format!("weight_ih_l{layer}"), &[gate_rows, in_dim], init));
        weights.push(vs.var(&format!("weight_hh_l{layer}"), &[gate_rows, c.hidden], init));
        weights.push(vs.var(&format!("bias_ih_l{layer}"), &[gate_rows], init));
        weights.push(vs.var(&format!("bias_hh_l{layer}"), &[gate_rows], init));
    }
    if vs.device().is_cuda() && tch::Cuda::cudnn_is_available() {
        // cuDNN wants the weights in one contiguous buffer; this makes the parameters
        // views into it, as PyTorch's flatten_parameters does.
        let mode = match c.cell {
            Cell::Rnn => 1,
            Cell::Lstm => 2,
            Cell::Gru => 3,
        };
        // Per layer, as `forward` calls the layers one at a time.
        for layer in 0..c.layers as usize {
            let in_dim = if layer == 0 { c.embed } else { c.hidden };
            let _ = Tensor::internal_cudnn_rnn_flatten_weight(
                &weights[4 * layer..4 * layer + 4],
                4,
                in_dim,
                mode,
                c.hidden,
                0,
                1,
                true,
                false,
            );
        }
    }
    weights
}
