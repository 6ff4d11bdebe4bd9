//! Combining the language model with the first pass, and ranking the candidates.
//!
//! ```text
//! lm    = (1 − b − n) · forward_logprob + b · backward_logprob + n · ngram_logprob
//! score = am + lm_weight · lm + length_penalty · words
//! ```
//!
//! with b = `backward_weight` and n = `ngram_weight`, both in [0, 1] and summing to at
//! most 1. All in natural log; the n-gram score is converted from its base first. A
//! backward model's log-probability is the same quantity as the forward one's, the
//! sentence's probability factored in the other order, so the two mix on one scale.
//! The first line is sentence-level log-linear interpolation, as Kaldi's N-best
//! rescoring does it;
//! `words` counts the whitespace-separated words of the hypothesis (an insertion
//! penalty when negative). A term whose column is absent is left out. `score` and
//! `tune` both go through [`Weights::score`] and [`best_index`]/[`ranks`], so a
//! setting that `tune` reports ranks the same way in `score`.

/// The weights of the combination.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Weights {
    /// Weight of the language-model score against the acoustic score.
    pub lm_weight: f64,
    /// Added per word.
    pub length_penalty: f64,
    /// Share of the n-gram score in the language-model score, in [0, 1].
    pub ngram_weight: f64,
    /// Share of the backward model's log-probability, in [0, 1].
    pub backward_weight: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            lm_weight: 1.0,
            length_penalty: 0.0,
            ngram_weight: 0.0,
            backward_weight: 0.0,
        }
    }
}

impl Weights {
    /// The language-model score: the forward RNN log-probability, interpolated with
    /// the backward model's and the n-gram score where there are such; an absent term's
    /// weight counts as 0.
    pub fn lm(&self, lm: &LmScores) -> f64 {
        let backward = lm.backward.map_or(0.0, |b| self.backward_weight * b);
        let b = if lm.backward.is_some() {
            self.backward_weight
        } else {
            0.0
        };
        let ngram = lm.ngram.map_or(0.0, |n| self.ngram_weight * n);
        let n = if lm.ngram.is_some() {
            self.ngram_weight
        } else {
            0.0
        };
        (1.0 - b - n) * lm.forward + backward + ngram
    }

    /// The combined score of one hypothesis.
    pub fn score(&self, am: Option<f64>, lm: &LmScores, words: usize) -> f64 {
        am.unwrap_or(0.0) + self.lm_weight * self.lm(lm) + self.length_penalty * words as f64
    }
}

/// A hypothesis' language-model log-probabilities, natural log.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LmScores {
    /// The (forward) RNN model's.
    pub forward: f64,
    /// The backward model's, where there is one.
    pub backward: Option<f64>,
    /// The first-pass n-gram's, where there is a column.
    pub ngram: Option<f64>,
}

/// The order of [`best_index`] and [`ranks`], one comparison so that `score` and
/// `tune` always agree: higher first, NaN below every number, −0.0 equal to 0.0.
fn higher_first(a: f64, b: f64) -> std::cmp::Ordering {
    let key = |s: f64| {
        if s.is_nan() {
            f64::NEG_INFINITY
        } else if s == 0.0 {
            0.0
        } else {
            s
        }
    };
    key(b).total_cmp(&key(a))
}

/// The index of the highest score; ties go to the earlier candidate.
pub fn best_index(scores: impl IntoIterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in scores.into_iter().enumerate() {
        if best.is_none_or(|(_, b)| higher_first(s, b).is_lt()) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

/// Rank of each score within its group (1 = highest); ties keep file order, so the
/// earlier candidate ranks first, as in [`best_index`].
pub fn ranks(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // A stable sort: equal scores keep their order.
    order.sort_by(|&a, &b| higher_first(scores[a], scores[b]));
    let mut ranks = vec![0; scores.len()];
    for (rank, &i) in order.iter().enumerate() {
        ranks[i] = rank + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every list of up to 4 scores drawn from values where `>` and `total_cmp` part
    /// ways (NaN, −0.0 and 0.0, infinities): the best candidate is the one ranked 1.
    #[test]
    fn best_index_is_the_candidate_ranked_first() {
        let values = [f64::NAN, -0.0, 0.0, 1.0, f64::NEG_INFINITY, f64::INFINITY];
        for len in 1..=4u32 {
            for code in 0..values.len().pow(len) {
                let scores: Vec<f64> = (0..len)
                    .map(|i| values[code / values.len().pow(i) % values.len()])
                    .collect();
                let best = best_index(scores.iter().copied()).unwrap();
                assert_eq!(ranks(&scores)[best], 1, "{scores:?}");
            }
        }
    }
}
