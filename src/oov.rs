//! Open-vocabulary scoring: how an out-of-vocabulary token is scored.
//!
//! The model predicts `<UNK>` as one class that stands for every token outside the
//! vocabulary. Scored as `<UNK>` itself, an unknown word takes the class's whole mass,
//! which in a word model is the mass of thousands of rare words, so candidates with
//! unknown words win N-best lists. The `divide` policy gives each unknown word its own
//! share of the class:
//!
//! ```text
//! log P(w | h) = log P(<UNK> | h) + log P(w | <UNK>)
//! ```
//!
//! P(w | `<UNK>`) is a Witten-Bell estimate over the tokens that training mapped to
//! `<UNK>` (saved in `oov_counts.tsv`): with N such tokens of S distinct types,
//!
//! ```text
//! seen in training, c(w) times:  c(w) / (N + S)
//! never seen:                    S / (N + S) · P_spell(w) / Z      (all of it when N = 0)
//! ```
//!
//! P_spell spreads the unseen mass over every token the tokenizer could produce. At
//! word level that is any non-empty string without whitespace: a character unigram
//! model with an end symbol, estimated with add-one smoothing from the spellings of the
//! training types (vocabulary and `<UNK>` words), plus one escape share spread evenly
//! over every other non-whitespace Unicode scalar. Z removes the mass of the strings
//! that cannot be unseen words (the empty string, the vocabulary, the seen `<UNK>`
//! words), so the shares of all possible unknown words sum to exactly 1. At character
//! level an unknown token is one character, and the unseen mass is spread evenly over
//! the Unicode scalars that are neither in the vocabulary nor seen.
//!
//! A literal `<UNK>` in the input (text already mapped by another tool) is scored as
//! the class itself: it stands for no particular word.

use crate::vocab::{Level, Vocab, UNK};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The model directory's file of training counts of the tokens mapped to `<UNK>`.
pub const OOV_FILE: &str = "oov_counts.tsv";

/// How an out-of-vocabulary token is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum OovPolicy {
    /// log P(`<UNK>` | h) + log P(w | `<UNK>`): a proper open-vocabulary probability.
    Divide,
    /// log P(`<UNK>` | h): the closed-vocabulary number, as perplexities are reported.
    Unk,
}

crate::names::named_enum!(OovPolicy {
    Divide => "divide",
    Unk => "unk",
});

/// The policy and the per-token penalty, as the command line gives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OovOptions {
    /// Divide the `<UNK>` mass or score the class itself.
    pub policy: OovPolicy,
    /// Added (natural log) per out-of-vocabulary token, on top of the policy.
    pub penalty: f64,
}

/// Unicode scalar values: every `char`.
const SCALARS: f64 = (0x11_0000 - 0x800) as f64;

/// Scalar values that `char::is_whitespace` accepts; a token never contains them.
fn whitespace_scalars() -> usize {
    (0..=u32::MAX)
        .take(0x11_0000)
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .count()
}

/// The distribution of tokens within the `<UNK>` class (see the module documentation).
#[derive(Clone, Debug)]
pub struct OovClasses {
    /// Training counts of the tokens mapped to `<UNK>`.
    counts: HashMap<String, u64>,
    /// N + S: the Witten-Bell denominator.
    denominator: f64,
    /// ln of the mass left for tokens never seen in training.
    log_unseen_mass: f64,
    spelling: Spelling,
}

/// P_spell / Z for tokens never seen in training.
#[derive(Clone, Debug)]
enum Spelling {
    /// Word level: a character unigram model with an end symbol.
    Characters {
        log_char: HashMap<char, f64>,
        log_end: f64,
        /// ln of one escape character's probability.
        log_other: f64,
        /// How many scalars share the escape mass.
        others: f64,
        log_normalizer: f64,
    },
    /// Character level: uniform over the characters that can be unseen.
    Uniform { log_share: f64 },
}

impl OovClasses {
    /// Builds the class distribution from the counts of the training tokens that
    /// `vocab` maps to `<UNK>`.
    pub fn new(level: Level, vocab: &Vocab, counts: HashMap<String, u64>) -> Self {
        let total: u64 = counts.values().sum();
        let types = counts.len() as f64;
        let (denominator, log_unseen_mass) = if total == 0 {
            (1.0, 0.0)
        } else {
            let d = total as f64 + types;
            (d, (types / d).ln())
        };
        let known: Vec<&str> = vocab
            .tokens()
            .iter()
            .skip(2)
            .map(String::as_str)
            .chain(counts.keys().map(String::as_str))
            .collect();
        let spelling = match level {
            Level::Word => Spelling::characters(&known),
            Level::Char => {
                let taken = known.iter().filter(|t| t.chars().count() == 1).count();
                Spelling::Uniform {
                    log_share: -(SCALARS - taken as f64).ln(),
                }
            }
        };
        OovClasses {
            counts,
            denominator,
            log_unseen_mass,
            spelling,
        }
    }

    /// Counts the training tokens that `vocab` maps to `<UNK>` (a literal `<UNK>` excluded).
    pub fn count<'a>(
        sentences: impl IntoIterator<Item = &'a Vec<String>>,
        vocab: &Vocab,
    ) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for token in sentences.into_iter().flatten() {
            if token != UNK && vocab.id(token) == crate::vocab::UNK_ID {
                *counts.entry(token.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// ln P(`token` | `<UNK>`) for a token outside the vocabulary.
    pub fn log_share(&self, token: &str) -> f64 {
        if token == UNK {
            return 0.0;
        }
        match self.counts.get(token) {
            Some(&c) => (c as f64 / self.denominator).ln(),
            None => self.log_unseen_mass + self.spelling.log_prob(token),
        }
    }

    /// ln of the class mass left for tokens never seen in training.
    pub fn log_unseen_mass(&self) -> f64 {
        self.log_unseen_mass
    }

    /// The spelling model's symbol probabilities summed (1 when it is a distribution).
    pub fn spelling_symbol_mass(&self) -> f64 {
        self.spelling.symbol_mass()
    }

    /// The tokens seen in training and mapped to `<UNK>`, with their counts.
    pub fn counts(&self) -> &HashMap<String, u64> {
        &self.counts
    }

    /// Writes `count<TAB>token` lines, most frequent first.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut sorted: Vec<(&String, &u64)> = self.counts.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        crate::files::write_atomic(path, |w| {
            writeln!(w, "# count\ttoken: training tokens mapped to {UNK}")?;
            for (token, count) in sorted {
                writeln!(w, "{count}\t{token}")?;
            }
            Ok(())
        })
    }

    /// Reads a file written by [`OovClasses::save`]; every token must be outside `vocab`.
    pub fn load(path: &Path, level: Level, vocab: &Vocab) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut counts = HashMap::new();
        // Split on '\n' alone: a character model's token may be '\r' or '\t'.
        let lines = bytes.split(|&b| b == b'\n');
        for (n, raw) in lines.enumerate() {
            let at = || format!("{}:{}", path.display(), n + 1);
            if raw.is_empty() || raw.starts_with(b"#") {
                continue;
            }
            let line =
                std::str::from_utf8(raw).with_context(|| format!("{}: invalid UTF-8", at()))?;
            let Some((count, token)) = line.split_once('\t') else {
                bail!("{}: expected count<TAB>token", at());
            };
            let count: u64 = match count.parse() {
                Ok(c) if c > 0 => c,
                _ => bail!("{}: count '{count}' is not a positive whole number", at()),
            };
            if token.is_empty() || vocab.id(token) != crate::vocab::UNK_ID || token == UNK {
                bail!(
                    "{}: '{token}' is in the vocabulary; the file does not belong to this model",
                    at()
                );
            }
            if counts.insert(token.to_string(), count).is_some() {
                bail!("{}: '{token}' is listed twice", at());
            }
        }
        Ok(Self::new(level, vocab, counts))
    }
}

impl Spelling {
    fn characters(known: &[&str]) -> Self {
        let mut char_counts: BTreeMap<char, f64> = BTreeMap::new();
        for token in known {
            for c in token.chars() {
                *char_counts.entry(c).or_default() += 1.0;
            }
        }
        let end_count = known.len() as f64;
        let observed: f64 = char_counts.values().sum::<f64>() + end_count;
        // Add one to each seen character and the end symbol, and one escape share.
        let denominator = observed + char_counts.len() as f64 + 2.0;
        let others = SCALARS - whitespace_scalars() as f64 - char_counts.len() as f64;
        let log_char: HashMap<char, f64> = char_counts
            .iter()
            .map(|(&c, &n)| (c, ((n + 1.0) / denominator).ln()))
            .collect();
        let log_end = ((end_count + 1.0) / denominator).ln();
        let log_other = -(denominator.ln()) - others.ln();
        let mut spelling = Spelling::Characters {
            log_char,
            log_end,
            log_other,
            others,
            log_normalizer: 0.0,
        };
        // Z = 1 - P(empty string) - Σ P_spell(known token).
        let known_mass: f64 = known.iter().map(|t| spelling.log_prob(t).exp()).sum();
        let z = 1.0 - log_end.exp() - known_mass;
        if let Spelling::Characters { log_normalizer, .. } = &mut spelling {
            *log_normalizer = z.ln();
        }
        spelling
    }

    /// ln P_spell(token) / Z.
    fn log_prob(&self, token: &str) -> f64 {
        match self {
            Spelling::Characters {
                log_char,
                log_end,
                log_other,
                log_normalizer,
                ..
            } => {
                let chars: f64 = token
                    .chars()
                    .map(|c| log_char.get(&c).copied().unwrap_or(*log_other))
                    .sum();
                chars + log_end - log_normalizer
            }
            Spelling::Uniform { log_share } => *log_share,
        }
    }

    /// The probabilities of the symbols of a word-level spelling model, summed: the
    /// seen characters, the end symbol and every escape character. 1 up to rounding.
    fn symbol_mass(&self) -> f64 {
        match self {
            Spelling::Characters {
                log_char,
                log_end,
                log_other,
                others,
                ..
            } => {
                log_char.values().map(|l| l.exp()).sum::<f64>()
                    + log_end.exp()
                    + others * log_other.exp()
            }
            Spelling::Uniform { .. } => 1.0,
        }
    }
}

/// Applies [`OovOptions`] to the tokens a model maps to `<UNK>`.
#[derive(Clone, Copy, Debug)]
pub struct OovScorer<'a> {
    classes: Option<&'a OovClasses>,
    penalty: f64,
}

impl<'a> OovScorer<'a> {
    /// Closed-vocabulary scoring: `<UNK>` itself, no penalty.
    pub fn closed() -> Self {
        OovScorer {
            classes: None,
            penalty: 0.0,
        }
    }

    /// The scorer for `options`; `divide` needs the model's `oov_counts.tsv`.
    pub fn new(
        options: OovOptions,
        classes: Option<&'a OovClasses>,
        model_dir: &Path,
    ) -> Result<Self> {
        let classes = match options.policy {
            OovPolicy::Unk => None,
            OovPolicy::Divide => Some(classes.with_context(|| {
                format!(
                    "{}: no {} (the model was trained before open-vocabulary scoring); retrain it or pass --oov unk",
                    model_dir.display(),
                    OOV_FILE
                )
            })?),
        };
        Ok(OovScorer {
            classes,
            penalty: options.penalty,
        })
    }

    /// ln P(token | `<UNK>`) under the policy: 0 for `unk`.
    pub fn log_share(&self, token: &str) -> f64 {
        self.classes.map_or(0.0, |c| c.log_share(token))
    }

    /// What to add to the `<UNK>` log-probability of an out-of-vocabulary `token`.
    pub fn adjustment(&self, token: &str) -> f64 {
        self.log_share(token) + self.penalty
    }
}
