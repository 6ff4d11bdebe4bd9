//! The rows `tune` reports, each with its own tuned weights, and how they print.
//!
//! | row | what picks each list's candidate |
//! | --- | --- |
//! | `first_pass` | the list's first candidate (a decoder writes its best first) |
//! | `baseline` | the first pass re-weighted: am + n-gram (+ length penalty), tuned, no RNN |
//! | `forward` | am + the forward RNN, tuned |
//! | `forward_backward` | am + forward and backward RNNs, tuned (with a backward model) |
//! | `rescored` | everything there is: am, forward, backward, n-gram, tuned |
//! | `oracle` | the candidate with the fewest errors |
//! | `lm_only` | the forward RNN's log-probability alone |

use super::search::{edits_at, search, Axis, Cached, Searched, Space};
use super::{SearchMethod, TuneOptions};
use crate::rescore::combine::{best_index, Weights};
use crate::rescore::Format;
use crate::wer::Edits;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Which terms the candidates have.
#[derive(Clone, Copy, Debug)]
pub struct Terms {
    /// An acoustic score column.
    pub am: bool,
    /// An n-gram score column.
    pub ngram: bool,
    /// A backward model.
    pub backward: bool,
}

/// One system's result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Its key: `first_pass`, `baseline`, `forward`, `forward_backward`, `rescored`,
    /// `oracle` or `lm_only`.
    pub name: String,
    /// What it is, for people.
    pub label: String,
    /// Word error rate.
    pub wer: f64,
    /// Substituted words.
    pub substitutions: usize,
    /// Deleted words.
    pub deletions: usize,
    /// Inserted words.
    pub insertions: usize,
    /// The tuned weights (rows that combine scores).
    pub lm_weight: Option<f64>,
    /// The tuned per-word penalty.
    pub length_penalty: Option<f64>,
    /// The tuned n-gram share.
    pub ngram_weight: Option<f64>,
    /// The tuned backward-model share.
    pub backward_weight: Option<f64>,
    /// The `rnnlm score` flags that apply the weights.
    pub score_flags: Option<String>,
}

impl Row {
    fn weights(&self) -> Option<Weights> {
        Some(Weights {
            lm_weight: self.lm_weight?,
            length_penalty: self.length_penalty?,
            ngram_weight: self.ngram_weight.unwrap_or(0.0),
            backward_weight: self.backward_weight.unwrap_or(0.0),
        })
    }
}

/// What `tune` found.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TuneReport {
    /// Utterances (N-best lists).
    pub utterances: usize,
    /// Candidates in all.
    pub candidates: usize,
    /// Words in the references.
    pub reference_words: usize,
    /// What picks the first-pass best: the first candidate of each list.
    pub first_pass_by: String,
    /// WER of each list's first candidate.
    pub first_pass_wer: f64,
    /// WER of the first-pass scores re-weighted, no RNN (with an am or n-gram column).
    pub baseline_wer: Option<f64>,
    /// WER of am + the forward RNN.
    pub forward_wer: f64,
    /// WER of am + forward + backward RNNs (with a backward model).
    pub forward_backward_wer: Option<f64>,
    /// WER of everything combined, at the chosen weights.
    pub rescored_wer: f64,
    /// WER of the best candidate of each list.
    pub oracle_wer: f64,
    /// WER ranking by the forward RNN log-probability alone.
    pub lm_only_wer: f64,
    /// The `rescored` row's weights.
    pub lm_weight: f64,
    /// The `rescored` row's per-word penalty.
    pub length_penalty: f64,
    /// The `rescored` row's n-gram share (0 without an n-gram column).
    pub ngram_weight: f64,
    /// The `rescored` row's backward share (0 without a backward model).
    pub backward_weight: f64,
    /// The `rnnlm score` flags that apply the `rescored` weights.
    pub score_flags: String,
    /// Edits of the `rescored` row.
    pub substitutions: usize,
    /// Edits of the `rescored` row.
    pub deletions: usize,
    /// Edits of the `rescored` row.
    pub insertions: usize,
    /// Settings tried for the `rescored` row.
    pub settings: usize,
    /// Weights still at the end of their range after the widening stopped, or at the
    /// end of a grid searched without refinement: the best may lie beyond.
    pub at_range_end: Vec<String>,
    /// Every row, in the order above.
    pub rows: Vec<Row>,
}

/// Tunes every row on the cached candidates (or applies `options.apply`'s weights);
/// with the report, the `lm_weight` and `length_penalty` ranges the `rescored` row's
/// search tried (`None` when the weights were applied).
pub(super) fn report(
    cache: &[Cached],
    lists: &[std::ops::Range<usize>],
    reference_words: usize,
    has: Terms,
    options: &TuneOptions,
) -> Result<(TuneReport, Option<Searched>)> {
    let grid = &options.grid;
    let bags = super::mert::bags_for(lists.len(), grid.bags);
    if options.apply.is_none() && grid.method == SearchMethod::Line && grid.refine && bags > 1 {
        tracing::info!(
            "each row's weights: the mean of {bags} line searches on resamples of the {} lists (--bags)",
            lists.len()
        );
    }
    let tuner = Tuner {
        cache,
        lists,
        reference_words,
        has,
        options,
    };
    let (rows, rescored) = tuner.rows()?;
    let searched = rescored.searched;
    Ok((tuner.assemble(rows, rescored), searched))
}

/// What the rows are tuned on.
struct Tuner<'a> {
    cache: &'a [Cached],
    lists: &'a [std::ops::Range<usize>],
    reference_words: usize,
    has: Terms,
    options: &'a TuneOptions,
}

/// A tuned row, with how it was found.
struct Tuned {
    row: Row,
    settings: usize,
    at_range_end: Vec<String>,
    searched: Option<Searched>,
}

impl Tuner<'_> {
    /// Every row in report order: the first pass, each tuned system, the oracle and
    /// the forward RNN alone; with the `rescored` row's search.
    fn rows(&self) -> Result<(Vec<Row>, Tuned)> {
        let (tuner, has) = (self, self.has);
        let all = tuner.space();
        let mut rows = vec![tuner.plain_row(
            "first_pass",
            "first pass (first candidate)",
            tuner.pick_total(&|_| 0),
        )];
        if has.am || has.ngram {
            let baseline = Space {
                lm_weight: match has.ngram {
                    true => all.lm_weight.clone(),
                    false => Axis::fixed(0.0),
                },
                ngram_weight: Axis::fixed(if has.ngram { 1.0 } else { 0.0 }),
                backward_weight: Axis::fixed(0.0),
                ..all.clone()
            };
            let label = match has.ngram {
                true => "am + n-gram, tuned (no RNN)",
                false => "am + length penalty, tuned (no RNN)",
            };
            rows.push(tuner.tuned("baseline", label, baseline)?.row);
        }
        let forward = Space {
            ngram_weight: Axis::fixed(0.0),
            backward_weight: Axis::fixed(0.0),
            ..all.clone()
        };
        rows.push(
            tuner
                .tuned("forward", "am + forward RNN, tuned", forward)?
                .row,
        );
        if has.backward {
            let both = Space {
                ngram_weight: Axis::fixed(0.0),
                ..all.clone()
            };
            rows.push(
                tuner
                    .tuned(
                        "forward_backward",
                        "am + forward + backward RNNs, tuned",
                        both,
                    )?
                    .row,
            );
        }
        let rescored = tuner.tuned("rescored", "all of them, tuned", all)?;
        rows.push(rescored.row.clone());
        let oracle = tuner.pick_total(&|list| {
            (0..list.len())
                .min_by_key(|&i| list[i].edits.errors())
                .unwrap_or(0)
        });
        rows.push(tuner.plain_row("oracle", "oracle (best candidate)", oracle));
        let lm_only =
            tuner.pick_total(&|list| best_index(list.iter().map(|c| c.lm.forward)).unwrap_or(0));
        rows.push(tuner.plain_row("lm_only", "forward RNN alone", lm_only));
        Ok((rows, rescored))
    }

    fn wer(&self, edits: Edits) -> f64 {
        edits.errors() as f64 / self.reference_words as f64
    }

    /// The edits of the candidates `pick` chooses, one per list.
    fn pick_total(&self, pick: &dyn Fn(&[Cached]) -> usize) -> Edits {
        let mut total = Edits::default();
        for range in self.lists {
            let list = &self.cache[range.clone()];
            total += list[pick(list)].edits;
        }
        total
    }

    /// A row without weights.
    fn plain_row(&self, name: &str, label: &str, edits: Edits) -> Row {
        Row {
            name: name.into(),
            label: label.into(),
            wer: self.wer(edits),
            substitutions: edits.substitutions,
            deletions: edits.deletions,
            insertions: edits.insertions,
            lm_weight: None,
            length_penalty: None,
            ngram_weight: None,
            backward_weight: None,
            score_flags: None,
        }
    }

    /// Every weight's axis: the grid's values, free to widen unless `--grid-only`;
    /// the shares fixed at 0 without their column or model.
    fn space(&self) -> Space {
        let grid = &self.options.grid;
        let axis = |values: &[f64], bounds: (f64, f64)| {
            let mut a = Axis::search(values.to_vec(), bounds);
            a.free &= grid.refine;
            a
        };
        let share = |on: bool, values: &[f64]| match on {
            true => axis(values, (0.0, 1.0)),
            false => Axis::fixed(0.0),
        };
        Space {
            lm_weight: axis(&grid.lm_weights, (0.0, f64::INFINITY)),
            length_penalty: axis(&grid.length_penalties, (f64::NEG_INFINITY, f64::INFINITY)),
            ngram_weight: share(self.has.ngram, &grid.ngram_weights),
            backward_weight: share(self.has.backward, &grid.backward_weights),
        }
    }

    /// The row `name`, its weights searched over `space` or taken from `--apply`.
    fn tuned(&self, name: &str, label: &str, space: Space) -> Result<Tuned> {
        let (cache, lists, grid) = (self.cache, self.lists, &self.options.grid);
        let (weights, edits, settings, at_range_end, searched) = match &self.options.apply {
            Some(earlier) => {
                let Some(w) = earlier
                    .rows
                    .iter()
                    .find(|r| r.name == name)
                    .and_then(Row::weights)
                else {
                    bail!("--apply: the report has no weights for the '{name}' row");
                };
                (w, edits_at(cache, lists, &w), 1, Vec::new(), None)
            }
            None => {
                let found = match grid.method {
                    SearchMethod::Line if grid.refine => {
                        let bags = super::mert::bags_for(lists.len(), grid.bags);
                        super::mert::search(cache, lists, &space, bags)
                    }
                    _ => search(cache, lists, &space),
                };
                let Some(found) = found else {
                    bail!("no setting of --ngram-weights and --backward-weights sums to at most 1");
                };
                let mut at_end = found.at_range_end;
                if !grid.refine {
                    at_end.extend(grid_ends(&space, &found.weights));
                }
                (
                    found.weights,
                    found.edits,
                    found.settings,
                    at_end,
                    Some(found.searched),
                )
            }
        };
        let has = self.has;
        let mut row = self.plain_row(name, label, edits);
        row.lm_weight = Some(weights.lm_weight);
        row.length_penalty = Some(weights.length_penalty);
        row.ngram_weight = has.ngram.then_some(weights.ngram_weight);
        row.backward_weight = has.backward.then_some(weights.backward_weight);
        row.score_flags = Some(score_flags(&weights, has, self.options));
        Ok(Tuned {
            row,
            settings,
            at_range_end,
            searched,
        })
    }

    /// The report of `rows`, its top-level fields those of the `rescored` row.
    fn assemble(&self, rows: Vec<Row>, rescored: Tuned) -> TuneReport {
        let find = |name: &str| rows.iter().find(|r| r.name == name);
        let wer_of = |name: &str| find(name).map(|r| r.wer);
        let r = &rescored.row;
        TuneReport {
            utterances: self.lists.len(),
            candidates: self.cache.len(),
            reference_words: self.reference_words,
            first_pass_by: "first".into(),
            first_pass_wer: rows[0].wer,
            baseline_wer: wer_of("baseline"),
            forward_wer: wer_of("forward").unwrap_or(f64::NAN),
            forward_backward_wer: wer_of("forward_backward"),
            rescored_wer: r.wer,
            oracle_wer: wer_of("oracle").unwrap_or(f64::NAN),
            lm_only_wer: wer_of("lm_only").unwrap_or(f64::NAN),
            lm_weight: r.lm_weight.unwrap_or(0.0),
            length_penalty: r.length_penalty.unwrap_or(0.0),
            ngram_weight: r.ngram_weight.unwrap_or(0.0),
            backward_weight: r.backward_weight.unwrap_or(0.0),
            score_flags: r.score_flags.clone().unwrap_or_default(),
            substitutions: r.substitutions,
            deletions: r.deletions,
            insertions: r.insertions,
            settings: rescored.settings,
            at_range_end: rescored.at_range_end,
            rows,
        }
    }
}

/// Without refinement: the weights whose chosen value is the end of a range of several
/// values (the n-gram and backward shares' 0 and 1 are real limits, not the search's).
fn grid_ends(space: &Space, weights: &Weights) -> Vec<String> {
    let mut ends = Vec::new();
    for (name, axis, chosen, share) in [
        ("lm_weight", &space.lm_weight, weights.lm_weight, false),
        (
            "length_penalty",
            &space.length_penalty,
            weights.length_penalty,
            false,
        ),
        (
            "ngram_weight",
            &space.ngram_weight,
            weights.ngram_weight,
            true,
        ),
        (
            "backward_weight",
            &space.backward_weight,
            weights.backward_weight,
            true,
        ),
    ] {
        let (low, high) = (axis.values[0], axis.values[axis.values.len() - 1]);
        let hard_limit = share && (chosen == 0.0 || chosen == 1.0);
        if low < high && (chosen == low || chosen == high) && !hard_limit {
            ends.push(name.to_string());
        }
    }
    ends
}

/// The `rnnlm score` flags that apply `weights` to `options`' columns.
fn score_flags(weights: &Weights, has: Terms, options: &TuneOptions) -> String {
    let c = &options.columns;
    let mut flags = Vec::new();
    if options.format == Format::Kaldi {
        flags.push("--format kaldi".to_string());
    }
    if let Some(names) = &c.headerless {
        flags.push(format!("--no-header --columns {}", names.join(",")));
    }
    if c.text != "sentence" {
        flags.push(format!("--text-column {}", c.text));
    }
    if let Some(group) = &c.group {
        flags.push(format!("--group-column {group}"));
    }
    if let Some(max) = c.max_candidates {
        flags.push(format!("--max-candidates {max}"));
    }
    if let Some(am) = &c.am {
        flags.push(format!("--am-column {am}"));
    }
    if let Some(ngram) = &c.ngram {
        let base = c.ngram_base;
        flags.push(format!(
            "--ngram-column {ngram} --ngram-log-base {base} --ngram-weight {}",
            weights.ngram_weight
        ));
    }
    if has.backward {
        if let Some(dir) = &options.backward_model {
            flags.push(format!(
                "--backward-model {} --backward-weight {}",
                dir.display(),
                weights.backward_weight
            ));
        }
    }
    flags.push(format!(
        "--lm-weight {} --length-penalty {}",
        weights.lm_weight, weights.length_penalty
    ));
    if !options.scored {
        flags.push(format!("--oov {}", options.oov.policy));
        if options.oov.penalty != 0.0 {
            flags.push(format!("--oov-penalty {}", options.oov.penalty));
        }
    }
    flags.join(" ")
}

/// The report as `rnnlm tune` prints it.
pub fn report_table(report: &TuneReport) -> String {
    let mut text = format!(
        "{} utterances, {} candidates, {} reference words; {} settings tried for the last tuned row\n",
        report.utterances, report.candidates, report.reference_words, report.settings
    );
    text.push_str(&format!(
        "{:<38} {:>7}  {:>9} {:>14} {:>12} {:>15}\n",
        "", "WER", "lm_weight", "length_penalty", "ngram_weight", "backward_weight"
    ));
    let value = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for row in &report.rows {
        text.push_str(&format!(
            "{:<38} {:>6.2}%  {:>9} {:>14} {:>12} {:>15}\n",
            row.label,
            100.0 * row.wer,
            value(row.lm_weight),
            value(row.length_penalty),
            value(row.ngram_weight),
            value(row.backward_weight),
        ));
    }
    text.push_str(&format!(
        "rescored: {} substitutions, {} deletions, {} insertions\nweights: lm_weight {} length_penalty {} ngram_weight {} backward_weight {}\nrnnlm score flags: {}\n",
        report.substitutions,
        report.deletions,
        report.insertions,
        report.lm_weight,
        report.length_penalty,
        report.ngram_weight,
        report.backward_weight,
        report.score_flags,
    ));
    for name in &report.at_range_end {
        text.push_str(&format!(
            "note: {name} is at the end of its searched range; the best may lie beyond it (widen the range)\n"
        ));
    }
    text
}
