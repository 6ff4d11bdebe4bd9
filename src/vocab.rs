//! Tokenization and the vocabulary: text to token indices and back.
//!
//! Word level splits on whitespace (the shipped corpora are already tokenized), with
//! options for raw text: split punctuation off words, lowercase, drop punctuation,
//! split hyphens. Character level makes every Unicode scalar value a token, of the
//! text or of the words those options leave. Both reserve `<EOS>`,
//! appended to every sentence, and `<UNK>`, which stands for anything not in the
//! vocabulary.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// End of sentence: the last target of every sequence.
pub const EOS: &str = "<EOS>";
/// Unknown word or character.
pub const UNK: &str = "<UNK>";
/// Index of `<EOS>` in every vocabulary.
pub const EOS_ID: i64 = 0;
/// Index of `<UNK>` in every vocabulary.
pub const UNK_ID: i64 = 1;

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Level {
    /// Whitespace-separated words.
    Word,
    /// Unicode characters.
    Char,
}

crate::names::named_enum!(Level {
    Word => "word",
    Char => "char",
});

/// How text becomes tokens; saved with a model so scoring tokenizes as training did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokenizer {
    /// Word or character tokens.
    pub level: Level,
    /// Lowercase the text first.
    pub lowercase: bool,
    /// Split leading and trailing punctuation off words ("end." → "end", ".").
    pub split_punct: bool,
    /// Drop tokens made only of punctuation.
    pub drop_punct: bool,
    /// Split words at their hyphens ("well-known" → "well", "known"), as a speech
    /// recognizer whose dictionary lacks most compounds prints them.
    ///
    /// At character level these three options act on the words first, which are then
    /// rejoined one space apart: `--level char --recognizer-form` reads Brown's
    /// "Well-known , he said ." as the characters of "well known he said".
    #[serde(default)]
    pub split_hyphens: bool,
    /// Reverse the tokens of every sentence: a backward model, whose `<EOS>` ends the
    /// reversed sentence (it predicts the sentence start).
    #[serde(default)]
    pub reverse: bool,
}

impl Tokenizer {
    /// A tokenizer with no options: whitespace words or plain characters.
    pub fn new(level: Level) -> Self {
        Tokenizer {
            level,
            lowercase: false,
            split_punct: false,
            drop_punct: false,
            split_hyphens: false,
            reverse: false,
        }
    }

    /// The recognizer's text form: lowercase words with no punctuation and hyphenated
    /// words split, as a speech recognizer prints its hypotheses.
    pub fn recognizer_form() -> Self {
        Tokenizer {
            lowercase: true,
            drop_punct: true,
            split_hyphens: true,
            ..Tokenizer::new(Level::Word)
        }
    }

    /// The tokens of one line, without `<EOS>`, in the model's order (reversed for a
    /// backward model).
    pub fn tokenize(&self, line: &str) -> Vec<String> {
        let mut tokens = self.tokenize_forward(line);
        if self.reverse {
            tokens.reverse();
        }
        tokens
    }

    /// Tokens in the model's order put back in reading order.
    pub fn reading_order(&self, tokens: &[String]) -> Vec<String> {
        let mut tokens = tokens.to_vec();
        if self.reverse {
            tokens.reverse();
        }
        tokens
    }

    fn tokenize_forward(&self, line: &str) -> Vec<String> {
        let text = if self.lowercase {
            line.to_lowercase()
        } else {
            line.to_string()
        };
        match self.level {
            Level::Word => self.words(&text),
            // A character model of the recognizer's form reads what a recognizer
            // prints: the words the word options leave, one space apart.
            Level::Char if self.has_word_options() => self
                .words(&text)
                .join(" ")
                .chars()
                .map(String::from)
                .collect(),
            Level::Char => text.chars().map(String::from).collect(),
        }
    }

    fn has_word_options(&self) -> bool {
        self.split_punct || self.drop_punct || self.split_hyphens
    }

    /// The whitespace-separated words of `text` with the word options applied.
    fn words(&self, text: &str) -> Vec<String> {
        let mut tokens = Vec::new();
        for word in text.split_whitespace() {
            if self.split_punct {
                split_punctuation(word, &mut tokens);
            } else {
                tokens.push(word.to_string());
            }
        }
        if self.split_hyphens {
            tokens = tokens.iter().flat_map(|t| split_at_hyphens(t)).collect();
        }
        if self.drop_punct {
            tokens.retain(|t| !t.chars().all(is_punct));
        }
        tokens
    }

    /// Joins tokens (in the model's order) back into readable text: characters are
    /// concatenated; words are spaced, with no space before closing punctuation and
    /// clitics or after opening ones.
    pub fn detokenize(&self, tokens: &[String]) -> String {
        let tokens = &self.reading_order(tokens);
        match self.level {
            Level::Char => tokens.concat(),
            Level::Word => {
                let mut text = String::new();
                let mut glue_next = true;
                for token in tokens {
                    if !glue_next && !attaches_left(token) {
                        text.push(' ');
                    }
                    text.push_str(token);
                    glue_next = attaches_right(token);
                }
                text
            }
        }
    }
}

/// The parts of a word between its hyphens; a token of hyphens alone ("--") stays whole.
fn split_at_hyphens(token: &str) -> Vec<String> {
    let parts: Vec<String> = token
        .split('-')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    if parts.is_empty() {
        vec![token.to_string()]
    } else {
        parts
    }
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace())
}

/// Pushes `word` with its leading and trailing punctuation as separate one-character tokens.
fn split_punctuation(word: &str, tokens: &mut Vec<String>) {
    let chars: Vec<char> = word.chars().collect();
    let start = chars
        .iter()
        .position(|&c| !is_punct(c))
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|&c| !is_punct(c))
        .map_or(start, |i| i + 1);
    tokens.extend(chars[..start].iter().map(|c| c.to_string()));
    if start < end {
        tokens.push(chars[start..end].iter().collect());
    }
    tokens.extend(chars[end.max(start)..].iter().map(|c| c.to_string()));
}

fn attaches_left(token: &str) -> bool {
    matches!(
        token,
        "." | "," | ";" | ":" | "!" | "?" | ")" | "]" | "}" | "''" | "%" | "..."
    ) || token.starts_with('\'') && token.len() > 1 && token != "''"
        || token == "n't"
}

fn attaches_right(token: &str) -> bool {
    matches!(token, "(" | "[" | "{" | "``" | "$")
}

/// Token strings and their indices. Index 0 is `<EOS>`, 1 is `<UNK>`; the rest are
/// ordered by falling training count, ties broken alphabetically, so a build is
/// deterministic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    index: HashMap<String, i64>,
}

/// How the vocabulary is cut from the training counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VocabLimits {
    /// Keep tokens seen at least this many times (Bengio et al.'s rule: 4).
    pub min_count: usize,
    /// Keep at most this many tokens besides `<EOS>` and `<UNK>`.
    pub max_size: Option<usize>,
}

impl Vocab {
    /// Builds a vocabulary from tokenized training sentences.
    pub fn build<'a>(
        sentences: impl IntoIterator<Item = &'a Vec<String>>,
        limits: VocabLimits,
    ) -> Self {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for sentence in sentences {
            for token in sentence {
                *counts.entry(token.as_str()).or_default() += 1;
            }
        }
        let mut kept: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|&(t, c)| c >= limits.min_count && t != EOS && t != UNK)
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        if let Some(max) = limits.max_size {
            kept.truncate(max);
        }
        let tokens = [EOS, UNK]
            .into_iter()
            .chain(kept.into_iter().map(|(t, _)| t));
        Self::from_tokens(tokens.map(String::from).collect())
    }

    fn from_tokens(tokens: Vec<String>) -> Self {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as i64))
            .collect();
        Vocab { tokens, index }
    }

    /// Number of tokens, `<EOS>` and `<UNK>` included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true: `<EOS>` and `<UNK>` are always there.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The index of a token, `<UNK>`'s if it is not in the vocabulary.
    pub fn id(&self, token: &str) -> i64 {
        self.index.get(token).copied().unwrap_or(UNK_ID)
    }

    /// Every token, in index order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The token string of an index.
    pub fn token(&self, id: i64) -> &str {
        &self.tokens[id as usize]
    }

    /// Indices of a tokenized sentence with `<EOS>` appended, and how many became `<UNK>`.
    pub fn encode(&self, tokens: &[String]) -> (Vec<i64>, usize) {
        let mut ids: Vec<i64> = tokens.iter().map(|t| self.id(t)).collect();
        let oov_count = ids.iter().filter(|&&id| id == UNK_ID).count();
        ids.push(EOS_ID);
        (ids, oov_count)
    }

    /// Writes one token per line, in index order.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::write_atomic(path, |w| {
            for token in &self.tokens {
                writeln!(w, "{token}")?;
            }
            Ok(())
        })
    }

    /// Reads a vocabulary written by [`Vocab::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot open vocabulary {}", path.display()))?;
        // Split on '\n' alone: a character model's "\r" is a token of its own, which
        // `lines()` would strip as half of a CRLF.
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let mut tokens = Vec::new();
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = std::str::from_utf8(line)
                .with_context(|| format!("{}:{}: not UTF-8", path.display(), n + 1))?;
            tokens.push(line.to_string());
        }
        if tokens.len() < 2 || tokens[0] != EOS || tokens[1] != UNK {
            bail!(
                "{}: not a vocabulary (must start with {EOS} and {UNK})",
                path.display()
            );
        }
        let vocab = Self::from_tokens(tokens);
        if vocab.index.len() != vocab.tokens.len() {
            bail!("{}: a token is listed twice", path.display());
        }
        Ok(vocab)
    }
}

/// The non-empty lines of a text file, checked to be UTF-8, with how many empty
/// lines were skipped. A trailing `\r` is removed, so CRLF files read the same.
pub fn read_lines(path: &Path) -> Result<(Vec<String>, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let segments: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let mut lines = Vec::new();
    let mut empty = 0;
    for (n, raw) in segments.iter().enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: invalid UTF-8 at byte {} of the line",
                path.display(),
                n + 1,
                e.valid_up_to()
            )
        })?;
        if line.trim().is_empty() {
            // What follows the file's final newline is not a line.
            if n + 1 < segments.len() {
                empty += 1;
            }
            continue;
        }
        lines.push(line.to_string());
    }
    Ok((lines, empty))
}
