//! CSV and Kaldi N-best input: score, combine, rank and write CSV.

use super::combine::{ranks, LmScores};
use super::groups::{score_groups, Models, ScoredChunk};
use super::nbest::{word_count, CandidateRows, Columns, RowReader};
use super::report::{ReportCandidate, RescoreReport};
use super::{finish_outputs, input_name, open_input, open_per_token, write_per_token};
use super::{ScoreOptions, ScoreSummary, Scorer, Sink};
use anyhow::{bail, Result};
use std::io::Write;

/// What the output adds to each row.
struct Layout {
    columns: Columns,
    /// A `score` column: there is something to combine.
    score: bool,
    /// A `backward_logprob` column.
    backward: bool,
}

/// Scores every row, in chunks that never split a group, and writes the input
/// columns followed by the scores.
pub(super) fn score_rows(
    forward: &Scorer,
    backward: Option<&Scorer>,
    options: &ScoreOptions,
    progress: &crate::progress::Progress,
    report: &mut Option<RescoreReport>,
) -> Result<ScoreSummary> {
    let name = input_name(options.input.as_deref());
    let reader = RowReader::new(
        open_input(options.input.as_deref())?,
        options.format,
        &name,
        options.columns.headerless.as_deref(),
    )?;
    let columns = Columns::find(&reader, &options.columns, &name)?;
    let layout = Layout {
        score: columns.am.is_some()
            || columns.ngram.is_some()
            || options.weights.length_penalty != 0.0
            || backward.is_some(),
        backward: backward.is_some(),
        columns,
    };
    let mut sink = Sink::create(options.output.as_deref(), b',')?;
    let mut per_token = open_per_token(options)?;
    if options.columns.headerless.is_none() {
        sink.writer
            .write_record(&output_header(reader.headers(), &layout, &name)?)?;
    }
    let mut summary = ScoreSummary::default();
    let mut bad_rows = 0;
    let mut rows = CandidateRows::new(reader, &layout.columns, &name)
        .with_max_candidates(options.columns.max_candidates)?;
    let models = Models {
        forward: Some(forward),
        backward,
    };
    let bad = |line, row, reason: &str| bad_row(options, &mut bad_rows, &name, line, row, reason);
    score_groups(
        &mut rows,
        options.chunk_rows,
        models,
        options.batch_size,
        bad,
        |chunk| {
            let combined = Combined::of(&chunk, options, &layout);
            if let Some(report) = report.as_mut() {
                add_to_report(report, &chunk, &combined, &layout)?;
            }
            write_rows(&mut sink.writer, &chunk, &combined, options, &layout)?;
            chunk.scored.iter().for_each(|s| summary.add(s));
            let rows: Vec<usize> = chunk.candidates.iter().map(|c| c.row).collect();
            write_per_token(&mut per_token, &rows, &chunk.scored)?;
            sink.release()?;
            progress.inc(chunk.candidates.len() as u64);
            (options.between_chunks)()
        },
    )?;
    summary.bad_rows = bad_rows;
    finish_outputs(report, sink, per_token)?;
    if bad_rows > 0 {
        eprintln!("{name}: {bad_rows} bad rows skipped");
    }
    Ok(summary)
}

/// The input's columns and then the ones `score` adds; an input that already has one
/// of those (a file `score` wrote, scored again) is refused, since its output would
/// name two columns alike.
fn output_header(
    headers: &csv::StringRecord,
    layout: &Layout,
    name: &str,
) -> Result<csv::StringRecord> {
    let mut header = headers.clone();
    header.extend(["tokens", "oov_count", "logprob", "log10prob", "perplexity"]);
    if layout.backward {
        header.push_field("backward_logprob");
    }
    if layout.columns.ngram.is_some() || layout.backward {
        header.push_field("lm_logprob");
    }
    if layout.score {
        header.push_field("score");
    }
    if layout.columns.group.is_some() {
        header.extend(["rank", "best"]);
    }
    if let Some(added) = header
        .iter()
        .skip(headers.len())
        .find(|c| headers.iter().any(|h| h == *c))
    {
        anyhow::bail!(
            "{name}: line 1: the input already has a '{added}' column, which score writes (a file score wrote?); score the original file, or rename that column"
        );
    }
    Ok(header)
}

/// Stops at a bad row, or with `--skip-bad` reports it and counts it.
fn bad_row(
    options: &ScoreOptions,
    bad_rows: &mut usize,
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
    *bad_rows += 1;
    Ok(())
}

/// A chunk's scores combined with the first pass, and ranked within each group.
struct Combined {
    lm: Vec<LmScores>,
    words: Vec<usize>,
    scores: Vec<f64>,
    ranks: Vec<usize>,
}

impl Combined {
    fn of(chunk: &ScoredChunk, options: &ScoreOptions, layout: &Layout) -> Self {
        let columns = &layout.columns;
        let weights = &options.weights;
        let lm: Vec<LmScores> = chunk
            .candidates
            .iter()
            .zip(&chunk.scored)
            .enumerate()
            .map(|(i, (c, s))| LmScores {
                forward: s.log_prob(),
                backward: chunk.backward.as_ref().map(|b| b[i]),
                ngram: c.ngram,
            })
            .collect();
        let words: Vec<usize> = chunk
            .candidates
            .iter()
            .map(|c| word_count(c.text(columns)))
            .collect();
        let scores: Vec<f64> = chunk
            .candidates
            .iter()
            .zip(&lm)
            .zip(&words)
            .map(|((c, lm), &n)| weights.score(c.am, lm, n))
            .collect();
        let rank_by: Vec<f64> = match layout.score {
            true => scores.clone(),
            false => lm.iter().map(|l| l.forward).collect(),
        };
        let mut group_ranks = vec![0; chunk.candidates.len()];
        for range in &chunk.groups {
            group_ranks[range.clone()].copy_from_slice(&ranks(&rank_by[range.clone()]));
        }
        Combined {
            lm,
            words,
            scores,
            ranks: group_ranks,
        }
    }
}

/// Hands each group of the chunk to the HTML report.
fn add_to_report(
    report: &mut RescoreReport,
    chunk: &ScoredChunk,
    combined: &Combined,
    layout: &Layout,
) -> Result<()> {
    let columns = &layout.columns;
    for range in &chunk.groups {
        let rows: Vec<ReportCandidate> = range
            .clone()
            .map(|i| ReportCandidate {
                row: chunk.candidates[i].row,
                text: chunk.candidates[i].text(columns),
                scored: &chunk.scored[i],
                lm: combined.lm[i],
                am: chunk.candidates[i].am,
                words: combined.words[i],
                score: layout.score.then_some(combined.scores[i]),
                rank: combined.ranks[i],
            })
            .collect();
        let first = &chunk.candidates[range.start];
        let id = match first.group(columns) {
            Some(group) => group.to_string(),
            None => format!("row {}", first.row),
        };
        report.add(&id, &rows)?;
    }
    Ok(())
}

/// Writes the chunk's rows: the input's fields, then the scores.
fn write_rows(
    writer: &mut csv::Writer<impl Write>,
    chunk: &ScoredChunk,
    combined: &Combined,
    options: &ScoreOptions,
    layout: &Layout,
) -> Result<()> {
    let digits = options.digits;
    for (i, (c, s)) in chunk.candidates.iter().zip(&chunk.scored).enumerate() {
        let lp = s.log_prob();
        let n = s.tokens.len();
        let mut out = c.fields.clone();
        out.push_field(&n.to_string());
        out.push_field(&s.oov_count.to_string());
        out.push_field(&format!("{lp:.digits$}"));
        out.push_field(&format!("{:.digits$}", lp / std::f64::consts::LN_10));
        out.push_field(&format!("{:.3}", (-lp / n as f64).exp()));
        if let Some(b) = combined.lm[i].backward {
            out.push_field(&format!("{b:.digits$}"));
        }
        if layout.columns.ngram.is_some() || layout.backward {
            out.push_field(&format!("{:.digits$}", options.weights.lm(&combined.lm[i])));
        }
        if layout.score {
            out.push_field(&format!("{:.digits$}", combined.scores[i]));
        }
        if layout.columns.group.is_some() {
            out.push_field(&combined.ranks[i].to_string());
            out.push_field(if combined.ranks[i] == 1 {
                "true"
            } else {
                "false"
            });
        }
        writer.write_record(&out)?;
    }
    writer.flush()?;
    Ok(())
}
