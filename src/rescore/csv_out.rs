//! CSV and Kaldi N-best input: score, combine, rank and write CSV.

use super::combine::{ranks, LmScores};
use super::nbest::{word_count, Candidate, CandidateRows, CheckedRow, Columns, RowReader};
use super::{input_name, open_input, open_per_token, write_per_token};
use super::{ScoreOptions, ScoreSummary, Scorer, Sink};
use crate::report::rescore::{ReportCandidate, RescoreReport};
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
    let mut pending: Vec<Candidate> = Vec::new();
    let mut rows = CandidateRows::new(reader, &layout.columns, &name)
        .with_max_candidates(options.columns.max_candidates)?;
    loop {
        let next = rows.next_row()?;
        let more = next.is_some();
        match next {
            Some(CheckedRow::Candidate(candidate)) => pending.push(candidate),
            Some(CheckedRow::Bad { line, row, reason }) => {
                bad_row(options, &mut summary, &name, line, row, &reason)?
            }
            None => {}
        }
        // Score when the chunk is full, but never split a group across chunks.
        let full = pending.len() >= options.chunk_rows
            && !last_two_in_one_group(&pending, &layout.columns);
        if full || (!more && !pending.is_empty()) {
            let keep = if more { pending.pop() } else { None };
            let scored = flush(
                Models { forward, backward },
                options,
                &layout,
                &pending,
                &mut sink.writer,
                &mut summary,
                report.as_mut(),
            )?;
            let rows: Vec<usize> = pending.iter().map(|c| c.row).collect();
            write_per_token(&mut per_token, &rows, &scored)?;
            sink.release()?;
            progress.inc(pending.len() as u64);
            (options.between_chunks)()?;
            pending.clear();
            pending.extend(keep);
        }
        if !more {
            break;
        }
    }
    if let Some(report) = report.take() {
        report.finish()?;
    }
    sink.commit()?;
    if let Some(sink) = per_token {
        sink.commit()?;
    }
    if summary.bad_rows > 0 {
        eprintln!("{name}: {} bad rows skipped", summary.bad_rows);
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

/// The groups of a chunk, as index ranges; without a group column each row is its own.
fn group_ranges(candidates: &[Candidate], columns: &Columns) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < candidates.len() {
        let end = match candidates[start].group(columns) {
            None => start + 1,
            group => (start..candidates.len())
                .find(|&i| candidates[i].group(columns) != group)
                .unwrap_or(candidates.len()),
        };
        groups.push(start..end);
        start = end;
    }
    groups
}

fn last_two_in_one_group(pending: &[Candidate], columns: &Columns) -> bool {
    match pending {
        [.., a, b] => a.group(columns).is_some() && a.group(columns) == b.group(columns),
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

/// The forward model and, for fwd+bwd rescoring, the backward one.
struct Models<'a, 'm> {
    forward: &'a Scorer<'m>,
    backward: Option<&'a Scorer<'m>>,
}

/// Scores and writes whole groups; returns the scores for the per-token file.
fn flush(
    Models { forward, backward }: Models,
    options: &ScoreOptions,
    layout: &Layout,
    candidates: &[Candidate],
    writer: &mut csv::Writer<impl Write>,
    summary: &mut ScoreSummary,
    report: Option<&mut RescoreReport>,
) -> Result<Vec<super::Scored>> {
    let columns = &layout.columns;
    let texts: Vec<&str> = candidates.iter().map(|c| c.text(columns)).collect();
    let scored = forward.score(&texts, options.batch_size)?;
    let backward_log_probs = match backward {
        Some(b) => Some(b.log_probs(&texts, options.batch_size)?),
        None => None,
    };
    let weights = &options.weights;
    let lm_scores: Vec<LmScores> = candidates
        .iter()
        .zip(&scored)
        .enumerate()
        .map(|(i, (c, s))| LmScores {
            forward: s.log_prob(),
            backward: backward_log_probs.as_ref().map(|b| b[i]),
            ngram: c.ngram,
        })
        .collect();
    let words: Vec<usize> = texts.iter().map(|t| word_count(t)).collect();
    let scores: Vec<f64> = candidates
        .iter()
        .zip(&lm_scores)
        .zip(&words)
        .map(|((c, lm), &n)| weights.score(c.am, lm, n))
        .collect();
    let rank_by: Vec<f64> = if layout.score {
        scores.clone()
    } else {
        scored.iter().map(|s| s.log_prob()).collect()
    };
    let groups = group_ranges(candidates, columns);
    let mut group_ranks = vec![0; candidates.len()];
    for range in &groups {
        group_ranks[range.clone()].copy_from_slice(&ranks(&rank_by[range.clone()]));
    }
    if let Some(report) = report {
        for range in &groups {
            let rows: Vec<ReportCandidate> = range
                .clone()
                .map(|i| ReportCandidate {
                    row: candidates[i].row,
                    text: texts[i],
                    scored: &scored[i],
                    lm: lm_scores[i],
                    am: candidates[i].am,
                    words: words[i],
                    score: layout.score.then_some(scores[i]),
                    rank: group_ranks[i],
                })
                .collect();
            let first = &candidates[range.start];
            let id = match first.group(columns) {
                Some(group) => group.to_string(),
                None => format!("row {}", first.row),
            };
            report.add(&id, &rows)?;
        }
    }
    for (i, (c, s)) in candidates.iter().zip(&scored).enumerate() {
        let lp = s.log_prob();
        let n = s.tokens.len();
        let mut out = c.fields.clone();
        out.push_field(&n.to_string());
        out.push_field(&s.oov_count.to_string());
        let digits = options.digits;
        out.push_field(&format!("{lp:.digits$}"));
        out.push_field(&format!("{:.digits$}", lp / std::f64::consts::LN_10));
        out.push_field(&format!("{:.3}", (-lp / n as f64).exp()));
        if let Some(b) = lm_scores[i].backward {
            out.push_field(&format!("{b:.digits$}"));
        }
        if columns.ngram.is_some() || layout.backward {
            out.push_field(&format!("{:.digits$}", weights.lm(&lm_scores[i])));
        }
        if layout.score {
            out.push_field(&format!("{:.digits$}", scores[i]));
        }
        if columns.group.is_some() {
            out.push_field(&group_ranks[i].to_string());
            out.push_field(if group_ranks[i] == 1 { "true" } else { "false" });
        }
        writer.write_record(&out)?;
        summary.add(s);
    }
    writer.flush()?;
    Ok(scored)
}
