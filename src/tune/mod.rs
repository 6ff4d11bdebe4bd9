//! `rnnlm tune`: choose the combination weights on a dev set by word error rate.
//!
//! Every candidate is scored once (or its `logprob` is read from a file that `score`
//! wrote), and what the search needs is kept per candidate: the acoustic and n-gram
//! scores, the forward (and backward) RNN log-probabilities, the word count and the
//! candidate's word errors against its reference. The [`search`] over `lm_weight`,
//! `length_penalty`, `ngram_weight` and `backward_weight` then only picks each
//! utterance's best candidate by [`Weights::score`](crate::rescore::combine::Weights::score), the same function and tie-break
//! (the earlier candidate) that `score` ranks with. [`report`] tunes one row per
//! system: the first pass re-weighted, the forward RNN, forward + backward, and all.

pub mod line;
pub mod mert;
pub mod plot;
pub mod report;
pub mod search;

use crate::checkpoint::LoadedModel;
use crate::oov::OovOptions;
use crate::rescore::combine::LmScores;
use crate::rescore::nbest::{
    require_column, word_count, CandidateRows, CheckedRow, ColumnNames, Columns, RowReader,
};
use crate::rescore::references::References;
use crate::rescore::{input_name, open_input, Format, Scorer, CHUNK_ROWS};
use crate::wer::align_text;
use anyhow::{bail, Context, Result};
use report::TuneReport;
use search::Cached;
use std::path::PathBuf;

/// The values searched for each weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// `lm_weight` values.
    pub lm_weights: Vec<f64>,
    /// `length_penalty` values.
    pub length_penalties: Vec<f64>,
    /// `ngram_weight` values (only searched with an n-gram column).
    pub ngram_weights: Vec<f64>,
    /// `backward_weight` values (only searched with a backward model).
    pub backward_weights: Vec<f64>,
    /// Widen and refine around the grid's best (false: the grid alone).
    pub refine: bool,
    /// How the weights are searched beyond the grid.
    pub method: SearchMethod,
}

/// How `tune` searches the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SearchMethod {
    /// Exact line searches from the best points of a coarse grid, each to the middle
    /// of the best plateau ([`mert`]).
    #[default]
    Line,
    /// The grid at growing scales, refined coordinate by coordinate ([`search`]).
    Grid,
}

/// Parses `START:END:STEP` (both ends included), `A,B,C` or a single value.
pub fn parse_range(text: &str) -> std::result::Result<Vec<f64>, String> {
    let number = |s: &str| -> std::result::Result<f64, String> {
        match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("'{s}' is not a finite number")),
        }
    };
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [start, end, step] => {
            let (start, end, step) = (number(start)?, number(end)?, number(step)?);
            if step <= 0.0 || end < start {
                return Err(format!("'{text}': need START <= END and a positive STEP"));
            }
            let count = ((end - start) / step + 1e-9).floor() as usize + 1;
            if count > 10_000 {
                return Err(format!("'{text}' has {count} values; at most 10000"));
            }
            // Rounded to 1e-9 so that 0.1 steps print as 0.3, not 0.30000000000000004.
            Ok((0..count)
                .map(|k| ((start + k as f64 * step) * 1e9).round() / 1e9)
                .collect())
        }
        [_] => text.split(',').map(number).collect(),
        _ => Err(format!(
            "'{text}': expected START:END:STEP, A,B,C or one value"
        )),
    }
}

/// Where the logprobs and references come from.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// The dev N-best list.
    pub input: PathBuf,
    /// CSV or Kaldi N-best text.
    pub format: Format,
    /// Which columns hold what.
    pub columns: ColumnNames,
    /// `utterance_id,reference` CSV.
    pub references: Option<PathBuf>,
    /// A column of the input with each candidate's reference, instead of a file.
    pub reference_column: Option<String>,
    /// Read `logprob` from the input (written by `score`) instead of running the model.
    pub scored: bool,
    /// How out-of-vocabulary tokens are scored when the model runs.
    pub oov: OovOptions,
    /// Sentences per forward pass.
    pub batch_size: usize,
    /// The values to search.
    pub grid: Grid,
    /// Weights to apply instead of searching: the rows of an earlier report.
    pub apply: Option<TuneReport>,
    /// The backward model's directory, for the printed `score` flags.
    pub backward_model: Option<PathBuf>,
    /// Run the candidates' shared prefixes once (the numbers are the same either way).
    pub prefix_sharing: bool,
    /// Also draw WER around the chosen weights to this PNG ([`plot`]).
    pub plot: Option<PathBuf>,
}

/// One N-best list.
struct Utterance {
    id: String,
    line: u64,
    candidates: std::ops::Range<usize>,
    reference_words: usize,
}

/// A candidate waiting for the model.
struct Waiting {
    text: String,
    cached: Cached,
}

/// Scores the dev set and tunes every row of the report; `model` is `None` with
/// `scored`, `backward` a backward model to mix in.
pub fn tune(
    model: Option<&LoadedModel>,
    backward: Option<&LoadedModel>,
    options: &TuneOptions,
) -> Result<TuneReport> {
    let name = input_name(Some(&options.input));
    let mut references = match &options.references {
        Some(path) => Some(References::load(path)?),
        None => None,
    };
    let models = match model {
        Some(m) => Some(Models {
            forward: Scorer::from_model(m, options.oov)?
                .with_prefix_sharing(options.prefix_sharing),
            backward: backward
                .map(|b| {
                    Scorer::from_model(b, options.oov)
                        .map(|s| s.with_prefix_sharing(options.prefix_sharing))
                })
                .transpose()?,
        }),
        None => None,
    };
    let reader = RowReader::new(
        open_input(Some(&options.input))?,
        options.format,
        &name,
        options.columns.headerless.as_deref(),
    )?;
    let columns = Columns::find(&reader, &options.columns, &name)?;
    let Some(group_column) = columns.group else {
        bail!("{name}: line 1: no utterance_id column; name the column that groups the candidates with --group-column");
    };
    let reference_column = options
        .reference_column
        .as_deref()
        .map(|c| require_column(reader.headers(), &name, c, "--reference-column"))
        .transpose()?;
    let scored = ScoredColumns::find(reader.headers(), &name, options)?;

    let mut cache: Vec<Cached> = Vec::new();
    let mut utterances: Vec<Utterance> = Vec::new();
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut current_reference = String::new();
    let mut rows = CandidateRows::new(reader, &columns, &name)
        .with_max_candidates(options.columns.max_candidates)?;
    while let Some(checked) = rows.next_row()? {
        let candidate = match checked {
            CheckedRow::Candidate(candidate) => candidate,
            CheckedRow::Bad { line, row, reason } => {
                bail!("{name}: line {line} (row {row}): {reason}")
            }
        };
        let (line, row) = (candidate.line, candidate.row);
        let at = || format!("{name}: line {line} (row {row})");
        let group = candidate.fields.get(group_column).unwrap_or("").to_string();
        let text = candidate.text(&columns).to_string();
        let new_group = utterances.last().is_none_or(|u| u.id != group);
        if new_group {
            current_reference = match (&mut references, reference_column) {
                (Some(refs), _) => refs
                    .take(&group)
                    .with_context(|| format!("{}: utterance '{group}' has no reference", at()))?,
                (None, Some(i)) => candidate.fields.get(i).unwrap_or("").to_string(),
                (None, None) => {
                    bail!("give the references with --references or --reference-column")
                }
            };
            utterances.push(Utterance {
                id: group.clone(),
                line,
                candidates: cache.len() + waiting.len()..cache.len() + waiting.len(),
                reference_words: word_count(&current_reference),
            });
        } else if let Some(i) = reference_column {
            let reference = candidate.fields.get(i).unwrap_or("");
            if reference != current_reference {
                bail!(
                    "{}: utterance '{group}' has a second, different reference '{reference}'",
                    at()
                );
            }
        }
        if let Some(u) = utterances.last_mut() {
            u.candidates.end += 1;
        }
        let (forward, backward) = scored.read(&candidate.fields, &at)?;
        let cached = Cached {
            am: candidate.am,
            lm: LmScores {
                forward,
                backward,
                ngram: candidate.ngram,
            },
            words: word_count(&text),
            edits: align_text(&current_reference, &text),
        };
        match &models {
            Some(models) => {
                waiting.push(Waiting { text, cached });
                if waiting.len() >= CHUNK_ROWS {
                    models.score(options.batch_size, &mut waiting, &mut cache)?;
                }
            }
            None => cache.push(cached),
        }
    }
    if let Some(models) = &models {
        models.score(options.batch_size, &mut waiting, &mut cache)?;
    }
    if utterances.is_empty() {
        bail!("{name}: no candidates");
    }
    if let Some(refs) = &references {
        if let Some((id, line)) = refs.unused() {
            bail!(
                "{}: line {line}: utterance '{id}' has a reference but no candidates in {name}",
                refs.name
            );
        }
    }
    let reference_words: usize = utterances.iter().map(|u| u.reference_words).sum();
    if reference_words == 0 {
        let u = &utterances[0];
        bail!(
            "the references have no words (first utterance '{}', line {})",
            u.id,
            u.line
        );
    }
    let lists: Vec<_> = utterances.iter().map(|u| u.candidates.clone()).collect();
    let has = report::Terms {
        am: columns.am.is_some(),
        ngram: columns.ngram.is_some(),
        backward: models.as_ref().is_some_and(|m| m.backward.is_some())
            || scored.backward.is_some(),
    };
    let (report, searched) = report::report(&cache, &lists, reference_words, has, options)?;
    if let Some(path) = &options.plot {
        plot::TunePlot {
            cache: &cache,
            lists: &lists,
            reference_words,
            report: &report,
            searched,
        }
        .write(path)?;
    }
    Ok(report)
}

/// With `--scored`, the columns that `score` wrote: `logprob`, and `backward_logprob`
/// when `--backward-model` names the model that wrote it.
struct ScoredColumns {
    forward: Option<usize>,
    backward: Option<usize>,
}

impl ScoredColumns {
    fn find(headers: &csv::StringRecord, name: &str, options: &TuneOptions) -> Result<Self> {
        if !options.scored {
            return Ok(ScoredColumns {
                forward: None,
                backward: None,
            });
        }
        let backward = match options.backward_model {
            Some(_) => Some(require_column(
                headers,
                name,
                "backward_logprob",
                "--scored --backward-model",
            )?),
            None => None,
        };
        Ok(ScoredColumns {
            forward: Some(require_column(headers, name, "logprob", "--scored")?),
            backward,
        })
    }

    /// The forward and backward log-probabilities of a row (NaN and `None` until the
    /// models run, without `--scored`).
    fn read(
        &self,
        fields: &csv::StringRecord,
        at: &dyn Fn() -> String,
    ) -> Result<(f64, Option<f64>)> {
        let number = |column: usize, what: &str| -> Result<f64> {
            let value = fields.get(column).unwrap_or("");
            match value.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => bail!("{}: {what} '{value}' is not a finite number", at()),
            }
        };
        let forward = match self.forward {
            Some(i) => number(i, "logprob")?,
            None => f64::NAN,
        };
        let backward = self
            .backward
            .map(|i| number(i, "backward_logprob"))
            .transpose()?;
        Ok((forward, backward))
    }
}

/// The models that score the candidates.
struct Models<'a> {
    forward: Scorer<'a>,
    backward: Option<Scorer<'a>>,
}

impl Models<'_> {
    /// Scores the waiting candidates and moves them into the cache.
    fn score(
        &self,
        batch_size: usize,
        waiting: &mut Vec<Waiting>,
        cache: &mut Vec<Cached>,
    ) -> Result<()> {
        let texts: Vec<&str> = waiting.iter().map(|w| w.text.as_str()).collect();
        let forward = self.forward.log_probs(&texts, batch_size)?;
        let backward = match &self.backward {
            Some(b) => Some(b.log_probs(&texts, batch_size)?),
            None => None,
        };
        for (i, (w, f)) in waiting.drain(..).zip(forward).enumerate() {
            let mut cached = w.cached;
            cached.lm.forward = f;
            cached.lm.backward = backward.as_ref().map(|b| b[i]);
            cache.push(cached);
        }
        Ok(())
    }
}
