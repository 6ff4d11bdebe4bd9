//! `rnnlm score`: log-probabilities for the sentences of a CSV or text file.
//!
//! The main use is N-best rescoring: a speech recognizer wrote several candidate
//! sentences per utterance; each gets its language-model log-probability, an
//! optional combined score with the acoustic score, and a rank within its utterance.
//! Rows are read, scored and written in chunks, so memory stays bounded whatever the
//! file's size. The rows of one group (utterance) must be adjacent, as N-best lists are.

use crate::checkpoint::{temporary_path, LoadedModel};
use crate::score::{sentence_log_prob, token_log_probs, Evaluation};
use anyhow::{anyhow, bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Rows scored per chunk (extended to the end of the group in progress).
pub const CHUNK_ROWS: usize = 10_000;

/// Input layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// Plain text, one sentence per line.
    Text,
}

/// How to read, score and rank.
#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// Input file; `None` reads standard input.
    pub input: Option<PathBuf>,
    /// Output file; `None` writes standard output.
    pub output: Option<PathBuf>,
    /// CSV or text.
    pub format: Format,
    /// Column with the sentence.
    pub text_column: String,
    /// Column that groups candidates; `None` uses `utterance_id` when the file has it.
    pub group_column: Option<String>,
    /// Column with a first-pass (acoustic) log score.
    pub am_column: Option<String>,
    /// Weight of the language-model log-probability in `score`.
    pub lm_weight: f64,
    /// Added to `score` per token.
    pub length_penalty: f64,
    /// Report bad rows and go on instead of stopping.
    pub skip_bad: bool,
    /// Long-format per-token log-probabilities to this file.
    pub per_token: Option<PathBuf>,
    /// Sentences per forward pass.
    pub batch_size: usize,
}

/// Counts of a finished run.
#[derive(Debug, Default)]
pub struct ScoreSummary {
    /// Sentences scored.
    pub rows: usize,
    /// Bad rows skipped (with `--skip-bad`).
    pub bad_rows: usize,
    /// Tokens scored, `<EOS>` included.
    pub tokens: usize,
    /// Tokens mapped to `<UNK>`.
    pub oov: usize,
    /// Total log-probability, nats.
    pub log_prob: f64,
}

/// One sentence, scored.
struct Scored {
    tokens: Vec<String>,
    oov: usize,
    token_log_probs: Vec<f32>,
}

impl Scored {
    fn log_prob(&self) -> f64 {
        sentence_log_prob(&self.token_log_probs)
    }
}

/// Tokenizes, encodes and scores a chunk of sentences with the model's own tokenizer.
fn score_chunk(
    model: &LoadedModel,
    sentences: &[String],
    batch_size: usize,
) -> Result<Vec<Scored>> {
    let tokenized: Vec<Vec<String>> = sentences
        .iter()
        .map(|s| model.config.tokenizer.tokenize(s))
        .collect();
    let (ids, oovs): (Vec<Vec<i64>>, Vec<usize>) =
        tokenized.iter().map(|t| model.vocab.encode(t)).unzip();
    let log_probs = token_log_probs(&model.model, &ids, batch_size)?;
    Ok(tokenized
        .into_iter()
        .zip(oovs)
        .zip(log_probs)
        .map(|((mut tokens, oov), token_log_probs)| {
            tokens.push(crate::vocab::EOS.to_string());
            Scored {
                tokens,
                oov,
                token_log_probs,
            }
        })
        .collect())
}

/// An output file written under a temporary name and renamed into place on success,
/// or standard output.
struct Sink {
    writer: BufWriter<Box<dyn Write>>,
    paths: Option<(PathBuf, PathBuf)>,
}

impl Sink {
    fn create(path: Option<&Path>) -> Result<Self> {
        let (inner, paths): (Box<dyn Write>, _) = match path {
            None => (Box::new(io::stdout().lock()), None),
            Some(path) => match std::fs::metadata(path) {
                // A device, pipe or socket (`/dev/null`, a FIFO) is written in place:
                // renaming a file over it would replace the device itself.
                Ok(meta) if !meta.is_file() && !meta.is_dir() => {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    (Box::new(file), None)
                }
                _ => {
                    // Through a symlink, the file it points to is replaced, not the link.
                    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                    let tmp = temporary_path(&path);
                    let file = File::create(&tmp)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    (Box::new(file), Some((tmp, path)))
                }
            },
        };
        Ok(Sink {
            writer: BufWriter::new(inner),
            paths,
        })
    }

    fn commit(mut self) -> Result<()> {
        self.writer.flush()?;
        if let Some((tmp, path)) = self.paths.take() {
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Not committed: an error stopped the run, so no half-written file is left.
        if let Some((tmp, _)) = &self.paths {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>> {
    Ok(match path {
        None => Box::new(io::stdin().lock()),
        Some(p) => Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?),
    })
}

fn input_name(options: &ScoreOptions) -> String {
    options
        .input
        .as_ref()
        .map_or("<stdin>".to_string(), |p| p.display().to_string())
}

/// Scores a file as `options` say; returns the counts.
pub fn score_file(model: &LoadedModel, options: &ScoreOptions) -> Result<ScoreSummary> {
    let progress = if io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner().with_message("rows scored")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let summary = match options.format {
        Format::Csv => crate::rescore::csv_io::score_csv(model, options, &progress)?,
        Format::Text => score_text(model, options, &progress)?,
    };
    progress.finish_and_clear();
    Ok(summary)
}

/// Writes the per-token rows of a chunk: (row, position, token, logprob).
fn write_per_token(sink: &mut Option<Sink>, rows: &[usize], scored: &[Scored]) -> Result<()> {
    let Some(sink) = sink else { return Ok(()) };
    for (&row, s) in rows.iter().zip(scored) {
        for (position, (token, lp)) in s.tokens.iter().zip(&s.token_log_probs).enumerate() {
            writeln!(
                sink.writer,
                "{row},{},{},{lp:.6}",
                position + 1,
                csv_field(token)
            )?;
        }
    }
    Ok(())
}

fn open_per_token(options: &ScoreOptions) -> Result<Option<Sink>> {
    let Some(path) = &options.per_token else {
        return Ok(None);
    };
    let mut sink = Sink::create(Some(path))?;
    writeln!(sink.writer, "row,position,token,logprob")?;
    Ok(Some(sink))
}

/// Quotes a field for CSV when it needs it.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Plain text: one sentence per line; prints logprob, log10prob, perplexity and the
/// sentence per line, and a corpus summary on stderr like SRILM's `-ppl`.
fn score_text(
    model: &LoadedModel,
    options: &ScoreOptions,
    progress: &indicatif::ProgressBar,
) -> Result<ScoreSummary> {
    let name = input_name(options);
    let mut reader = BufReader::new(open_input(options.input.as_deref())?);
    let mut sink = Sink::create(options.output.as_deref())?;
    let mut per_token = open_per_token(options)?;
    writeln!(
        sink.writer,
        "logprob\tlog10prob\tperplexity\ttokens\toov\tsentence"
    )?;
    let mut summary = ScoreSummary::default();
    let mut line_number = 0;
    let mut empty = 0;
    let mut buffer = Vec::new();
    loop {
        let mut rows = Vec::new();
        let mut sentences = Vec::new();
        while sentences.len() < CHUNK_ROWS {
            buffer.clear();
            if reader
                .read_until(b'\n', &mut buffer)
                .with_context(|| format!("cannot read {name}"))?
                == 0
            {
                break;
            }
            line_number += 1;
            let raw = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let Ok(line) = std::str::from_utf8(raw) else {
                let message = format!("{name}:{line_number}: invalid UTF-8");
                if options.skip_bad {
                    eprintln!("skipped: {message}");
                    summary.bad_rows += 1;
                    continue;
                }
                bail!(message);
            };
            if line.trim().is_empty() {
                empty += 1;
                continue;
            }
            rows.push(line_number);
            sentences.push(line.to_string());
        }
        if sentences.is_empty() {
            break;
        }
        let scored = score_chunk(model, &sentences, options.batch_size)?;
        for (sentence, s) in sentences.iter().zip(&scored) {
            let lp = s.log_prob();
            let n = s.tokens.len();
            let ppl = (-lp / n as f64).exp();
            writeln!(
                sink.writer,
                "{lp:.4}\t{:.4}\t{ppl:.3}\t{n}\t{}\t{sentence}",
                lp / std::f64::consts::LN_10,
                s.oov
            )?;
            summary.add(s);
        }
        write_per_token(&mut per_token, &rows, &scored)?;
        progress.inc(sentences.len() as u64);
    }
    sink.commit()?;
    if let Some(sink) = per_token {
        sink.commit()?;
    }
    let e = Evaluation::from_total(summary.log_prob, summary.tokens, summary.oov, summary.rows);
    eprintln!(
        "file {name}: {} sentences, {} tokens (<EOS> included), {} OOVs, {empty} empty lines skipped\nlogprob= {:.2} log10prob= {:.2} ppl= {:.2} bits/token= {:.4}",
        summary.rows,
        summary.tokens,
        summary.oov,
        summary.log_prob,
        summary.log_prob / std::f64::consts::LN_10,
        e.perplexity,
        e.bits_per_token
    );
    Ok(summary)
}

impl ScoreSummary {
    fn add(&mut self, s: &Scored) {
        self.rows += 1;
        self.tokens += s.tokens.len();
        self.oov += s.oov;
        self.log_prob += s.log_prob();
    }
}

/// CSV reading, ranking and writing.
mod csv_io {
    use super::*;

    /// Where the columns the scorer needs are in the header.
    struct Columns {
        text: usize,
        group: Option<usize>,
        am: Option<usize>,
    }

    fn find_columns(
        headers: &csv::StringRecord,
        options: &ScoreOptions,
        name: &str,
    ) -> Result<Columns> {
        let find = |column: &str| headers.iter().position(|h| h == column);
        let require = |column: &str, flag: &str| {
            find(column).ok_or_else(|| {
                let have: Vec<&str> = headers.iter().collect();
                anyhow!(
                    "{name}: line 1: no column '{column}' ({flag}); the header has: {}",
                    have.join(", ")
                )
            })
        };
        Ok(Columns {
            text: require(&options.text_column, "--text-column")?,
            group: match &options.group_column {
                Some(column) => Some(require(column, "--group-column")?),
                None => find("utterance_id"),
            },
            am: options
                .am_column
                .as_deref()
                .map(|c| require(c, "--am-column"))
                .transpose()?,
        })
    }

    /// A good row waiting to be scored and written.
    struct Row {
        number: usize,
        fields: csv::StringRecord,
        am: Option<f64>,
    }

    /// Checks one raw record; `Err` is the reason it is bad.
    fn check_row(
        record: &csv::ByteRecord,
        columns: &Columns,
    ) -> std::result::Result<(csv::StringRecord, Option<f64>), String> {
        let fields = csv::StringRecord::from_byte_record(record.clone()).map_err(|e| {
            let field = e.utf8_error().field() + 1;
            format!("field {field} is not valid UTF-8")
        })?;
        let text = fields.get(columns.text).unwrap_or("");
        if text.trim().is_empty() {
            return Err("empty sentence".to_string());
        }
        let am = match columns.am {
            None => None,
            Some(i) => {
                let value = fields.get(i).unwrap_or("");
                Some(
                    value
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| format!("am score '{value}' is not a number"))?,
                )
            }
        };
        Ok((fields, am))
    }

    pub(super) fn score_csv(
        model: &LoadedModel,
        options: &ScoreOptions,
        progress: &indicatif::ProgressBar,
    ) -> Result<ScoreSummary> {
        let name = input_name(options);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(open_input(options.input.as_deref())?);
        let headers = reader
            .headers()
            .with_context(|| format!("{name}: cannot read the header"))?
            .clone();
        let columns = find_columns(&headers, options, &name)?;
        let mut sink = Sink::create(options.output.as_deref())?;
        let mut writer = csv::WriterBuilder::new().from_writer(&mut sink.writer);
        let mut per_token = open_per_token(options)?;
        let mut out_header = headers.clone();
        out_header.extend(["tokens", "oov", "logprob", "log10prob", "perplexity"]);
        if columns.am.is_some() {
            out_header.push_field("score");
        }
        if columns.group.is_some() {
            out_header.extend(["rank", "best"]);
        }
        writer.write_record(&out_header)?;

        let mut summary = ScoreSummary::default();
        let mut record = csv::ByteRecord::new();
        let mut pending: Vec<Row> = Vec::new();
        let mut row_number = 0;
        loop {
            let more = match reader.read_byte_record(&mut record) {
                Ok(more) => more,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let reason = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => {
                            format!("{len} fields where the header has {expected_len}")
                        }
                        _ => e.to_string(),
                    };
                    row_number += 1;
                    bad_row(options, &mut summary, &name, line, row_number, &reason)?;
                    continue;
                }
            };
            if more {
                row_number += 1;
                match check_row(&record, &columns) {
                    Ok((fields, am)) => pending.push(Row {
                        number: row_number,
                        fields,
                        am,
                    }),
                    Err(reason) => {
                        let line = record.position().map_or(0, |p| p.line());
                        bad_row(options, &mut summary, &name, line, row_number, &reason)?;
                    }
                }
            }
            // Score when the chunk is full, but never split a group across chunks.
            let full = pending.len() >= CHUNK_ROWS && !same_group(&pending, &columns);
            if full || (!more && !pending.is_empty()) {
                let keep = if more { pending.pop() } else { None };
                flush(
                    model,
                    options,
                    &columns,
                    &pending,
                    &mut writer,
                    &mut per_token,
                    &mut summary,
                )?;
                progress.inc(pending.len() as u64);
                pending.clear();
                pending.extend(keep);
            }
            if !more {
                break;
            }
        }
        writer.flush()?;
        drop(writer);
        sink.commit()?;
        if let Some(sink) = per_token {
            sink.commit()?;
        }
        if summary.bad_rows > 0 {
            eprintln!("{name}: {} bad rows skipped", summary.bad_rows);
        }
        Ok(summary)
    }

    /// Whether the last pending row is in the same group as the one before it.
    fn same_group(pending: &[Row], columns: &Columns) -> bool {
        let Some(g) = columns.group else { return false };
        match pending {
            [.., a, b] => a.fields.get(g) == b.fields.get(g),
            _ => false,
        }
    }

    fn bad_row(
        options: &ScoreOptions,
        summary: &mut ScoreSummary,
        name: &str,
        line: u64,
        row: usize,
        reason: &str,
    ) -> Result<()> {
        let message = format!("{name}: line {line} (row {row}): {reason}");
        if !options.skip_bad {
            bail!("{message}; use --skip-bad to score the good rows only");
        }
        eprintln!("skipped: {message}");
        summary.bad_rows += 1;
        Ok(())
    }

    fn flush(
        model: &LoadedModel,
        options: &ScoreOptions,
        columns: &Columns,
        rows: &[Row],
        writer: &mut csv::Writer<impl Write>,
        per_token: &mut Option<Sink>,
        summary: &mut ScoreSummary,
    ) -> Result<()> {
        let sentences: Vec<String> = rows
            .iter()
            .map(|r| r.fields.get(columns.text).unwrap_or("").to_string())
            .collect();
        let scored = score_chunk(model, &sentences, options.batch_size)?;
        let combined: Vec<f64> = rows
            .iter()
            .zip(&scored)
            .map(|(row, s)| match row.am {
                Some(am) => {
                    am + options.lm_weight * s.log_prob()
                        + options.length_penalty * s.tokens.len() as f64
                }
                None => s.log_prob(),
            })
            .collect();
        let ranks = columns
            .group
            .map(|g| ranks_within_groups(rows, g, &combined));
        for (i, (row, s)) in rows.iter().zip(&scored).enumerate() {
            let lp = s.log_prob();
            let n = s.tokens.len();
            let mut out = row.fields.clone();
            out.push_field(&n.to_string());
            out.push_field(&s.oov.to_string());
            out.push_field(&format!("{lp:.4}"));
            out.push_field(&format!("{:.4}", lp / std::f64::consts::LN_10));
            out.push_field(&format!("{:.3}", (-lp / n as f64).exp()));
            if row.am.is_some() {
                out.push_field(&format!("{:.4}", combined[i]));
            }
            if let Some(ranks) = &ranks {
                out.push_field(&ranks[i].to_string());
                out.push_field(if ranks[i] == 1 { "true" } else { "false" });
            }
            writer.write_record(&out)?;
            summary.add(s);
        }
        writer.flush()?;
        let numbers: Vec<usize> = rows.iter().map(|r| r.number).collect();
        write_per_token(per_token, &numbers, &scored)
    }

    /// Rank of each row within its run of equal group values: 1 = highest score.
    fn ranks_within_groups(rows: &[Row], group: usize, scores: &[f64]) -> Vec<usize> {
        let mut ranks = vec![0; rows.len()];
        let mut start = 0;
        while start < rows.len() {
            let key = rows[start].fields.get(group);
            let end = (start..rows.len())
                .find(|&i| rows[i].fields.get(group) != key)
                .unwrap_or(rows.len());
            let mut order: Vec<usize> = (start..end).collect();
            // Stable: equal scores keep file order.
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            for (rank, &i) in order.iter().enumerate() {
                ranks[i] = rank + 1;
            }
            start = end;
        }
        ranks
    }
}
