//! `rnnlm tune`: choose the combination weights on a dev set by word error rate.
//!
//! Every candidate is scored once (or its `logprob` is read from a file that `score`
//! wrote), and what the search needs is kept per candidate: the acoustic and n-gram
//! scores, the RNN log-probability, the word count and the candidate's word errors
//! against its reference. The grid over `lm_weight × length_penalty × ngram_weight`
//! then only picks each utterance's best candidate by [`Weights::score`], the same
//! function and tie-break (the earlier candidate) that `score` ranks with.

use crate::checkpoint::LoadedModel;
use crate::oov::{OovOptions, OovPolicy, OovScorer};
use crate::rescore::combine::{best_index, Weights};
use crate::rescore::nbest::{
    require_column, word_count, ColumnNames, Columns, GroupOrder, LogBase, RowEvent, RowReader,
};
use crate::rescore::{input_name, open_input, score_sentences, Format, CHUNK_ROWS};
use crate::wer::{align_text, Edits};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
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
}

/// What `tune` found.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TuneReport {
    /// Utterances (N-best lists).
    pub utterances: usize,
    /// Candidates in all.
    pub candidates: usize,
    /// Words in the references.
    pub reference_words: usize,
    /// What picks the first-pass best: `am`, `ngram` or `first`.
    pub first_pass_by: String,
    /// WER of the first-pass best.
    pub first_pass_wer: f64,
    /// WER of the best candidate of each list.
    pub oracle_wer: f64,
    /// WER ranking by the RNN log-probability alone.
    pub lm_only_wer: f64,
    /// WER at the chosen weights.
    pub rescored_wer: f64,
    /// The chosen weights.
    pub lm_weight: f64,
    /// The chosen per-word penalty.
    pub length_penalty: f64,
    /// The chosen n-gram share (0 without an n-gram column).
    pub ngram_weight: f64,
    /// Edits at the chosen weights.
    pub substitutions: usize,
    /// Edits at the chosen weights.
    pub deletions: usize,
    /// Edits at the chosen weights.
    pub insertions: usize,
    /// Settings searched.
    pub settings: usize,
    /// The weights whose chosen value is the end of a searched range of several
    /// values: the best may lie beyond it.
    pub at_range_end: Vec<String>,
}

/// What the search keeps of one candidate.
struct Cached {
    am: Option<f64>,
    ngram: Option<f64>,
    log_prob: f64,
    words: usize,
    edits: Edits,
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

/// Scores the dev set and searches the grid; `model` is `None` with `scored`.
pub fn tune(model: Option<&LoadedModel>, options: &TuneOptions) -> Result<TuneReport> {
    let name = input_name(Some(&options.input));
    let mut references = match &options.references {
        Some(path) => Some(References::load(path)?),
        None => None,
    };
    let oov = match model {
        Some(m) => Some(OovScorer::new(options.oov, m.oov.as_ref(), &m.dir)?),
        None => None,
    };
    let mut reader = RowReader::new(
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
    let logprob_column = if options.scored {
        Some(require_column(
            reader.headers(),
            &name,
            "logprob",
            "--scored",
        )?)
    } else {
        None
    };

    let mut cache: Vec<Cached> = Vec::new();
    let mut utterances: Vec<Utterance> = Vec::new();
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut groups = GroupOrder::default();
    let mut current_reference = String::new();
    let mut row = 0;
    loop {
        let (line, fields) = match reader.next_row()? {
            RowEvent::End => break,
            RowEvent::Bad { line, reason } => {
                bail!("{name}: line {line} (row {}): {reason}", row + 1)
            }
            RowEvent::Row { line, fields } => (line, fields),
        };
        row += 1;
        let at = || format!("{name}: line {line} (row {row})");
        let candidate = columns
            .check(fields, line, row)
            .map_err(|reason| anyhow!("{}: {reason}", at()))?;
        let group = candidate.fields.get(group_column).unwrap_or("").to_string();
        groups.see(&group, &name, line, row)?;
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
        let log_prob = match logprob_column {
            Some(i) => {
                let value = candidate.fields.get(i).unwrap_or("");
                match value.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => bail!("{}: logprob '{value}' is not a finite number", at()),
                }
            }
            None => f64::NAN,
        };
        let cached = Cached {
            am: candidate.am,
            ngram: candidate.ngram,
            log_prob,
            words: word_count(&text),
            edits: align_text(&current_reference, &text),
        };
        match (model, &oov) {
            (Some(model), Some(oov)) => {
                waiting.push(Waiting { text, cached });
                if waiting.len() >= CHUNK_ROWS {
                    score_waiting(model, oov, options.batch_size, &mut waiting, &mut cache)?;
                }
            }
            _ => cache.push(cached),
        }
    }
    if let (Some(model), Some(oov)) = (model, &oov) {
        score_waiting(model, oov, options.batch_size, &mut waiting, &mut cache)?;
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
    search(&cache, &utterances, &columns, &options.grid)
}

fn score_waiting(
    model: &LoadedModel,
    oov: &OovScorer,
    batch_size: usize,
    waiting: &mut Vec<Waiting>,
    cache: &mut Vec<Cached>,
) -> Result<()> {
    let texts: Vec<&str> = waiting.iter().map(|w| w.text.as_str()).collect();
    let scored = score_sentences(model, oov, &texts, batch_size)?;
    for (w, s) in waiting.drain(..).zip(scored) {
        cache.push(Cached {
            log_prob: s.log_prob(),
            ..w.cached
        });
    }
    Ok(())
}

/// Edits of the candidate that `pick` chooses in each utterance.
fn total_edits(
    cache: &[Cached],
    utterances: &[Utterance],
    mut pick: impl FnMut(&[Cached]) -> usize,
) -> Edits {
    let mut total = Edits::default();
    for u in utterances {
        let list = &cache[u.candidates.clone()];
        total += list[pick(list)].edits;
    }
    total
}

fn search(
    cache: &[Cached],
    utterances: &[Utterance],
    columns: &Columns,
    grid: &Grid,
) -> Result<TuneReport> {
    let reference_words: usize = utterances.iter().map(|u| u.reference_words).sum();
    if reference_words == 0 {
        let u = &utterances[0];
        bail!(
            "the references have no words (first utterance '{}', line {})",
            u.id,
            u.line
        );
    }
    let wer = |e: Edits| e.errors() as f64 / reference_words as f64;
    let by =
        |f: fn(&Cached) -> f64| move |list: &[Cached]| best_index(list.iter().map(f)).unwrap_or(0);
    let (first_pass_by, first_pass) = if columns.am.is_some() {
        (
            "am",
            total_edits(cache, utterances, by(|c| c.am.unwrap_or(0.0))),
        )
    } else if columns.ngram.is_some() {
        (
            "ngram",
            total_edits(cache, utterances, by(|c| c.ngram.unwrap_or(0.0))),
        )
    } else {
        ("first", total_edits(cache, utterances, |_| 0))
    };
    let oracle = total_edits(cache, utterances, |list| {
        (0..list.len())
            .min_by_key(|&i| list[i].edits.errors())
            .unwrap_or(0)
    });
    let lm_only = total_edits(cache, utterances, by(|c| c.log_prob));

    let ngram_weights = if columns.ngram.is_some() {
        grid.ngram_weights.clone()
    } else {
        vec![0.0]
    };
    let mut best: Option<(usize, Weights)> = None;
    let mut settings = 0;
    for &lm_weight in &grid.lm_weights {
        for &length_penalty in &grid.length_penalties {
            for &ngram_weight in &ngram_weights {
                let weights = Weights {
                    lm_weight,
                    length_penalty,
                    ngram_weight,
                };
                settings += 1;
                let errors = total_edits(cache, utterances, |list| {
                    best_index(
                        list.iter()
                            .map(|c| weights.score(c.am, c.log_prob, c.ngram, c.words)),
                    )
                    .unwrap_or(0)
                })
                .errors();
                // Strictly fewer: among equal settings the first in grid order stays.
                if best.is_none_or(|(e, _)| errors < e) {
                    best = Some((errors, weights));
                }
            }
        }
    }
    let Some((_, weights)) = best else {
        bail!("the grid is empty");
    };
    let mut at_range_end = Vec::new();
    for (name, values, chosen) in [
        ("lm_weight", &grid.lm_weights, weights.lm_weight),
        (
            "length_penalty",
            &grid.length_penalties,
            weights.length_penalty,
        ),
        ("ngram_weight", &ngram_weights, weights.ngram_weight),
    ] {
        let (low, high) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        // The ends of [0, 1] are real limits of the n-gram weight, not of the search.
        let hard_limit = name == "ngram_weight" && (chosen == 0.0 || chosen == 1.0);
        if low < high && (chosen == low || chosen == high) && !hard_limit {
            at_range_end.push(name.to_string());
        }
    }
    let rescored = total_edits(cache, utterances, |list| {
        best_index(
            list.iter()
                .map(|c| weights.score(c.am, c.log_prob, c.ngram, c.words)),
        )
        .unwrap_or(0)
    });
    Ok(TuneReport {
        utterances: utterances.len(),
        candidates: cache.len(),
        reference_words,
        first_pass_by: first_pass_by.to_string(),
        first_pass_wer: wer(first_pass),
        oracle_wer: wer(oracle),
        lm_only_wer: wer(lm_only),
        rescored_wer: wer(rescored),
        lm_weight: weights.lm_weight,
        length_penalty: weights.length_penalty,
        ngram_weight: if columns.ngram.is_some() {
            weights.ngram_weight
        } else {
            0.0
        },
        substitutions: rescored.substitutions,
        deletions: rescored.deletions,
        insertions: rescored.insertions,
        settings,
        at_range_end,
    })
}

/// The `rnnlm score` flags that apply a report's weights to `options`' columns.
pub fn score_flags(report: &TuneReport, options: &TuneOptions) -> String {
    let c = &options.columns;
    let mut flags = Vec::new();
    if options.format == Format::Kaldi {
        flags.push("--format kaldi".to_string());
    }
    if c.text != "sentence" {
        flags.push(format!("--text-column {}", c.text));
    }
    if let Some(group) = &c.group {
        flags.push(format!("--group-column {group}"));
    }
    if let Some(am) = &c.am {
        flags.push(format!("--am-column {am}"));
    }
    if let Some(ngram) = &c.ngram {
        let base = match c.ngram_base {
            LogBase::Ten => "10",
            LogBase::E => "e",
        };
        flags.push(format!(
            "--ngram-column {ngram} --ngram-log-base {base} --ngram-weight {}",
            report.ngram_weight
        ));
    }
    flags.push(format!(
        "--lm-weight {} --length-penalty {}",
        report.lm_weight, report.length_penalty
    ));
    if !options.scored {
        let policy = match options.oov.policy {
            OovPolicy::Divide => "divide",
            OovPolicy::Unk => "unk",
        };
        flags.push(format!("--oov {policy}"));
        if options.oov.penalty != 0.0 {
            flags.push(format!("--oov-penalty {}", options.oov.penalty));
        }
    }
    flags.join(" ")
}

/// `utterance_id,reference` rows, each used once.
struct References {
    name: String,
    /// Reference and line, by utterance; `None` once taken.
    rows: HashMap<String, (Option<String>, u64)>,
}

impl References {
    fn load(path: &std::path::Path) -> Result<Self> {
        let name = path.display().to_string();
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("cannot open {name}"))?;
        let headers = reader
            .headers()
            .with_context(|| format!("{name}: cannot read the header"))?
            .clone();
        let id = require_column(&headers, &name, "utterance_id", "--references")?;
        let text = require_column(&headers, &name, "reference", "--references")?;
        let mut rows: HashMap<String, (Option<String>, u64)> = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                anyhow!("{name}: line {line}: {e}")
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let utterance = record.get(id).unwrap_or("").to_string();
            if let Some((_, first)) = rows.get(&utterance) {
                bail!("{name}: line {line}: a second reference for utterance '{utterance}' (the first is on line {first})");
            }
            rows.insert(
                utterance,
                (Some(record.get(text).unwrap_or("").to_string()), line),
            );
        }
        Ok(References { name, rows })
    }

    /// The reference of `utterance`; `None` if there is none, or it was taken already.
    fn take(&mut self, utterance: &str) -> Option<String> {
        self.rows.get_mut(utterance).and_then(|(r, _)| r.take())
    }

    /// A reference never taken, the earliest in the file.
    fn unused(&self) -> Option<(&str, u64)> {
        self.rows
            .iter()
            .filter(|(_, (r, _))| r.is_some())
            .map(|(id, (_, line))| (id.as_str(), *line))
            .min_by_key(|&(_, line)| line)
    }
}

/// The report as `rnnlm tune` prints it.
pub fn report_table(report: &TuneReport, flags: &str) -> String {
    let percent = |wer: f64| format!("{:6.2}%", 100.0 * wer);
    let first = match report.first_pass_by.as_str() {
        "am" => "first pass (am score)",
        "ngram" => "first pass (n-gram score)",
        _ => "first pass (first candidate)",
    };
    let mut text = format!(
        "{} utterances, {} candidates, {} reference words; {} settings searched\n",
        report.utterances, report.candidates, report.reference_words, report.settings
    );
    for (label, wer) in [
        (first, report.first_pass_wer),
        ("oracle (best candidate)", report.oracle_wer),
        ("RNN LM only", report.lm_only_wer),
        (
            if report.settings == 1 {
                "rescored, given weights"
            } else {
                "rescored, tuned weights"
            },
            report.rescored_wer,
        ),
    ] {
        text.push_str(&format!("{label:<30} WER {}\n", percent(wer)));
    }
    text.push_str(&format!(
        "rescored: {} substitutions, {} deletions, {} insertions\nweights: lm_weight {} length_penalty {} ngram_weight {}\nrnnlm score flags: {flags}\n",
        report.substitutions,
        report.deletions,
        report.insertions,
        report.lm_weight,
        report.length_penalty,
        report.ngram_weight
    ));
    for name in &report.at_range_end {
        text.push_str(&format!(
            "note: {name} is at the end of its searched range; the best may lie beyond it (widen the range)\n"
        ));
    }
    text
}
