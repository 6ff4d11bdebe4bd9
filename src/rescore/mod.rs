//! `rnnlm score`: log-probabilities for the sentences of a CSV, Kaldi N-best or text file.
//!
//! The main use is N-best rescoring: a speech recognizer wrote several candidate
//! sentences per utterance; each gets its language-model log-probability, an
//! optional combined score with the first-pass scores ([`combine`]), and a rank within
//! its utterance. Rows are read, scored and written in chunks, so memory stays bounded
//! whatever the file's size. The rows of one group (utterance) must be adjacent, as
//! N-best lists are.

pub mod combine;
mod csv_out;
pub mod groups;
pub mod nbest;
pub mod references;
pub mod report;
pub mod sink;
mod text;

use crate::checkpoint::LoadedModel;
use crate::model::RnnLm;
use crate::oov::{OovOptions, OovScorer};
use crate::prefix::{shared_token_log_probs, Work};
use crate::score::token_log_probs;
use crate::vocab::{Tokenizer, Vocab, UNK_ID};
use anyhow::{bail, Context, Result};
use combine::Weights;
use report::{ReportOptions, RescoreReport};
use sink::Sink;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Rows scored per chunk (extended to the end of the group in progress).
pub const CHUNK_ROWS: usize = 10_000;

/// Input layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// Plain text, one sentence per line.
    Text,
    /// Kaldi N-best text: `uttid-N w1 w2 …` per line.
    Kaldi,
}

crate::names::named_enum!(Format {
    Csv => "csv",
    Text => "text",
    Kaldi => "kaldi",
});

/// How to read, score and rank.
#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// Input file; `None` reads standard input.
    pub input: Option<PathBuf>,
    /// Output file; `None` writes standard output.
    pub output: Option<PathBuf>,
    /// CSV, Kaldi N-best or text.
    pub format: Format,
    /// Which columns hold what.
    pub columns: nbest::ColumnNames,
    /// How the scores are combined.
    pub weights: Weights,
    /// How out-of-vocabulary tokens are scored.
    pub oov: OovOptions,
    /// Report bad rows and go on instead of stopping.
    pub skip_bad: bool,
    /// Long-format per-token log-probabilities to this file.
    pub per_token: Option<PathBuf>,
    /// Sentences per forward pass.
    pub batch_size: usize,
    /// Decimals of the log-probability and score columns.
    pub digits: usize,
    /// Rows read and scored at a time, extended to the end of the group in progress
    /// ([`CHUNK_ROWS`] unless a test shrinks it).
    pub chunk_rows: usize,
    /// Called after each chunk is written; an error stops the run there, the output
    /// not committed. The command line never stops ([`never_stop`]); the Python
    /// binding raises Ctrl-C's `KeyboardInterrupt` through it.
    pub between_chunks: fn() -> Result<()>,
    /// Run the candidates' shared prefixes once ([`crate::prefix`]); the numbers are
    /// the same either way.
    pub prefix_sharing: bool,
    /// Also write an HTML report of the scored rows ([`crate::rescore::report`]).
    pub report: Option<ReportOptions>,
}

/// A [`ScoreOptions::between_chunks`] that always goes on.
pub fn never_stop() -> Result<()> {
    Ok(())
}

/// Counts of a finished run.
#[derive(Debug, Default)]
pub struct ScoreSummary {
    /// Sentences scored.
    pub rows: usize,
    /// Bad rows skipped (with `--skip-bad`).
    pub bad_rows: usize,
    /// Tokens scored, `<EOS>` included.
    pub tokens: usize,
    /// Tokens outside the vocabulary.
    pub oov_count: usize,
    /// Total log-probability, nats.
    pub log_prob: f64,
    /// The network's work, forward and backward models together.
    pub work: Work,
}

impl ScoreSummary {
    fn add(&mut self, s: &Scored) {
        self.rows += 1;
        self.tokens += s.tokens.len();
        self.oov_count += s.oov_count;
        self.log_prob += s.log_prob();
    }
}

/// One sentence, scored.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Its tokens, `<EOS>` last.
    pub tokens: Vec<String>,
    /// How many are outside the vocabulary.
    pub oov_count: usize,
    /// Each token's log-probability (nats), unknown tokens as the OOV policy says.
    pub token_log_probs: Vec<f64>,
    /// Each unknown token's ln P(token | `<UNK>`); `None` for known tokens.
    pub oov_log_shares: Vec<Option<f64>>,
}

impl Scored {
    /// The sentence's log-probability by the chain rule.
    pub fn log_prob(&self) -> f64 {
        self.token_log_probs.iter().sum()
    }
}

/// Tokenizes, encodes and scores sentences with a loaded model's own tokenizer;
/// unknown tokens are scored as `oov` says. [`Scorer`] does the same for any model.
pub fn score_sentences(
    model: &LoadedModel,
    oov: &OovScorer,
    sentences: &[&str],
    batch_size: usize,
) -> Result<Vec<Scored>> {
    Scorer::new(&model.model, &model.config.tokenizer, &model.vocab, *oov)
        .score(sentences, batch_size)
}

fn score_with(scorer: &Scorer, sentences: &[&str], batch_size: usize) -> Result<Vec<Scored>> {
    let tokenized: Vec<Vec<String>> = sentences
        .iter()
        .map(|s| scorer.tokenizer.tokenize(s))
        .collect();
    let (ids, oovs): (Vec<Vec<i64>>, Vec<usize>) =
        tokenized.iter().map(|t| scorer.vocab.encode(t)).unzip();
    let log_probs = if scorer.prefix_sharing {
        let (log_probs, work) = shared_token_log_probs(scorer.model, &ids)?;
        scorer
            .work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(work);
        log_probs
    } else {
        let log_probs = token_log_probs(scorer.model, &ids, batch_size)?;
        let tokens: u64 = ids.iter().map(|s| s.len() as u64).sum();
        scorer
            .work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(Work {
                tokens,
                recurrent_steps: tokens,
                output_rows: tokens,
            });
        log_probs
    };
    let oov = &scorer.oov;
    let mut scored = Vec::with_capacity(sentences.len());
    for (((mut tokens, oov_count), ids), model_log_probs) in
        tokenized.into_iter().zip(oovs).zip(&ids).zip(log_probs)
    {
        tokens.push(crate::vocab::EOS.to_string());
        let mut token_log_probs = Vec::with_capacity(tokens.len());
        let mut oov_log_shares = Vec::with_capacity(tokens.len());
        for ((token, &id), &lp) in tokens.iter().zip(ids).zip(&model_log_probs) {
            if id == UNK_ID {
                oov_log_shares.push(Some(oov.log_share(token)));
                token_log_probs.push(lp as f64 + oov.adjustment(token));
            } else {
                oov_log_shares.push(None);
                token_log_probs.push(lp as f64);
            }
        }
        scored.push(Scored {
            tokens,
            oov_count,
            token_log_probs,
            oov_log_shares,
        });
    }
    Ok(scored)
}

/// What scoring sentences needs: the network, the tokenizer and vocabulary it was
/// trained with, and how unknown tokens are scored. Made from a model directory
/// ([`Scorer::from_model`]) or from parts built in memory ([`Scorer::new`]); `score`,
/// `tune` and the tests all score through one.
pub struct Scorer<'a> {
    /// The network.
    pub model: &'a RnnLm,
    /// The tokenizer it was trained with (a backward model's reverses).
    pub tokenizer: &'a Tokenizer,
    /// Its vocabulary.
    pub vocab: &'a Vocab,
    /// How its out-of-vocabulary tokens are scored.
    pub oov: OovScorer<'a>,
    /// Run shared prefixes once ([`crate::prefix`]; on unless turned off).
    pub prefix_sharing: bool,
    work: Mutex<Work>,
}

impl<'a> Scorer<'a> {
    /// A scorer of parts.
    pub fn new(
        model: &'a RnnLm,
        tokenizer: &'a Tokenizer,
        vocab: &'a Vocab,
        oov: OovScorer<'a>,
    ) -> Self {
        Scorer {
            model,
            tokenizer,
            vocab,
            oov,
            prefix_sharing: true,
            work: Mutex::new(Work::default()),
        }
    }

    /// The same scorer with prefix sharing on or off.
    pub fn with_prefix_sharing(mut self, on: bool) -> Self {
        self.prefix_sharing = on;
        self
    }

    /// What the scorer's calls have run so far.
    pub fn work(&self) -> Work {
        *self.work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A loaded model with the OOV policy applied to its own vocabulary and counts.
    pub fn from_model(model: &'a LoadedModel, options: OovOptions) -> Result<Self> {
        Ok(Scorer::new(
            &model.model,
            &model.config.tokenizer,
            &model.vocab,
            OovScorer::new(options, model.oov.as_ref(), &model.dir)?,
        ))
    }

    /// Each sentence's tokens and their log-probabilities.
    pub fn score(&self, sentences: &[&str], batch_size: usize) -> Result<Vec<Scored>> {
        score_with(self, sentences, batch_size)
    }

    /// Each sentence's log-probability (nats).
    pub fn log_probs(&self, sentences: &[&str], batch_size: usize) -> Result<Vec<f64>> {
        Ok(self
            .score(sentences, batch_size)?
            .iter()
            .map(Scored::log_prob)
            .collect())
    }
}

/// Scores a file as `options` say, with a backward model beside the forward one where
/// one is given; returns the counts (of the forward model).
pub fn score_file(
    model: &LoadedModel,
    backward: Option<&LoadedModel>,
    options: &ScoreOptions,
) -> Result<ScoreSummary> {
    if let (Some(output), Some(per_token)) = (&options.output, &options.per_token) {
        if same_file(output, per_token) {
            bail!("--per-token and --output both name {}", per_token.display());
        }
    }
    let forward =
        Scorer::from_model(model, options.oov)?.with_prefix_sharing(options.prefix_sharing);
    let backward = match backward {
        Some(b) => {
            Some(Scorer::from_model(b, options.oov)?.with_prefix_sharing(options.prefix_sharing))
        }
        None => None,
    };
    if backward.is_some() && options.format == Format::Text {
        bail!("--backward-model needs N-best input (--format csv or kaldi)");
    }
    if options.columns.max_candidates.is_some() && options.format == Format::Text {
        bail!("--max-candidates needs N-best input (--format csv or kaldi)");
    }
    let mut report = match &options.report {
        Some(report) => Some(RescoreReport::new(
            report.clone(),
            &input_name(options.input.as_deref()),
            &model.dir.display().to_string(),
            options.weights,
            options.digits,
            options.format != Format::Text,
        )?),
        None => None,
    };
    let progress = crate::progress::Progress::rows();
    let summary = match options.format {
        Format::Csv | Format::Kaldi => {
            csv_out::score_rows(&forward, backward.as_ref(), options, &progress, &mut report)?
        }
        Format::Text => text::score_text(&forward, options, &progress, &mut report)?,
    };
    progress.finish();
    let mut summary = summary;
    summary.work = forward.work();
    if let Some(b) = &backward {
        summary.work.add(b.work());
    }
    Ok(summary)
}

/// Whether two output paths name one file: the same file already (links included),
/// or one name in the same directory, however spelled.
fn same_file(a: &Path, b: &Path) -> bool {
    let directory = |p: &Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::canonicalize(parent.unwrap_or(Path::new("."))).ok()
    };
    a == b
        || same_file::is_same_file(a, b).unwrap_or(false)
        || (a.file_name() == b.file_name()
            && directory(a).is_some()
            && directory(a) == directory(b))
}

/// Opens the input file, or standard input for `None`.
pub fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>> {
    Ok(match path {
        None => Box::new(io::stdin().lock()),
        Some(p) => Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?),
    })
}

/// The input's name in messages.
pub fn input_name(path: Option<&Path>) -> String {
    path.map_or("<stdin>".to_string(), |p| p.display().to_string())
}

/// Writes the per-token rows of a chunk: (row, position, token, logprob, oov_log_share).
fn write_per_token(sink: &mut Option<Sink>, rows: &[usize], scored: &[Scored]) -> Result<()> {
    let Some(sink) = sink else { return Ok(()) };
    for (&row, s) in rows.iter().zip(scored) {
        let tokens = s
            .tokens
            .iter()
            .zip(&s.token_log_probs)
            .zip(&s.oov_log_shares);
        for (position, ((token, lp), share)) in tokens.enumerate() {
            sink.writer.write_record([
                row.to_string(),
                (position + 1).to_string(),
                token.clone(),
                format!("{lp:.6}"),
                share.map_or(String::new(), |v| format!("{v:.6}")),
            ])?;
        }
    }
    Ok(())
}

fn open_per_token(options: &ScoreOptions) -> Result<Option<Sink>> {
    let Some(path) = &options.per_token else {
        return Ok(None);
    };
    let mut sink = Sink::create(Some(path), b',')?;
    sink.writer
        .write_record(["row", "position", "token", "logprob", "oov_log_share"])?;
    Ok(Some(sink))
}

/// Writes the report's page and commits the output and per-token files, in that order:
/// a failure leaves no output half written.
fn finish_outputs(
    report: &mut Option<RescoreReport>,
    sink: Sink,
    per_token: Option<Sink>,
) -> Result<()> {
    if let Some(report) = report.take() {
        report.finish()?;
    }
    sink.commit()?;
    if let Some(sink) = per_token {
        sink.commit()?;
    }
    Ok(())
}
