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
use crate::rescore::groups::{score_groups, Models, ScoredChunk};
use crate::rescore::nbest::{
    require_column, word_count, Candidate, CandidateRows, ColumnNames, Columns, RowReader,
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
    /// The line search's resamples of the lists, whose weights are averaged (1: one
    /// search on the lists themselves; `None`: 64 for 100 lists or more, else 1).
    pub bags: Option<usize>,
}

/// How `tune` searches the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SearchMethod {
    /// Exact line searches from the best points of a coarse grid, each to the middle
    /// of the best plateau ([`mert`]).
    #[default]
    Line,
    /// The grid at growing scales, refined coordinate by coordinate ([`search`]).
    Grid,
}

crate::names::named_enum!(SearchMethod {
    Line => "line",
    Grid => "grid",
});

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

/// Scores the dev set and tunes every row of the report; `model` is `None` with
/// `scored`, `backward` a backward model to mix in.
pub fn tune(
    model: Option<&LoadedModel>,
    backward: Option<&LoadedModel>,
    options: &TuneOptions,
) -> Result<TuneReport> {
    let name = input_name(Some(&options.input));
    let forward = model.map(|m| scorer(m, options)).transpose()?;
    let backward = match model {
        Some(_) => backward.map(|b| scorer(b, options)).transpose()?,
        None => None,
    };
    let reader = RowReader::new(
        open_input(Some(&options.input))?,
        options.format,
        &name,
        options.columns.headerless.as_deref(),
    )?;
    let columns = Columns::find(&reader, &options.columns, &name)?;
    let mut lists = Lists::new(&reader, &columns, &name, options)?;
    let mut rows = CandidateRows::new(reader, &columns, &name)
        .with_max_candidates(options.columns.max_candidates)?;
    let models = Models {
        forward: forward.as_ref(),
        backward: backward.as_ref(),
    };
    let bad = |line, row, reason: &str| bail!("{name}: line {line} (row {row}): {reason}");
    score_groups(
        &mut rows,
        CHUNK_ROWS,
        models,
        options.batch_size,
        bad,
        |chunk| lists.add(&chunk),
    )?;
    let reference_words = lists.finish()?;
    let ranges: Vec<_> = lists
        .utterances
        .iter()
        .map(|u| u.candidates.clone())
        .collect();
    let has = report::Terms {
        am: columns.am.is_some(),
        ngram: columns.ngram.is_some(),
        backward: backward.is_some() || lists.scored.backward.is_some(),
    };
    let cache = &lists.cache;
    let (report, searched) = report::report(cache, &ranges, reference_words, has, options)?;
    if let Some(path) = &options.plot {
        plot::TunePlot {
            cache,
            lists: &ranges,
            reference_words,
            report: &report,
            searched,
        }
        .write(path)?;
    }
    Ok(report)
}

fn scorer<'m>(model: &'m LoadedModel, options: &TuneOptions) -> Result<Scorer<'m>> {
    Ok(Scorer::from_model(model, options.oov)?.with_prefix_sharing(options.prefix_sharing))
}

/// The dev set's N-best lists as the search reads them: each candidate's scores,
/// words and errors against its utterance's reference.
struct Lists<'a> {
    name: &'a str,
    columns: &'a Columns,
    group_column: usize,
    references: Option<References>,
    reference_column: Option<usize>,
    scored: ScoredColumns,
    current_reference: String,
    utterances: Vec<Utterance>,
    cache: Vec<Cached>,
}

impl<'a> Lists<'a> {
    fn new(
        reader: &RowReader,
        columns: &'a Columns,
        name: &'a str,
        options: &TuneOptions,
    ) -> Result<Self> {
        let Some(group_column) = columns.group else {
            bail!("{name}: line 1: no utterance_id column; name the column that groups the candidates with --group-column");
        };
        let reference_column = options
            .reference_column
            .as_deref()
            .map(|c| require_column(reader.headers(), name, c, "--reference-column"))
            .transpose()?;
        let references = match &options.references {
            Some(path) => Some(References::load(path)?),
            None if reference_column.is_none() => {
                bail!("give the references with --references or --reference-column")
            }
            None => None,
        };
        Ok(Lists {
            name,
            columns,
            group_column,
            references,
            reference_column,
            scored: ScoredColumns::find(reader.headers(), name, options)?,
            current_reference: String::new(),
            utterances: Vec::new(),
            cache: Vec::new(),
        })
    }

    /// Takes a scored chunk's candidates into the lists.
    fn add(&mut self, chunk: &ScoredChunk) -> Result<()> {
        for (i, candidate) in chunk.candidates.iter().enumerate() {
            let (line, row) = (candidate.line, candidate.row);
            let name = self.name;
            let at = || format!("{name}: line {line} (row {row})");
            self.reference_of(candidate, &at)?;
            let (mut forward, mut backward) = self.scored.read(&candidate.fields, &at)?;
            if let Some(scored) = chunk.scored.get(i) {
                forward = scored.log_prob();
            }
            if let Some(log_probs) = &chunk.backward {
                backward = Some(log_probs[i]);
            }
            let text = candidate.text(self.columns);
            self.cache.push(Cached {
                am: candidate.am,
                lm: LmScores {
                    forward,
                    backward,
                    ngram: candidate.ngram,
                },
                words: word_count(text),
                edits: align_text(&self.current_reference, text),
            });
            if let Some(u) = self.utterances.last_mut() {
                u.candidates.end += 1;
            }
        }
        Ok(())
    }

    /// Starts a new utterance at its first candidate, with its reference; checks a
    /// reference column's value on the others.
    fn reference_of(&mut self, candidate: &Candidate, at: &dyn Fn() -> String) -> Result<()> {
        let group = candidate.fields.get(self.group_column).unwrap_or("");
        if self.utterances.last().is_none_or(|u| u.id != group) {
            self.current_reference = match (&mut self.references, self.reference_column) {
                (Some(refs), _) => refs
                    .take(group)
                    .with_context(|| format!("{}: utterance '{group}' has no reference", at()))?,
                (None, Some(i)) => candidate.fields.get(i).unwrap_or("").to_string(),
                (None, None) => unreachable!("Lists::new requires references"),
            };
            let start = self.cache.len();
            self.utterances.push(Utterance {
                id: group.to_string(),
                line: candidate.line,
                candidates: start..start,
                reference_words: word_count(&self.current_reference),
            });
        } else if let Some(i) = self.reference_column {
            let reference = candidate.fields.get(i).unwrap_or("");
            if reference != self.current_reference {
                bail!(
                    "{}: utterance '{group}' has a second, different reference '{reference}'",
                    at()
                );
            }
        }
        Ok(())
    }

    /// Checks that there were lists, that every reference was used and that the
    /// references have words; returns how many.
    fn finish(&self) -> Result<usize> {
        let name = self.name;
        let Some(first) = self.utterances.first() else {
            bail!("{name}: no candidates");
        };
        if let Some(refs) = &self.references {
            if let Some((id, line)) = refs.unused() {
                bail!(
                    "{}: line {line}: utterance '{id}' has a reference but no candidates in {name}",
                    refs.name
                );
            }
        }
        let reference_words: usize = self.utterances.iter().map(|u| u.reference_words).sum();
        if reference_words == 0 {
            bail!(
                "the references have no words (first utterance '{}', line {})",
                first.id,
                first.line
            );
        }
        Ok(reference_words)
    }
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
