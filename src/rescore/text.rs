//! Plain text: one sentence per line, with a corpus summary in SRILM's `-ppl` terms.

use super::combine::LmScores;
use super::nbest::word_count;
use super::{input_name, open_input, open_per_token, write_per_token};
use super::{ScoreOptions, ScoreSummary, Scorer};
use crate::report::rescore::{ReportCandidate, RescoreReport};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};

/// Prints logprob, log10prob, perplexity, tokens, oov_count and the sentence per line,
/// and a corpus summary on stderr (see [`srilm_summary`]).
pub(super) fn score_text(
    scorer: &Scorer,
    options: &ScoreOptions,
    progress: &crate::progress::Progress,
    report: &mut Option<RescoreReport>,
) -> Result<ScoreSummary> {
    let name = input_name(options.input.as_deref());
    let mut reader = BufReader::new(open_input(options.input.as_deref())?);
    let mut sink = super::Sink::create(options.output.as_deref(), b'\t')?;
    let mut per_token = open_per_token(options)?;
    sink.writer.write_record([
        "logprob",
        "log10prob",
        "perplexity",
        "tokens",
        "oov_count",
        "sentence",
    ])?;
    let mut summary = ScoreSummary::default();
    let mut line_number = 0;
    let mut empty = 0;
    let mut buffer = Vec::new();
    loop {
        let mut rows = Vec::new();
        let mut sentences = Vec::new();
        while sentences.len() < options.chunk_rows {
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
        let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let scored = scorer.score(&texts, options.batch_size)?;
        for ((sentence, s), &row) in sentences.iter().zip(&scored).zip(&rows) {
            if let Some(report) = report.as_mut() {
                let lm = LmScores {
                    forward: s.log_prob(),
                    ..LmScores::default()
                };
                report.add(
                    &format!("line {row}"),
                    &[ReportCandidate {
                        row,
                        text: sentence,
                        scored: s,
                        lm,
                        am: None,
                        words: word_count(sentence),
                        score: None,
                        rank: 1,
                    }],
                )?;
            }
            let lp = s.log_prob();
            let n = s.tokens.len();
            let ppl = (-lp / n as f64).exp();
            let digits = options.digits;
            sink.writer.write_record([
                format!("{lp:.digits$}"),
                format!("{:.digits$}", lp / std::f64::consts::LN_10),
                format!("{ppl:.3}"),
                n.to_string(),
                s.oov_count.to_string(),
                sentence.clone(),
            ])?;
            summary.add(s);
        }
        write_per_token(&mut per_token, &rows, &scored)?;
        sink.release()?;
        progress.inc(sentences.len() as u64);
        (options.between_chunks)()?;
    }
    if let Some(report) = report.take() {
        report.finish()?;
    }
    sink.commit()?;
    if let Some(sink) = per_token {
        sink.commit()?;
    }
    eprintln!("{}", srilm_summary(&name, &summary, empty));
    Ok(summary)
}

/// The corpus summary with SRILM's fields and meanings: `logprob=` is log10, `ppl=`
/// counts every token with `</s>` (here `<EOS>`), `ppl1=` the words alone. Unlike
/// SRILM, which skips OOVs, the OOVs are scored (by the `--oov` policy) and counted.
pub fn srilm_summary(name: &str, summary: &ScoreSummary, empty_lines: usize) -> String {
    let log10prob = summary.log_prob / std::f64::consts::LN_10;
    let words = summary.tokens.saturating_sub(summary.rows);
    let ppl = |count: usize| 10f64.powf(-log10prob / count.max(1) as f64);
    format!(
        "file {name}: {} sentences, {words} words, {} OOVs, {empty_lines} empty lines skipped\nlogprob= {log10prob:.2} ppl= {:.2} ppl1= {:.2} (log10; OOVs scored, not skipped)",
        summary.rows,
        summary.oov_count,
        ppl(summary.tokens),
        ppl(words),
    )
}
