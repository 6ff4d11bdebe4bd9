//! Reading N-best lists: CSV with a header, or Kaldi's N-best text, as rows of fields.
//!
//! Kaldi's format is one hypothesis per line, `uttid-N w1 w2 …`, the N-best index after
//! the last `-`; it is read as the columns `utterance_id,candidate,sentence`. A row that
//! cannot be used (wrong field count, invalid UTF-8, an empty sentence, a score that is
//! not a finite number) is a *bad row*, reported with its line and row number; an I/O
//! error is not a bad row and always stops the run.

use super::Format;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};

/// Base of the logarithms in an n-gram score column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogBase {
    /// log10, as ARPA tools (SRILM, KenLM) print.
    Ten,
    /// Natural log.
    E,
}

crate::names::named_enum!(LogBase {
    Ten => "10",
    E => "e",
});

impl LogBase {
    /// The value in nats.
    pub fn to_nats(self, value: f64) -> f64 {
        match self {
            LogBase::Ten => value * std::f64::consts::LN_10,
            LogBase::E => value,
        }
    }
}

/// One row as read: its line in the file and its fields.
pub enum RowEvent {
    /// A row with the header's number of fields, all valid UTF-8.
    Row {
        /// Line of the row's start.
        line: u64,
        /// Its fields.
        fields: csv::StringRecord,
    },
    /// A row that cannot be read, and why.
    Bad {
        /// Line of the row's start.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// No more rows.
    End,
}

/// Reads rows from CSV or Kaldi N-best text.
pub struct RowReader {
    source: Source,
    headers: csv::StringRecord,
}

enum Source {
    Csv(csv::Reader<Box<dyn Read>>, csv::ByteRecord),
    /// Kaldi N-best text or plain text: the reader, its line buffer, the line number
    /// and the empty lines skipped.
    Lines(LineFormat, BufReader<Box<dyn Read>>, Vec<u8>, u64, usize),
}

/// What a line of a line-based input holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LineFormat {
    Kaldi,
    Text,
}

impl RowReader {
    /// Starts reading `input` (named `name` in errors) in `format` (CSV or Kaldi);
    /// `headerless` names the columns of a CSV input that has no header row.
    pub fn new(
        input: Box<dyn Read>,
        format: Format,
        name: &str,
        headerless: Option<&[String]>,
    ) -> Result<Self> {
        match format {
            Format::Kaldi => Ok(RowReader {
                source: Source::Lines(LineFormat::Kaldi, BufReader::new(input), Vec::new(), 0, 0),
                headers: csv::StringRecord::from(vec!["utterance_id", "candidate", "sentence"]),
            }),
            Format::Text => Ok(RowReader {
                source: Source::Lines(LineFormat::Text, BufReader::new(input), Vec::new(), 0, 0),
                headers: csv::StringRecord::from(vec!["sentence"]),
            }),
            Format::Csv => {
                // Row lengths are checked against the header here, not by the reader,
                // which without a header would compare with the first row.
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(headerless.is_none())
                    .flexible(true)
                    .from_reader(input);
                let headers = match headerless {
                    Some(names) => csv::StringRecord::from(names.to_vec()),
                    None => reader
                        .headers()
                        .with_context(|| format!("{name}: cannot read the header"))?
                        .clone(),
                };
                Ok(RowReader {
                    source: Source::Csv(reader, csv::ByteRecord::new()),
                    headers,
                })
            }
        }
        .and_then(|reader| {
            // Which of two columns of one name a flag means would be a guess.
            let headers = &reader.headers;
            for (i, column) in headers.iter().enumerate() {
                if headers.iter().take(i).any(|earlier| earlier == column) {
                    match headerless {
                        Some(_) => bail!("--columns names column '{column}' twice"),
                        None => bail!("{name}: line 1: the header names column '{column}' twice"),
                    }
                }
            }
            Ok(reader)
        })
    }

    /// The column names.
    pub fn headers(&self) -> &csv::StringRecord {
        &self.headers
    }

    /// Whether an empty sentence is a real hypothesis (Kaldi writes empty ones) rather
    /// than a bad row.
    pub fn allows_empty_sentences(&self) -> bool {
        matches!(self.source, Source::Lines(LineFormat::Kaldi, ..))
    }

    /// Empty lines skipped so far (line-based input).
    pub fn empty_lines(&self) -> usize {
        match self.source {
            Source::Lines(.., empty) => empty,
            Source::Csv(..) => 0,
        }
    }

    /// The next row; `Err` only for an I/O error.
    pub fn next_row(&mut self) -> Result<RowEvent> {
        match &mut self.source {
            Source::Csv(reader, record) => next_csv_row(reader, record, self.headers.len()),
            Source::Lines(format, reader, buffer, line, empty) => {
                next_line_row(*format, reader, buffer, line, empty)
            }
        }
    }
}

/// The next record of a CSV input that has `expected` columns.
fn next_csv_row(
    reader: &mut csv::Reader<Box<dyn Read>>,
    record: &mut csv::ByteRecord,
    expected: usize,
) -> Result<RowEvent> {
    match reader.read_byte_record(record) {
        Ok(false) => Ok(RowEvent::End),
        Ok(true) => {
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != expected {
                let reason = format!("{} fields where the header has {expected}", record.len());
                return Ok(RowEvent::Bad { line, reason });
            }
            Ok(match csv::StringRecord::from_byte_record(record.clone()) {
                Ok(fields) => RowEvent::Row { line, fields },
                Err(e) => RowEvent::Bad {
                    line,
                    reason: format!("field {} is not valid UTF-8", e.utf8_error().field() + 1),
                },
            })
        }
        Err(e) if e.is_io_error() => Err(anyhow!("cannot read the input: {e}")),
        Err(e) => {
            let line = e.position().map_or(0, |p| p.line());
            let reason = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("{len} fields where the header has {expected_len}"),
                _ => e.to_string(),
            };
            Ok(RowEvent::Bad { line, reason })
        }
    }
}

/// The next non-empty line of a line-based input, counting `line` and the `empty`
/// lines skipped.
fn next_line_row(
    format: LineFormat,
    reader: &mut BufReader<Box<dyn Read>>,
    buffer: &mut Vec<u8>,
    line: &mut u64,
    empty: &mut usize,
) -> Result<RowEvent> {
    loop {
        buffer.clear();
        if reader
            .read_until(b'\n', buffer)
            .context("cannot read the input")?
            == 0
        {
            return Ok(RowEvent::End);
        }
        *line += 1;
        let raw = buffer.strip_suffix(b"\n").unwrap_or(buffer);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(text) = std::str::from_utf8(raw) else {
            return Ok(RowEvent::Bad {
                line: *line,
                reason: "invalid UTF-8".to_string(),
            });
        };
        if text.trim().is_empty() {
            *empty += 1;
            continue;
        }
        let fields = match format {
            LineFormat::Kaldi => kaldi_fields(text),
            LineFormat::Text => Ok(csv::StringRecord::from(vec![text])),
        };
        return Ok(match fields {
            Ok(fields) => RowEvent::Row {
                line: *line,
                fields,
            },
            Err(reason) => RowEvent::Bad {
                line: *line,
                reason,
            },
        });
    }
}

/// `uttid-N w1 w2 …` → `[uttid, N, "w1 w2 …"]`.
fn kaldi_fields(text: &str) -> std::result::Result<csv::StringRecord, String> {
    let mut words = text.split_whitespace();
    let key = words.next().unwrap_or("");
    let (utterance, index) = key
        .rsplit_once('-')
        .filter(|(u, n)| !u.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("key '{key}' does not end in -N (the N-best index)"))?;
    let sentence = words.collect::<Vec<_>>().join(" ");
    Ok(csv::StringRecord::from(vec![utterance, index, &sentence]))
}

/// The columns a scorer reads, located in the header.
#[derive(Clone, Debug)]
pub struct Columns {
    /// The sentence.
    pub text: usize,
    /// The utterance a candidate belongs to.
    pub group: Option<usize>,
    /// A first-pass acoustic log score.
    pub am: Option<usize>,
    /// A first-pass n-gram log score, and its base.
    pub ngram: Option<(usize, LogBase)>,
    /// The candidate's number in its list (`candidate_id`, or Kaldi's N), whose order
    /// the rows must follow.
    pub candidate: Option<usize>,
    /// Empty sentences are hypotheses, not bad rows.
    pub allow_empty: bool,
}

/// The column names asked for on the command line.
#[derive(Clone, Debug)]
pub struct ColumnNames {
    /// `--text-column`.
    pub text: String,
    /// `--group-column`; `None` uses `utterance_id` when the header has it.
    pub group: Option<String>,
    /// `--am-column`.
    pub am: Option<String>,
    /// `--ngram-column`.
    pub ngram: Option<String>,
    /// `--ngram-log-base`.
    pub ngram_base: LogBase,
    /// `--no-header --columns`: the names of the columns of a CSV input without a
    /// header row (the output then has none either).
    pub headerless: Option<Vec<String>>,
    /// `--max-candidates`: read only each utterance's first N candidates.
    pub max_candidates: Option<usize>,
}

/// The index of `column` in `headers`, or an error naming the flag and the columns there are.
pub fn require_column(
    headers: &csv::StringRecord,
    name: &str,
    column: &str,
    flag: &str,
) -> Result<usize> {
    headers.iter().position(|h| h == column).ok_or_else(|| {
        let have: Vec<&str> = headers.iter().collect();
        anyhow!(
            "{name}: line 1: no column '{column}' ({flag}); the header has: {}",
            have.join(", ")
        )
    })
}

impl Columns {
    /// Locates the named columns in `reader`'s header.
    pub fn find(reader: &RowReader, names: &ColumnNames, name: &str) -> Result<Self> {
        let headers = reader.headers();
        let optional = |column: &Option<String>, flag: &str| {
            column
                .as_deref()
                .map(|c| require_column(headers, name, c, flag))
                .transpose()
        };
        Ok(Columns {
            text: require_column(headers, name, &names.text, "--text-column")?,
            group: match &names.group {
                Some(column) => Some(require_column(headers, name, column, "--group-column")?),
                None => headers.iter().position(|h| h == "utterance_id"),
            },
            am: optional(&names.am, "--am-column")?,
            ngram: optional(&names.ngram, "--ngram-column")?.map(|i| (i, names.ngram_base)),
            candidate: headers
                .iter()
                .position(|h| h == "candidate_id" || h == "candidate"),
            allow_empty: reader.allows_empty_sentences(),
        })
    }

    /// Checks a row's sentence and scores; `Err` is why the row is bad.
    pub fn check(
        &self,
        fields: csv::StringRecord,
        line: u64,
        row: usize,
    ) -> std::result::Result<Candidate, String> {
        let text = fields.get(self.text).unwrap_or("");
        if text.trim().is_empty() && !self.allow_empty {
            return Err("empty sentence".to_string());
        }
        // A recognizer's hypothesis never breaks a line; a quote left open does, taking
        // the rows after it into this field.
        if text.contains(['\n', '\r']) {
            return Err("the sentence spans lines (a quote left open?)".to_string());
        }
        let am = self
            .am
            .map(|i| parse_log_score(fields.get(i).unwrap_or(""), "am score"))
            .transpose()?;
        let ngram = self
            .ngram
            .map(|(i, base)| {
                parse_log_score(fields.get(i).unwrap_or(""), "n-gram score")
                    .map(|v| base.to_nats(v))
            })
            .transpose()?;
        Ok(Candidate {
            row,
            line,
            fields,
            am,
            ngram,
        })
    }
}

/// A log score: a finite number.
fn parse_log_score(value: &str, what: &str) -> std::result::Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ if value.trim().is_empty() => Err(format!("{what} is empty")),
        _ => Err(format!("{what} '{value}' is not a finite number")),
    }
}

/// A good row: one hypothesis.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its row number (1 = the first row after the header).
    pub row: usize,
    /// Its line in the file.
    pub line: u64,
    /// Every field, as read.
    pub fields: csv::StringRecord,
    /// The acoustic log score.
    pub am: Option<f64>,
    /// The n-gram log score, in nats.
    pub ngram: Option<f64>,
}

impl Candidate {
    /// The sentence.
    pub fn text<'a>(&'a self, columns: &Columns) -> &'a str {
        self.fields.get(columns.text).unwrap_or("")
    }

    /// The group (utterance) it belongs to.
    pub fn group<'a>(&'a self, columns: &Columns) -> Option<&'a str> {
        columns.group.and_then(|g| self.fields.get(g))
    }

    /// Its number in its list, where the input numbers candidates with integers.
    pub fn number(&self, columns: &Columns) -> Option<i64> {
        columns
            .candidate
            .and_then(|c| self.fields.get(c))
            .and_then(|n| n.trim().parse().ok())
    }
}

/// Words of a hypothesis as word error rate and the length penalty count them.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Checks that the rows of each group are adjacent, as N-best lists are, and that
/// numbered candidates come in their order: a list's first row is its first pass, and
/// `--max-candidates` keeps the first rows.
#[derive(Default)]
pub struct GroupOrder {
    finished: HashSet<String>,
    current: Option<String>,
    last_number: Option<i64>,
}

impl GroupOrder {
    /// Notes the group of the next row and its candidate number; an error when that
    /// group ended earlier, or when the number does not follow the group's last one.
    pub fn see(
        &mut self,
        group: &str,
        number: Option<i64>,
        name: &str,
        line: u64,
        row: usize,
    ) -> Result<()> {
        if self.current.as_deref() == Some(group) {
            if let (Some(last), Some(number)) = (self.last_number, number) {
                if number <= last {
                    bail!(
                        "{name}: line {line} (row {row}): candidate {number} follows candidate {last} in group '{group}'; a list's first row is its first pass, so its rows must be in candidate order (sort each list by its candidate number)"
                    );
                }
            }
            self.last_number = number;
            return Ok(());
        }
        self.last_number = number;
        if self.finished.contains(group) {
            bail!(
                "{name}: line {line} (row {row}): group '{group}' appeared earlier with other groups in between; the candidates of one utterance must be adjacent"
            );
        }
        if let Some(previous) = self.current.replace(group.to_string()) {
            self.finished.insert(previous);
        }
        Ok(())
    }
}

/// A row of an N-best file, checked: a candidate, or a bad row and why.
pub enum CheckedRow {
    /// A row whose fields the columns accept.
    Candidate(Candidate),
    /// A row that cannot be scored.
    Bad {
        /// Line of the row's start.
        line: u64,
        /// Its row number (1 = the first row after the header).
        row: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The rows of an N-best file one at a time, each checked against the columns, with
/// every group checked to be adjacent: the reading that `score` and `tune` share.
pub struct CandidateRows<'a> {
    reader: RowReader,
    columns: &'a Columns,
    name: &'a str,
    groups: GroupOrder,
    row: usize,
    /// Candidates kept per group, and how many the current group has had.
    max_candidates: Option<usize>,
    in_group: usize,
}

impl<'a> CandidateRows<'a> {
    /// Reads the rows of `reader`, whose columns are `columns`; `name` is the input's
    /// name in messages.
    pub fn new(reader: RowReader, columns: &'a Columns, name: &'a str) -> Self {
        CandidateRows {
            reader,
            columns,
            name,
            groups: GroupOrder::default(),
            row: 0,
            max_candidates: None,
            in_group: 0,
        }
    }

    /// Empty lines skipped so far (line-based input).
    pub fn empty_lines(&self) -> usize {
        self.reader.empty_lines()
    }

    /// The columns the rows are checked against.
    pub fn columns(&self) -> &Columns {
        self.columns
    }

    /// Keeps the first `max` candidates of each group, in file order, and skips the
    /// rest: a deep N-best list read at a shallower depth. Needs a group column.
    pub fn with_max_candidates(mut self, max: Option<usize>) -> Result<Self> {
        if max.is_some() && self.columns.group.is_none() {
            bail!(
                "{}: --max-candidates cuts each utterance's list, and the input has no group column (--group-column)",
                self.name
            );
        }
        self.max_candidates = max;
        Ok(self)
    }

    /// The next row, or `None` at the end of the input. A group that comes back after
    /// another is an error, not a bad row: the output could not keep it together.
    pub fn next_row(&mut self) -> Result<Option<CheckedRow>> {
        loop {
            let row = self.next_checked()?;
            if let (Some(max), Some(CheckedRow::Candidate(_))) = (self.max_candidates, &row) {
                if self.in_group > max {
                    continue;
                }
            }
            return Ok(row);
        }
    }

    fn next_checked(&mut self) -> Result<Option<CheckedRow>> {
        let (line, fields) = match self.reader.next_row()? {
            RowEvent::End => return Ok(None),
            RowEvent::Bad { line, reason } => {
                self.row += 1;
                let row = self.row;
                return Ok(Some(CheckedRow::Bad { line, row, reason }));
            }
            RowEvent::Row { line, fields } => (line, fields),
        };
        self.row += 1;
        let row = self.row;
        Ok(Some(match self.columns.check(fields, line, row) {
            Ok(candidate) => {
                if let Some(group) = candidate.group(self.columns) {
                    if self.groups.current.as_deref() != Some(group) {
                        self.in_group = 0;
                    }
                    let number = candidate.number(self.columns);
                    self.groups.see(group, number, self.name, line, row)?;
                }
                self.in_group += 1;
                CheckedRow::Candidate(candidate)
            }
            Err(reason) => CheckedRow::Bad { line, row, reason },
        }))
    }
}
