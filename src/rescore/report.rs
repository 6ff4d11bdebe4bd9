//! `score --report`: the scored N-best lists as one HTML page.
//!
//! One section per utterance, its candidates ranked. Each candidate shows its tokens
//! coloured by the forward model's log-probabilities, the tokens where it differs from
//! the chosen candidate outlined, and its score's terms as bars of their difference
//! from the chosen candidate's, so the terms that decided are the long ones. The
//! first-pass pick is the list's first candidate (a decoder writes its best first), as
//! in `tune`'s `first_pass` row; with references, each candidate's word errors and the
//! totals of the two picks are shown too.

use super::combine::{LmScores, Weights};
use super::references::References;
use super::Scored;
use crate::report::{rounded, write_page};
use crate::wer::{align_text, differing_positions};
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::PathBuf;

/// Which utterances a report keeps when there are more than its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub enum ReportOrder {
    /// The first ones, in file order.
    File,
    /// Those where the rescoring changed the word errors most (either way), largest
    /// change first; needs references.
    WerChange,
}

crate::names::named_enum!(ReportOrder {
    File => "file",
    WerChange => "wer-change",
});

/// Where the report goes and what it keeps.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The HTML file.
    pub path: PathBuf,
    /// Utterances shown at most.
    pub limit: usize,
    /// Which ones, when there are more.
    pub order: ReportOrder,
    /// `utterance_id,reference` CSV: each candidate's word errors.
    pub references: Option<PathBuf>,
}

/// One scored candidate, as the report reads it.
pub struct ReportCandidate<'a> {
    /// Its row in the input.
    pub row: usize,
    /// Its text, as read.
    pub text: &'a str,
    /// The forward model's tokens and log-probabilities.
    pub scored: &'a Scored,
    /// Its language-model scores.
    pub lm: LmScores,
    /// Its acoustic score.
    pub am: Option<f64>,
    /// Its words, as the length penalty counts them.
    pub words: usize,
    /// Its combined score (`None`: nothing to combine, ranked by log-probability).
    pub score: Option<f64>,
    /// Its rank in its list (1 = chosen).
    pub rank: usize,
}

/// The score's terms, in nats: they sum to the score.
#[derive(Serialize)]
struct Terms {
    am: Option<f64>,
    forward: f64,
    backward: Option<f64>,
    ngram: Option<f64>,
    length: f64,
}

#[derive(Serialize)]
struct Candidate {
    row: usize,
    /// The text as read, only where it is not the tokens (without `<EOS>`) joined by
    /// spaces, as a recognizer's hypotheses always are: the page would hold it twice.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    rank: usize,
    logprob: f64,
    backward_logprob: Option<f64>,
    score: Option<f64>,
    terms: Terms,
    errors: Option<usize>,
    tokens: Vec<String>,
    token_logprobs: Vec<f64>,
    /// Positions of the tokens outside the vocabulary.
    oov: Vec<usize>,
    /// Positions of the tokens where it differs from the chosen candidate.
    differs: Vec<usize>,
}

#[derive(Serialize)]
struct Utterance {
    id: String,
    reference: Option<String>,
    /// Index of the chosen candidate (rank 1); the first-pass pick is index 0.
    chosen: usize,
    /// The rescoring picked another candidate than the first pass.
    changed: bool,
    /// The chosen candidate has word errors (with references).
    wrong: Option<bool>,
    /// First-pass errors minus the chosen candidate's (with references).
    error_change: Option<i64>,
    candidates: Vec<Candidate>,
    #[serde(skip)]
    position: usize,
}

/// Counts over every utterance of the input, shown or not.
#[derive(Default, Serialize)]
struct Totals {
    utterances: usize,
    candidates: usize,
    changed: usize,
    wrong: usize,
    reference_words: usize,
    first_pass_errors: usize,
    chosen_errors: usize,
    oracle_errors: usize,
}

#[derive(Serialize)]
struct Page<'a> {
    input: &'a str,
    model: &'a str,
    weights: Weights,
    digits: usize,
    order: ReportOrder,
    limit: usize,
    references: bool,
    lists: bool,
    totals: &'a Totals,
    utterances: &'a [Utterance],
}

/// Collects the scored rows as they are written and writes the page at the end.
/// Memory stays bounded: at most twice the limit of utterances is kept at a time.
pub struct RescoreReport {
    options: ReportOptions,
    references: Option<References>,
    weights: Weights,
    digits: usize,
    input: String,
    model: String,
    lists: bool,
    kept: Vec<Utterance>,
    totals: Totals,
}

impl RescoreReport {
    /// A report of `input` scored by `model` with `weights`; numbers are rounded to
    /// `digits` decimals as in the CSV. `lists`: the input has N-best lists (groups),
    /// not single sentences.
    pub fn new(
        options: ReportOptions,
        input: &str,
        model: &str,
        weights: Weights,
        digits: usize,
        lists: bool,
    ) -> Result<Self> {
        if options.limit == 0 {
            bail!("--report-limit must be at least 1");
        }
        if options.order == ReportOrder::WerChange && options.references.is_none() {
            bail!("--report-order wer-change needs --references");
        }
        let references = match &options.references {
            Some(path) => Some(References::load(path)?),
            None => None,
        };
        Ok(RescoreReport {
            options,
            references,
            weights,
            digits,
            input: input.to_string(),
            model: model.to_string(),
            lists,
            kept: Vec::new(),
            totals: Totals::default(),
        })
    }

    /// Adds one utterance: its id and its candidates in file order.
    pub fn add(&mut self, id: &str, candidates: &[ReportCandidate]) -> Result<()> {
        let Some(first) = candidates.first() else {
            return Ok(());
        };
        let reference = match &mut self.references {
            Some(refs) => match refs.take(id) {
                Some(r) => Some(r),
                None => bail!(
                    "{}: utterance '{id}' (row {}) has no reference in {}, or has it twice",
                    self.input,
                    first.row,
                    refs.name
                ),
            },
            None => None,
        };
        let chosen = candidates.iter().position(|c| c.rank == 1).unwrap_or(0);
        let errors: Option<Vec<usize>> = reference.as_ref().map(|r| {
            candidates
                .iter()
                .map(|c| align_text(r, c.text).errors())
                .collect()
        });
        let totals = &mut self.totals;
        totals.utterances += 1;
        totals.candidates += candidates.len();
        totals.changed += usize::from(chosen != 0);
        if let (Some(errors), Some(r)) = (&errors, &reference) {
            totals.reference_words += r.split_whitespace().count();
            totals.first_pass_errors += errors[0];
            totals.chosen_errors += errors[chosen];
            totals.oracle_errors += errors.iter().copied().min().unwrap_or(0);
            totals.wrong += usize::from(errors[chosen] > 0);
        }
        let position = totals.utterances - 1;
        if self.options.order == ReportOrder::File && self.kept.len() >= self.options.limit {
            return Ok(());
        }
        let chosen_tokens: Vec<&str> = candidates[chosen]
            .scored
            .tokens
            .iter()
            .map(String::as_str)
            .collect();
        let views = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| self.candidate(c, &chosen_tokens, errors.as_ref().map(|e| e[i])))
            .collect();
        self.kept.push(Utterance {
            id: id.to_string(),
            reference,
            chosen,
            changed: chosen != 0,
            wrong: errors.as_ref().map(|e| e[chosen] > 0),
            error_change: errors.as_ref().map(|e| e[0] as i64 - e[chosen] as i64),
            candidates: views,
            position,
        });
        if self.kept.len() >= 2 * self.options.limit {
            self.prune();
        }
        Ok(())
    }

    fn candidate(
        &self,
        c: &ReportCandidate,
        chosen_tokens: &[&str],
        errors: Option<usize>,
    ) -> Candidate {
        let digits = self.digits;
        let w = &self.weights;
        let b = if c.lm.backward.is_some() {
            w.backward_weight
        } else {
            0.0
        };
        let n = if c.lm.ngram.is_some() {
            w.ngram_weight
        } else {
            0.0
        };
        let term = |v: f64| rounded(v, digits);
        let (terms, score) = match c.score {
            Some(score) => (
                Terms {
                    am: c.am.map(term),
                    forward: term(w.lm_weight * (1.0 - b - n) * c.lm.forward),
                    backward: c.lm.backward.map(|v| term(w.lm_weight * b * v)),
                    ngram: c.lm.ngram.map(|v| term(w.lm_weight * n * v)),
                    length: term(w.length_penalty * c.words as f64),
                },
                Some(term(score)),
            ),
            None => (
                Terms {
                    am: None,
                    forward: term(c.lm.forward),
                    backward: None,
                    ngram: None,
                    length: 0.0,
                },
                None,
            ),
        };
        let tokens: Vec<&str> = c.scored.tokens.iter().map(String::as_str).collect();
        Candidate {
            row: c.row,
            text: (!reads_as_tokens(c.text, &tokens)).then(|| c.text.to_string()),
            rank: c.rank,
            logprob: term(c.lm.forward),
            backward_logprob: c.lm.backward.map(term),
            score,
            terms,
            errors,
            tokens: c.scored.tokens.clone(),
            token_logprobs: c
                .scored
                .token_log_probs
                .iter()
                .map(|&v| rounded(v, 3))
                .collect(),
            oov: c
                .scored
                .oov_log_shares
                .iter()
                .enumerate()
                .filter(|(_, share)| share.is_some())
                .map(|(i, _)| i)
                .collect(),
            differs: differing_positions(chosen_tokens, &tokens),
        }
    }

    /// Keeps the `limit` utterances the order puts first.
    fn prune(&mut self) {
        if self.options.order == ReportOrder::WerChange {
            // A stable sort: equal changes keep file order.
            self.kept
                .sort_by_key(|u| std::cmp::Reverse(u.error_change.unwrap_or(0).abs()));
        }
        self.kept.truncate(self.options.limit);
    }

    /// Writes the page.
    pub fn finish(mut self) -> Result<()> {
        self.prune();
        if self.options.order == ReportOrder::File {
            self.kept.sort_by_key(|u| u.position);
        }
        let page = Page {
            input: &self.input,
            model: &self.model,
            weights: self.weights,
            digits: self.digits,
            order: self.options.order,
            limit: self.options.limit,
            references: self.references.is_some(),
            lists: self.lists,
            totals: &self.totals,
            utterances: &self.kept,
        };
        let title = format!("rnnlm score report: {}", self.input);
        write_page(&self.options.path, &title, &page, include_str!("report.js"))
    }
}

/// Whether `text` is `tokens` joined by single spaces, a final `<EOS>` left out.
fn reads_as_tokens(text: &str, tokens: &[&str]) -> bool {
    let words = match tokens.split_last() {
        Some((&last, rest)) if last == crate::vocab::EOS => rest,
        _ => tokens,
    };
    let mut expected = text.split(' ');
    words.iter().all(|w| expected.next() == Some(w)) && expected.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::reads_as_tokens;

    #[test]
    fn text_is_left_out_only_where_the_tokens_spell_it() {
        assert!(reads_as_tokens(
            "the cat sat",
            &["the", "cat", "sat", "<EOS>"]
        ));
        assert!(reads_as_tokens("the cat", &["the", "cat"]));
        assert!(!reads_as_tokens("The cat.", &["the", "cat", "<EOS>"]));
        assert!(!reads_as_tokens("the  cat", &["the", "cat", "<EOS>"]));
        assert!(!reads_as_tokens("the cat sat", &["the", "cat", "<EOS>"]));
        assert!(!reads_as_tokens("", &["<EOS>"]));
    }
}
