//! Plain text: one sentence per line, scored like SRILM's `-ppl`.

use super::{input_name, open_input, open_per_token, score_sentences, write_per_token};
use super::{ScoreOptions, ScoreSummary, CHUNK_ROWS};
use crate::checkpoint::LoadedModel;
use crate::oov::OovScorer;
use crate::score::Evaluation;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};

/// Prints logprob, log10prob, perplexity, tokens, oov and the sentence per line, and a
/// corpus summary on stderr.
pub(super) fn score_text(
    model: &LoadedModel,
    oov: &OovScorer,
    options: &ScoreOptions,
    progress: &indicatif::ProgressBar,
) -> Result<ScoreSummary> {
    let name = input_name(options.input.as_deref());
    let mut reader = BufReader::new(open_input(options.input.as_deref())?);
    let mut sink = super::Sink::create(options.output.as_deref())?;
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
        let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let scored = score_sentences(model, oov, &texts, options.batch_size)?;
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
