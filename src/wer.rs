//! Word error rate: the Levenshtein alignment of a hypothesis to its reference.
//!
//! WER = (substitutions + deletions + insertions) / reference words, summed over a
//! corpus before dividing, over whitespace-separated words compared exactly.

use std::ops::AddAssign;

/// The edits of a minimal alignment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// Reference words replaced by another word.
    pub substitutions: usize,
    /// Reference words missing from the hypothesis.
    pub deletions: usize,
    /// Hypothesis words with no reference word.
    pub insertions: usize,
}

impl Edits {
    /// All errors.
    pub fn errors(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }
}

impl AddAssign for Edits {
    fn add_assign(&mut self, other: Edits) {
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
    }
}

/// The fewest edits that turn `reference` into `hypothesis`; among alignments with as
/// few, the one with the most substitutions (as sclite reports).
pub fn align(reference: &[&str], hypothesis: &[&str]) -> Edits {
    // previous[j]: edits between the first i-1 reference words and the first j
    // hypothesis words; the row is rebuilt for each reference word.
    let mut previous: Vec<Edits> = (0..=hypothesis.len())
        .map(|j| Edits {
            insertions: j,
            ..Edits::default()
        })
        .collect();
    for (i, r) in reference.iter().enumerate() {
        let mut row = Vec::with_capacity(hypothesis.len() + 1);
        row.push(Edits {
            deletions: i + 1,
            ..Edits::default()
        });
        for (j, h) in hypothesis.iter().enumerate() {
            let mut diagonal = previous[j];
            if r != h {
                diagonal.substitutions += 1;
            }
            let mut deletion = previous[j + 1];
            deletion.deletions += 1;
            let mut insertion = row[j];
            insertion.insertions += 1;
            let best = [diagonal, deletion, insertion]
                .into_iter()
                .min_by_key(|e| (e.errors(), usize::MAX - e.substitutions))
                .unwrap_or(diagonal);
            row.push(best);
        }
        previous = row;
    }
    previous[hypothesis.len()]
}

/// [`align`] on whitespace-separated words.
pub fn align_text(reference: &str, hypothesis: &str) -> Edits {
    let r: Vec<&str> = reference.split_whitespace().collect();
    let h: Vec<&str> = hypothesis.split_whitespace().collect();
    align(&r, &h)
}

/// The positions of `hypothesis` outside a longest common subsequence with `other`:
/// the words a reader sees as different between the two (ties keep the earliest
/// matches of `hypothesis`).
pub fn differing_positions(other: &[&str], hypothesis: &[&str]) -> Vec<usize> {
    let (n, m) = (other.len(), hypothesis.len());
    // common[i][j]: the longest common subsequence of other[i..] and hypothesis[j..].
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if other[i] == hypothesis[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut differing = Vec::new();
    while j < m {
        if i < n && other[i] == hypothesis[j] {
            i += 1;
            j += 1;
        } else if i < n && common[i + 1][j] >= common[i][j + 1] {
            i += 1;
        } else {
            differing.push(j);
            j += 1;
        }
    }
    differing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_positions_mark_the_words_outside_the_common_part() {
        let best = ["the", "apple", "and", "pear", "salad"];
        let other = ["the", "apple", "and", "pair", "salad"];
        assert_eq!(differing_positions(&best, &other), [3]);
        let inserted = ["a", "the", "apple", "and", "pear", "salad", "now"];
        assert_eq!(differing_positions(&best, &inserted), [0, 6]);
        let split = ["the", "ape", "pull", "and", "pear", "salad"];
        assert_eq!(differing_positions(&best, &split), [1, 2]);
        assert_eq!(differing_positions(&best, &best), Vec::<usize>::new());
        assert_eq!(differing_positions(&[], &["x", "y"]), [0, 1]);
    }
}
