//! `rnnlm score`.

use super::args::{ColumnArgs, DeviceArgs, OovArgs};
use super::values::{finite, positive, unit_interval};
use anyhow::Result;
use clap::Args;
use rnnlm::checkpoint::ModelDir;
use rnnlm::oov::OovPolicy;
use rnnlm::rescore::combine::Weights;
use rnnlm::rescore::report::{ReportOptions, ReportOrder};
use rnnlm::rescore::ScoreOptions;
use rnnlm::score::SCORE_BATCH;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ScoreArgs {
    /// Model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Input file, or - for standard input.
    #[arg(long, default_value = "-")]
    pub(crate) input: String,
    /// Output file, or - for standard output.
    #[arg(long, default_value = "-")]
    pub(crate) output: String,
    #[command(flatten)]
    pub(crate) columns: ColumnArgs,
    #[command(flatten)]
    pub(crate) oov: OovArgs,
    /// score = am + lm_weight * lm + length_penalty * words.
    #[arg(long, default_value = "1", value_parser = finite, allow_hyphen_values = true)]
    pub(crate) lm_weight: f64,
    /// Added to score per word of the hypothesis (negative: an insertion penalty).
    #[arg(long, default_value = "0", value_parser = finite, allow_hyphen_values = true)]
    pub(crate) length_penalty: f64,
    /// lm = (1 - b - w) * logprob + b * backward + w * ngram, with the n-gram score in
    /// natural log.
    #[arg(long, default_value = "0", value_parser = unit_interval, requires = "ngram_column")]
    pub(crate) ngram_weight: f64,
    /// A backward model (trained with --reverse) whose log-probability is mixed in.
    #[arg(long)]
    pub(crate) backward_model: Option<PathBuf>,
    /// The backward model's share b of lm, in [0, 1]; b + ngram_weight is at most 1.
    #[arg(long, default_value = "0", value_parser = unit_interval, requires = "backward_model")]
    pub(crate) backward_weight: f64,
    /// Report bad rows on stderr and score the good ones instead of stopping.
    #[arg(long)]
    pub(crate) skip_bad: bool,
    /// Write per-token log-probabilities (row, position, token, logprob) to this CSV file.
    #[arg(long)]
    pub(crate) per_token: Option<PathBuf>,
    /// Sentences per forward pass (similar lengths are batched together).
    #[arg(long, default_value_t = SCORE_BATCH, value_parser = positive)]
    pub(crate) batch_size: usize,
    /// Run the candidates' shared prefixes (a backward model's shared suffixes) through
    /// the network once: on or off. The numbers are the same either way; the saving is
    /// logged.
    #[arg(long, default_value = "on", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub(crate) prefix_sharing: bool,
    /// Rows read and scored at a time (a group of candidates is never split; memory
    /// grows with it).
    #[arg(long, default_value_t = rnnlm::rescore::CHUNK_ROWS, value_parser = positive)]
    pub(crate) chunk_rows: usize,
    /// Decimals of the logprob, log10prob, backward_logprob, lm and score columns
    /// (1 to 17). `tune --scored` ranks by the values it reads back, so at 4 a near-tie
    /// can rank otherwise than a run on the model; 17 ranks exactly the same.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=17))]
    pub(crate) digits: usize,
    /// Also write a self-contained HTML report of the scored rows to this file.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Utterances (or text lines) the report shows at most.
    #[arg(long, default_value_t = 1000, value_parser = positive, requires = "report")]
    pub(crate) report_limit: usize,
    /// Which utterances the report shows when there are more than --report-limit.
    #[arg(long, value_enum, default_value = "file", requires = "report")]
    pub(crate) report_order: ReportOrder,
    /// CSV with utterance_id,reference: the report shows each candidate's word errors.
    #[arg(long, requires = "report")]
    pub(crate) references: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

pub(crate) fn path_or_std(arg: &str) -> Option<PathBuf> {
    (arg != "-").then(|| PathBuf::from(arg))
}

pub(crate) fn run(args: ScoreArgs) -> Result<()> {
    if args.backward_weight + args.ngram_weight > 1.0 + 1e-9 {
        anyhow::bail!(
            "--backward-weight {} and --ngram-weight {} sum to more than 1",
            args.backward_weight,
            args.ngram_weight
        );
    }
    let device = args.device.resolve()?;
    let model = ModelDir::new(&args.model);
    let (loaded, backward) = match &args.backward_model {
        Some(dir) => (
            model.load_forward(device)?,
            Some(ModelDir::new(dir).load_backward(device)?),
        ),
        None => (model.load(device)?, None),
    };
    let options = ScoreOptions {
        input: path_or_std(&args.input),
        output: path_or_std(&args.output),
        format: args.columns.format,
        columns: args.columns.names(),
        weights: Weights {
            lm_weight: args.lm_weight,
            length_penalty: args.length_penalty,
            ngram_weight: args.ngram_weight,
            backward_weight: args.backward_weight,
        },
        oov: args.oov.options(OovPolicy::Divide),
        skip_bad: args.skip_bad,
        per_token: args.per_token,
        batch_size: args.batch_size,
        digits: args.digits,
        chunk_rows: args.chunk_rows,
        between_chunks: rnnlm::rescore::never_stop,
        prefix_sharing: args.prefix_sharing,
        report: args.report.map(|path| ReportOptions {
            path,
            limit: args.report_limit,
            order: args.report_order,
            references: args.references,
        }),
    };
    let start = std::time::Instant::now();
    let summary = rnnlm::rescore::score_file(&loaded, backward.as_ref(), &options)?;
    let seconds = start.elapsed().as_secs_f64();
    tracing::info!(
        "scored {} sentences ({} tokens) in {seconds:.3} s: {:.1} sentences/s",
        summary.rows,
        summary.tokens,
        summary.rows as f64 / seconds
    );
    let work = summary.work;
    if args.prefix_sharing && work.tokens > 0 {
        tracing::info!(
            "prefix sharing: {} recurrent steps and {} output rows for {} tokens ({:.2}x and {:.2}x fewer)",
            work.recurrent_steps,
            work.output_rows,
            work.tokens,
            work.tokens as f64 / work.recurrent_steps.max(1) as f64,
            work.tokens as f64 / work.output_rows.max(1) as f64
        );
    }
    Ok(())
}
