//! `rnnlm._rnnlm`: the Python extension under the `rnnlm` package.
//!
//! The package's `__init__.py` gives the kenlm-like API (bases, pickling, torch
//! tensors); this module is what it calls. Scores cross as Python floats in natural
//! log, a step's `[B, V]` log-probabilities as the bytes of a `bytearray` that the
//! package wraps with `torch.frombuffer`, so no tensor crosses as a torch object.
//!
//! Every call that runs the network releases the GIL and takes the model's lock
//! inside: `tch::Tensor` is `Send` but not `Sync`, so one model runs one call at a
//! time, while other Python threads go on. Long calls work in chunks and look for
//! Ctrl-C between them. A libtorch error (which tch raises as a panic) becomes a
//! `RuntimeError` (`MemoryError` when memory ran out) with libtorch's first line.

use anyhow::Context as _;
use pyo3::exceptions::{PyImportError, PyMemoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use rnnlm::checkpoint::{LoadedModel, ModelDir};
use rnnlm::data::{Corpus, ZERO_INPUT};
use rnnlm::device::{DeviceChoice, DeviceUnavailable};
use rnnlm::oov::{OovOptions, OovPolicy, OovScorer};
use rnnlm::rescore::combine::{best_index, ranks, LmScores, Weights};
use rnnlm::rescore::nbest::{word_count, ColumnNames, LogBase};
use rnnlm::rescore::{Format, ScoreOptions, Scored, Scorer, CHUNK_ROWS};
use rnnlm::score::{evaluate, SCORE_BATCH};
use rnnlm::torch_error::{is_out_of_memory, panic_text, torch_message};
use rnnlm::vocab::{Tokenizer, Vocab};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Tensor};

/// Sentences scored between two looks for Ctrl-C.
const SIGNAL_CHUNK: usize = 512;

/// A panic inside libtorch or the library, as one line.
#[derive(Debug)]
struct Panicked(String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Panicked {}

/// Runs `work` and turns a panic into an error.
fn caught<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let text = panic_text(payload.as_ref());
            let line = torch_message(&text)
                .map(|t| format!("libtorch: {t}"))
                .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_string());
            Err(Panicked(line).into())
        }
    }
}

/// Which exception a failed call raises where nothing more specific applies.
#[derive(Clone, Copy)]
enum Otherwise {
    Value,
    Os,
}

/// The Python exception for an error: the one it carries (Ctrl-C's
/// `KeyboardInterrupt`), `OSError` for files, `MemoryError` and `RuntimeError` for
/// libtorch, else `otherwise`; the message is the command line's one line.
fn to_python(e: anyhow::Error, otherwise: Otherwise) -> PyErr {
    let e = match e.downcast::<PyErr>() {
        Ok(python) => return python,
        Err(e) => e,
    };
    let message = format!("{e:#}");
    if let Some(panicked) = e.downcast_ref::<Panicked>() {
        return if is_out_of_memory(&panicked.0) {
            PyMemoryError::new_err(message)
        } else {
            PyRuntimeError::new_err(message)
        };
    }
    if e.downcast_ref::<DeviceUnavailable>().is_some() {
        return PyRuntimeError::new_err(message);
    }
    if e.chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some())
    {
        return PyOSError::new_err(message);
    }
    match otherwise {
        Otherwise::Value => PyValueError::new_err(message),
        Otherwise::Os => PyOSError::new_err(message),
    }
}

/// Runs `work` with the GIL released, panics caught.
fn detached<T: Send>(
    py: Python<'_>,
    otherwise: Otherwise,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| caught(work))
        .map_err(|e| to_python(e, otherwise))
}

/// Ctrl-C's `KeyboardInterrupt` (or another signal handler's exception), carried
/// through the library's errors to the call's boundary.
fn python_signals() -> anyhow::Result<()> {
    Python::attach(|py| py.check_signals()).map_err(anyhow::Error::from)
}

fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

fn parse_oov(policy: &str, penalty: f64) -> PyResult<OovOptions> {
    let policy: OovPolicy = policy
        .parse()
        .map_err(|e| value_error(format!("oov: {e}")))?;
    if !penalty.is_finite() {
        return Err(value_error(format!(
            "oov_penalty must be a finite number, not {penalty}"
        )));
    }
    Ok(OovOptions { policy, penalty })
}

fn parse_base(base: &str) -> PyResult<LogBase> {
    base.parse()
        .map_err(|e| value_error(format!("ngram_base: {e}")))
}

/// The combination's weights, checked as the command line checks its flags.
fn checked_weights(
    lm_weight: f64,
    length_penalty: f64,
    ngram_weight: f64,
    backward_weight: f64,
) -> PyResult<Weights> {
    let weights = Weights {
        lm_weight,
        length_penalty,
        ngram_weight,
        backward_weight,
    };
    for (name, value) in [
        ("lm_weight", weights.lm_weight),
        ("length_penalty", weights.length_penalty),
    ] {
        if !value.is_finite() {
            return Err(value_error(format!(
                "{name} must be a finite number, not {value}"
            )));
        }
    }
    for (name, value) in [
        ("ngram_weight", weights.ngram_weight),
        ("backward_weight", weights.backward_weight),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(value_error(format!(
                "{name} must be in [0, 1], not {value}"
            )));
        }
    }
    if weights.ngram_weight + weights.backward_weight > 1.0 + 1e-9 {
        return Err(value_error(format!(
            "backward_weight {} and ngram_weight {} sum to more than 1",
            weights.backward_weight, weights.ngram_weight
        )));
    }
    Ok(weights)
}

/// The networks, behind the model's lock.
struct Networks {
    forward: LoadedModel,
    backward: Option<LoadedModel>,
}

impl Networks {
    fn scorer(&self, which: Which, oov: OovOptions) -> anyhow::Result<Scorer<'_>> {
        match which {
            Which::Forward => Scorer::from_model(&self.forward, oov),
            Which::Backward => match &self.backward {
                Some(b) => Scorer::from_model(b, oov),
                None => anyhow::bail!("this model was loaded without a backward model"),
            },
        }
    }
}

/// The forward model or the backward one.
#[derive(Clone, Copy)]
enum Which {
    Forward,
    Backward,
}

fn parse_which(which: &str) -> PyResult<Which> {
    match which {
        "forward" => Ok(Which::Forward),
        "backward" => Ok(Which::Backward),
        other => Err(value_error(format!(
            "model must be 'forward' or 'backward', not '{other}'"
        ))),
    }
}

/// Empty sentences are refused as the CSV reader refuses them.
fn check_sentences(sentences: &[String], what: &str) -> PyResult<()> {
    match sentences.iter().position(|s| s.trim().is_empty()) {
        Some(i) => Err(value_error(format!(
            "{what} {} is empty: a sentence needs at least one token",
            i + 1
        ))),
        None => Ok(()),
    }
}

/// A trained model loaded from its directory (with, optionally, a backward model).
#[pyclass(frozen, module = "rnnlm._rnnlm")]
struct Model {
    networks: Mutex<Networks>,
    oov: OovOptions,
    vocab: Vocab,
    tokenizer: Tokenizer,
    backward_vocab: Option<Vocab>,
    batch_size: usize,
    device: Device,
}

impl Model {
    fn lock(&self) -> MutexGuard<'_, Networks> {
        // A panic inside a call is reported where it happened; the tensors are intact.
        self.networks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scores sentences in chunks, looking for Ctrl-C between chunks.
    fn score_chunks(
        &self,
        py: Python<'_>,
        which: Which,
        sentences: &[String],
    ) -> PyResult<Vec<Scored>> {
        let mut scored = Vec::with_capacity(sentences.len());
        for chunk in sentences.chunks(SIGNAL_CHUNK) {
            let part = detached(py, Otherwise::Value, || {
                let networks = self.lock();
                let scorer = networks.scorer(which, self.oov)?;
                let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
                scorer.score(&texts, self.batch_size)
            })?;
            scored.extend(part);
            py.check_signals()?;
        }
        Ok(scored)
    }
}

#[pymethods]
impl Model {
    /// Loads `path` (and `backward`, a model trained with `--reverse`) onto `device`.
    #[new]
    #[pyo3(signature = (path, device="cpu", oov="divide", oov_penalty=0.0, backward=None, batch_size=SCORE_BATCH))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        oov: &str,
        oov_penalty: f64,
        backward: Option<PathBuf>,
        batch_size: usize,
    ) -> PyResult<Self> {
        let oov = parse_oov(oov, oov_penalty)?;
        if batch_size == 0 {
            return Err(value_error("batch_size must be at least 1"));
        }
        let choice: DeviceChoice = device.parse().map_err(value_error)?;
        let device = choice
            .resolve()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        let networks = detached(py, Otherwise::Os, || {
            let forward = match backward {
                Some(_) => ModelDir::new(&path).load_forward(device)?,
                None => ModelDir::new(&path).load(device)?,
            };
            // The policy needs the model's OOV counts: refuse now, not on the first call.
            OovScorer::new(oov, forward.oov.as_ref(), &forward.dir)?;
            let backward = match &backward {
                Some(dir) => {
                    let b = ModelDir::new(dir).load_backward(device)?;
                    OovScorer::new(oov, b.oov.as_ref(), &b.dir)?;
                    Some(b)
                }
                None => None,
            };
            Ok(Networks { forward, backward })
        })?;
        Ok(Model {
            vocab: networks.forward.vocab.clone(),
            tokenizer: networks.forward.config.tokenizer.clone(),
            backward_vocab: networks.backward.as_ref().map(|b| b.vocab.clone()),
            networks: Mutex::new(networks),
            oov,
            batch_size,
            device,
        })
    }

    /// ln P(`token` | `<UNK>`) under the model's OOV policy (0 for `unk`).
    fn oov_log_share(&self, py: Python<'_>, token: &str) -> PyResult<f64> {
        detached(py, Otherwise::Value, || {
            let networks = self.lock();
            let forward = &networks.forward;
            Ok(OovScorer::new(self.oov, forward.oov.as_ref(), &forward.dir)?.log_share(token))
        })
    }

    /// `"word"` or `"char"`.
    #[getter]
    fn level(&self) -> &'static str {
        self.tokenizer.level.name()
    }

    /// Tokens in the vocabulary, `<EOS>` and `<UNK>` included.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Whether the model reads sentences right to left (trained with `--reverse`).
    #[getter]
    fn reverse(&self) -> bool {
        self.tokenizer.reverse
    }

    /// Whether a backward model was loaded beside this one.
    #[getter]
    fn has_backward(&self) -> bool {
        self.backward_vocab.is_some()
    }

    /// Whether `token` is in the vocabulary (not mapped to `<UNK>`).
    fn contains(&self, token: &str) -> bool {
        self.vocab.id(token) != rnnlm::vocab::UNK_ID || token == rnnlm::vocab::UNK
    }

    /// The index of `token`, or `None` outside the vocabulary.
    fn token_id(&self, token: &str) -> Option<i64> {
        self.contains(token).then(|| self.vocab.id(token))
    }

    /// The token of index `id`.
    fn token(&self, id: i64) -> PyResult<String> {
        if id < 0 || id as usize >= self.vocab.len() {
            return Err(value_error(format!(
                "token id {id} is outside the vocabulary (0..{})",
                self.vocab.len()
            )));
        }
        Ok(self.vocab.token(id).to_string())
    }

    /// The sentence as the model's tokenizer splits it (in reading order).
    fn tokenize(&self, sentence: &str) -> Vec<String> {
        let tokens = self.tokenizer.tokenize(sentence);
        self.tokenizer.reading_order(&tokens)
    }

    /// Each sentence's log-probability (nats), `<EOS>` included, by `model`
    /// ("forward" or "backward").
    #[pyo3(signature = (sentences, model="forward"))]
    fn log_probs(&self, py: Python<'_>, sentences: Vec<String>, model: &str) -> PyResult<Vec<f64>> {
        let which = parse_which(model)?;
        check_sentences(&sentences, "sentence")?;
        Ok(self
            .score_chunks(py, which, &sentences)?
            .iter()
            .map(Scored::log_prob)
            .collect())
    }

    /// The forward model's tokens with their log-probabilities (nats) and, for an
    /// out-of-vocabulary token, ln P(token | `<UNK>`), in the model's order.
    fn token_scores(
        &self,
        py: Python<'_>,
        sentence: String,
    ) -> PyResult<Vec<(String, f64, Option<f64>)>> {
        let sentences = [sentence];
        check_sentences(&sentences, "sentence")?;
        let scored = self.score_chunks(py, Which::Forward, &sentences)?;
        let s = scored.into_iter().next().expect("one sentence in, one out");
        Ok(s.tokens
            .into_iter()
            .zip(s.token_log_probs)
            .zip(s.oov_log_shares)
            .map(|((t, lp), share)| (t, lp, share))
            .collect())
    }

    /// `rnnlm eval --json` of a text file (a path) or of lines, as JSON text.
    #[pyo3(signature = (path=None, lines=None, oov="unk", oov_penalty=0.0))]
    fn evaluate(
        &self,
        py: Python<'_>,
        path: Option<PathBuf>,
        lines: Option<Vec<String>>,
        oov: &str,
        oov_penalty: f64,
    ) -> PyResult<String> {
        let options = parse_oov(oov, oov_penalty)?;
        let otherwise = if path.is_some() {
            Otherwise::Os
        } else {
            Otherwise::Value
        };
        detached(py, otherwise, || {
            let networks = self.lock();
            let loaded = &networks.forward;
            let corpus = match (&path, &lines) {
                (Some(p), None) => Corpus::load(p, &loaded.config.tokenizer, &loaded.vocab)?,
                (None, Some(lines)) => {
                    Corpus::from_lines(lines, &loaded.config.tokenizer, &loaded.vocab)
                }
                _ => anyhow::bail!("evaluate takes a path or lines"),
            };
            let scorer = OovScorer::new(options, loaded.oov.as_ref(), &loaded.dir)?;
            let result = evaluate(&loaded.model, &corpus, self.batch_size, &scorer);
            let result = match &path {
                Some(p) => result.with_context(|| p.display().to_string())?,
                None => result?,
            };
            Ok(serde_json::to_string(&result)?)
        })
    }

    /// N-best rescoring of one utterance's hypotheses, as `rnnlm score` combines
    /// and ranks them: (logprob, backward_logprob, lm_logprob, score, rank, best).
    #[pyo3(signature = (hypotheses, am=None, ngram=None, ngram_base="10", lm_weight=1.0, length_penalty=0.0, ngram_weight=0.0, backward_weight=0.0))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn rescore(
        &self,
        py: Python<'_>,
        hypotheses: Vec<String>,
        am: Option<Vec<f64>>,
        ngram: Option<Vec<f64>>,
        ngram_base: &str,
        lm_weight: f64,
        length_penalty: f64,
        ngram_weight: f64,
        backward_weight: f64,
    ) -> PyResult<(
        Vec<f64>,
        Option<Vec<f64>>,
        Vec<f64>,
        Vec<f64>,
        Vec<usize>,
        Option<usize>,
    )> {
        let weights = checked_weights(lm_weight, length_penalty, ngram_weight, backward_weight)?;
        check_sentences(&hypotheses, "hypothesis")?;
        let base = parse_base(ngram_base)?;
        for (name, column) in [("am", &am), ("ngram", &ngram)] {
            if let Some(values) = column {
                if values.len() != hypotheses.len() {
                    return Err(value_error(format!(
                        "{name} has {} scores for {} hypotheses",
                        values.len(),
                        hypotheses.len()
                    )));
                }
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(value_error(format!(
                        "hypothesis {}: {name} score {} is not a finite number",
                        i + 1,
                        values[i]
                    )));
                }
            }
        }
        let forward = self.score_chunks(py, Which::Forward, &hypotheses)?;
        let forward: Vec<f64> = forward.iter().map(Scored::log_prob).collect();
        let backward = if self.backward_vocab.is_some() {
            let b = self.score_chunks(py, Which::Backward, &hypotheses)?;
            Some(b.iter().map(Scored::log_prob).collect::<Vec<f64>>())
        } else {
            None
        };
        let mut lm = Vec::with_capacity(hypotheses.len());
        let mut scores = Vec::with_capacity(hypotheses.len());
        for (i, hypothesis) in hypotheses.iter().enumerate() {
            let parts = LmScores {
                forward: forward[i],
                backward: backward.as_ref().map(|b| b[i]),
                ngram: ngram.as_ref().map(|n| base.to_nats(n[i])),
            };
            lm.push(weights.lm(&parts));
            scores.push(weights.score(am.as_ref().map(|a| a[i]), &parts, word_count(hypothesis)));
        }
        let rank = ranks(&scores);
        let best = best_index(scores.iter().copied());
        Ok((forward, backward, lm, scores, rank, best))
    }

    /// `rnnlm score` on a file, in process: the same columns, combination, ranks and
    /// output; returns (rows, bad_rows, tokens, oov_count, log_prob).
    #[pyo3(signature = (input, output, format="csv", text_column="sentence", group_column=None, am_column=None, ngram_column=None, ngram_base="10", columns=None, lm_weight=1.0, length_penalty=0.0, ngram_weight=0.0, backward_weight=0.0, per_token=None, skip_bad=false, digits=4, prefix_sharing=true))]
    #[allow(clippy::too_many_arguments)]
    fn rescore_file(
        &self,
        py: Python<'_>,
        input: PathBuf,
        output: PathBuf,
        format: &str,
        text_column: &str,
        group_column: Option<String>,
        am_column: Option<String>,
        ngram_column: Option<String>,
        ngram_base: &str,
        columns: Option<Vec<String>>,
        lm_weight: f64,
        length_penalty: f64,
        ngram_weight: f64,
        backward_weight: f64,
        per_token: Option<PathBuf>,
        skip_bad: bool,
        digits: usize,
        prefix_sharing: bool,
    ) -> PyResult<(usize, usize, usize, usize, f64)> {
        let format: Format = format
            .parse()
            .map_err(|e| value_error(format!("format: {e}")))?;
        if !(1..=17).contains(&digits) {
            return Err(value_error(format!(
                "digits must be in 1..=17, not {digits}"
            )));
        }
        let weights = checked_weights(lm_weight, length_penalty, ngram_weight, backward_weight)?;
        let options = ScoreOptions {
            input: Some(input),
            output: Some(output),
            format,
            columns: ColumnNames {
                text: text_column.to_string(),
                group: group_column,
                am: am_column,
                ngram: ngram_column,
                ngram_base: parse_base(ngram_base)?,
                headerless: columns,
                max_candidates: None,
            },
            weights,
            oov: self.oov,
            skip_bad,
            per_token,
            batch_size: self.batch_size,
            digits,
            chunk_rows: CHUNK_ROWS,
            between_chunks: python_signals,
            prefix_sharing,
            report: None,
        };
        let summary = detached(py, Otherwise::Value, || {
            let networks = self.lock();
            rnnlm::rescore::score_file(&networks.forward, networks.backward.as_ref(), &options)
        })?;
        Ok((
            summary.rows,
            summary.bad_rows,
            summary.tokens,
            summary.oov_count,
            summary.log_prob,
        ))
    }

    /// `a<0>` = 0 for `batch` sequences.
    #[pyo3(signature = (batch=1))]
    fn initial_state(&self, py: Python<'_>, batch: i64) -> PyResult<State> {
        if batch < 1 {
            return Err(value_error(format!(
                "batch must be at least 1, not {batch}"
            )));
        }
        let state = detached(py, Otherwise::Value, || {
            Ok(self.lock().forward.model.zero_state(batch))
        })?;
        Ok(State::new(state, batch))
    }

    /// One step of the forward model: reads `inputs` (a previous token per row;
    /// `None` for the zero vector `x<1>` of a sentence's first step) and returns
    /// ln ŷ over the vocabulary, `[batch, vocab]` f32 as bytes, and the next state.
    fn step<'py>(
        &self,
        py: Python<'py>,
        state: &State,
        inputs: Vec<Option<i64>>,
    ) -> PyResult<(Bound<'py, PyByteArray>, State)> {
        let batch = state.batch;
        if inputs.len() as i64 != batch {
            return Err(value_error(format!(
                "{} token ids for a state of batch {batch}",
                inputs.len()
            )));
        }
        let vocab = self.vocab.len() as i64;
        let mut ids = Vec::with_capacity(inputs.len());
        for (row, id) in inputs.iter().enumerate() {
            match *id {
                None => ids.push(ZERO_INPUT),
                Some(id) if (0..vocab).contains(&id) => ids.push(id),
                Some(id) => {
                    return Err(value_error(format!(
                        "row {row}: token id {id} is outside the vocabulary (0..{vocab})"
                    )))
                }
            }
        }
        let (bytes, next) = detached(py, Otherwise::Value, || {
            let networks = self.lock();
            let model = &networks.forward.model;
            let current = state.lock();
            check_state(&current, model.config(), batch, self.device)?;
            let _no_grad = tch::no_grad_guard();
            let input = Tensor::from_slice(&ids).to_device(self.device);
            let (hidden, next) = model.step(&input, &current);
            let log_probs = model
                .log_probs(&hidden)
                .to_kind(tch::Kind::Float)
                .to_device(Device::Cpu)
                .contiguous();
            let numel = log_probs.numel();
            let mut bytes = vec![0u8; numel * 4];
            log_probs.copy_data_u8(&mut bytes, numel);
            Ok((bytes, next))
        })?;
        Ok((PyByteArray::new(py, &bytes), State::new(next, batch)))
    }
}

/// A state fits the model: its cell, layers, width, batch and device.
fn check_state(
    state: &rnnlm::model::State,
    config: &rnnlm::model::ModelConfig,
    batch: i64,
    device: Device,
) -> anyhow::Result<()> {
    let expected = [config.layers, batch, config.hidden];
    let (tensor, is_lstm) = match state {
        rnnlm::model::State::Lstm(h, _) => (h, true),
        rnnlm::model::State::Hidden(h) => (h, false),
    };
    if is_lstm != (config.cell == rnnlm::model::Cell::Lstm)
        || tensor.size() != expected
        || tensor.device() != device
    {
        anyhow::bail!(
            "this state does not belong to this model (state {:?} on {:?}, model {:?} of [{}, {batch}, {}] on {device:?})",
            tensor.size(),
            tensor.device(),
            config.cell,
            config.layers,
            config.hidden
        );
    }
    Ok(())
}

/// The recurrent state of a batch of sequences, for [`Model::step`].
#[pyclass(frozen, module = "rnnlm._rnnlm")]
struct State {
    inner: Mutex<rnnlm::model::State>,
    batch: i64,
}

impl State {
    fn new(state: rnnlm::model::State, batch: i64) -> Self {
        State {
            inner: Mutex::new(state),
            batch,
        }
    }

    fn lock(&self) -> MutexGuard<'_, rnnlm::model::State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl State {
    /// Sequences in the batch.
    #[getter]
    fn batch(&self) -> i64 {
        self.batch
    }

    /// The rows `indices` (repeats allowed), as beam search keeps and copies them.
    fn select(&self, py: Python<'_>, indices: Vec<i64>) -> PyResult<State> {
        if indices.is_empty() {
            return Err(value_error("select needs at least one row"));
        }
        if let Some(bad) = indices.iter().find(|&&i| i < 0 || i >= self.batch) {
            return Err(value_error(format!(
                "row {bad} is outside the batch (0..{})",
                self.batch
            )));
        }
        let rows = indices.len() as i64;
        let selected = detached(py, Otherwise::Value, || {
            let state = self.lock();
            let device = match &*state {
                rnnlm::model::State::Lstm(h, _) | rnnlm::model::State::Hidden(h) => h.device(),
            };
            Ok(state.select(&Tensor::from_slice(&indices).to_device(device)))
        })?;
        Ok(State::new(selected, rows))
    }

    /// The rows of several states, one after another.
    #[staticmethod]
    fn concat(py: Python<'_>, states: Vec<PyRef<'_, State>>) -> PyResult<State> {
        if states.is_empty() {
            return Err(value_error("concat needs at least one state"));
        }
        let batch = states.iter().map(|s| s.batch).sum();
        let parts: Vec<&State> = states.iter().map(|s| &**s).collect();
        let joined = detached(py, Otherwise::Value, || {
            let locked: Vec<MutexGuard<'_, rnnlm::model::State>> =
                parts.iter().map(|s| s.lock()).collect();
            let mut hidden = Vec::new();
            let mut cells = Vec::new();
            for state in &locked {
                match &**state {
                    rnnlm::model::State::Lstm(h, c) => {
                        hidden.push(h.shallow_clone());
                        cells.push(c.shallow_clone());
                    }
                    rnnlm::model::State::Hidden(h) => hidden.push(h.shallow_clone()),
                }
            }
            if !cells.is_empty() && cells.len() != hidden.len() {
                anyhow::bail!("concat: LSTM and GRU/RNN states cannot be joined");
            }
            let h = Tensor::f_cat(&hidden, 1)
                .map_err(|e| anyhow::anyhow!("concat: states of different models: {e}"))?;
            Ok(if cells.is_empty() {
                rnnlm::model::State::Hidden(h)
            } else {
                rnnlm::model::State::Lstm(h, Tensor::cat(&cells, 1))
            })
        })?;
        Ok(State::new(joined, batch))
    }
}

/// The torch version this extension was built against.
#[pyfunction]
fn built_torch() -> &'static str {
    env!("RNNLM_BUILT_TORCH")
}

/// The extension needs the interpreter's libtorch loaded first (`import torch`):
/// otherwise its own dependencies pull in a second copy.
#[pymodule]
fn _rnnlm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let modules = m.py().import("sys")?.getattr("modules")?;
    if !modules.contains("torch")? {
        return Err(PyImportError::new_err(
            "rnnlm._rnnlm was imported before torch: use `import rnnlm`, which imports torch first",
        ));
    }
    // Panics become exceptions at each call's boundary; the default hook would also
    // print them. This hook is this extension's own (each Rust library has its own).
    std::panic::set_hook(Box::new(|_| {}));
    m.add_class::<Model>()?;
    m.add_class::<State>()?;
    m.add_function(wrap_pyfunction!(built_torch, m)?)?;
    Ok(())
}
