//! Plain text: one sentence per line, with a corpus summary in SRILM's `-ppl` terms.

use super::combine::LmScores;
use super::groups::{score_groups, Models};
use super::nbest::{word_count, CandidateRows, ColumnNames, Columns, LogBase, RowReader};
use super::report::{ReportCandidate, RescoreReport};
use super::{finish_outputs, input_name, open_input, open_per_token, write_per_token};
use super::{Format, ScoreOptions, ScoreSummary, Scored, Scorer};
use anyhow::{bail, Result};

/// Prints logprob, log10prob, perplexity, tokens, oov_count and the sentence per line,
/// and a corpus summary on stderr (see [`srilm_summary`]). Each line is a group of
/// one; the per-token file and the report number sentences by their line.
pub(super) fn score_text(
    scorer: &Scorer,
    options: &ScoreOptions,
    progress: &crate::progress::Progress,
    report: &mut Option<RescoreReport>,
) -> Result<ScoreSummary> {
    let name = input_name(options.input.as_deref());
    let (reader, columns) = open_text(options, &name)?;
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
    let mut bad_rows = 0;
    let mut rows = CandidateRows::new(reader, &columns, &name);
    let models = Models {
        forward: Some(scorer),
        backward: None,
    };
    let bad = |line, _row, reason: &str| {
        let message = format!("{name}:{line}: {reason}");
        if !options.skip_bad {
            bail!(message);
        }
        eprintln!("skipped: {message}");
        bad_rows += 1;
        Ok(())
    };
    score_groups(
        &mut rows,
        options.chunk_rows,
        models,
        options.batch_size,
        bad,
        |chunk| {
            let lines: Vec<usize> = chunk.candidates.iter().map(|c| c.line as usize).collect();
            for ((candidate, s), &line) in chunk.candidates.iter().zip(&chunk.scored).zip(&lines) {
                let sentence = candidate.text(&columns);
                if let Some(report) = report.as_mut() {
                    report.add(&format!("line {line}"), &[report_row(line, sentence, s)])?;
                }
                write_line(&mut sink.writer, sentence, s, options.digits)?;
                summary.add(s);
            }
            write_per_token(&mut per_token, &lines, &chunk.scored)?;
            sink.release()?;
            progress.inc(chunk.candidates.len() as u64);
            (options.between_chunks)()
        },
    )?;
    summary.bad_rows = bad_rows;
    let empty = rows.empty_lines();
    finish_outputs(report, sink, per_token)?;
    eprintln!("{}", srilm_summary(&name, &summary, empty));
    Ok(summary)
}

/// The input's lines, read as rows of one `sentence` column.
fn open_text(options: &ScoreOptions, name: &str) -> Result<(RowReader, Columns)> {
    let reader = RowReader::new(
        open_input(options.input.as_deref())?,
        Format::Text,
        name,
        None,
    )?;
    let names = ColumnNames {
        text: "sentence".to_string(),
        group: None,
        am: None,
        ngram: None,
        ngram_base: LogBase::E,
        headerless: None,
        max_candidates: None,
    };
    let columns = Columns::find(&reader, &names, name)?;
    Ok((reader, columns))
}

/// A line as the report shows it: one candidate, its own group.
fn report_row<'a>(line: usize, sentence: &'a str, scored: &'a Scored) -> ReportCandidate<'a> {
    ReportCandidate {
        row: line,
        text: sentence,
        scored,
        lm: LmScores {
            forward: scored.log_prob(),
            ..LmScores::default()
        },
        am: None,
        words: word_count(sentence),
        score: None,
        rank: 1,
    }
}

/// One output line: logprob, log10prob, perplexity, tokens, oov_count, sentence.
fn write_line(
    writer: &mut csv::Writer<impl std::io::Write>,
    sentence: &str,
    scored: &Scored,
    digits: usize,
) -> Result<()> {
    let lp = scored.log_prob();
    let n = scored.tokens.len();
    writer.write_record([
        format!("{lp:.digits$}"),
        format!("{:.digits$}", lp / std::f64::consts::LN_10),
        format!("{:.3}", (-lp / n as f64).exp()),
        n.to_string(),
        scored.oov_count.to_string(),
        sentence.to_string(),
    ])?;
    Ok(())
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
