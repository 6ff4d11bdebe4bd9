//! `rnnlm tune`.

use super::args::{ColumnArgs, DeviceArgs, OovArgs};
use super::values::{positive, values, Values};
use anyhow::{Context, Result};
use clap::Args;
use rnnlm::checkpoint::{LoadedModel, ModelDir};
use rnnlm::oov::OovPolicy;
use rnnlm::rescore::Format;
use rnnlm::score::SCORE_BATCH;
use rnnlm::tune::{Grid, SearchMethod, TuneOptions};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct TuneArgs {
    /// Model directory (not needed with --scored).
    #[arg(long, required_unless_present = "scored")]
    pub(crate) model: Option<PathBuf>,
    /// Dev N-best list.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// CSV with utterance_id,reference.
    #[arg(long, required_unless_present = "reference_column")]
    pub(crate) references: Option<PathBuf>,
    /// Column of the input with each candidate's reference, instead of --references.
    #[arg(long, conflicts_with = "references")]
    pub(crate) reference_column: Option<String>,
    /// The input was written by `rnnlm score`: read its logprob column instead of
    /// running a model. The values are as rounded as score wrote them (`--digits`, 4
    /// by default), so near-ties can rank otherwise than with --model; score with
    /// `--digits 17` to rank the same.
    #[arg(long, conflicts_with = "model")]
    pub(crate) scored: bool,
    #[command(flatten)]
    pub(crate) columns: ColumnArgs,
    #[command(flatten)]
    pub(crate) oov: OovArgs,
    /// lm_weight values to search: START:END:STEP, A,B,C or one value.
    #[arg(long, default_value = "0:3:0.1", value_parser = values, allow_hyphen_values = true)]
    pub(crate) lm_weights: Values,
    /// length_penalty values to search (per word).
    #[arg(long, default_value = "-5:5:0.5", value_parser = values, allow_hyphen_values = true)]
    pub(crate) length_penalties: Values,
    /// ngram_weight values to search, in [0, 1] (with --ngram-column).
    #[arg(long, default_value = "0:1:0.1", value_parser = values, requires = "ngram_column")]
    pub(crate) ngram_weights: Values,
    /// A backward model (trained with --reverse) to mix in; its weight is searched too.
    /// With --scored, the model whose `backward_logprob` column `score` wrote: the
    /// column is read, and the model only named in the printed flags.
    #[arg(long)]
    pub(crate) backward_model: Option<PathBuf>,
    /// backward_weight values to search, in [0, 1] (with --backward-model).
    #[arg(long, default_value = "0:1:0.1", value_parser = values, requires = "backward_model")]
    pub(crate) backward_weights: Values,
    /// How the weights are searched: line (exact line searches from the best points of
    /// a coarse cut of the grids, each to the middle of the best plateau) or grid (the
    /// grids at growing scales, refined around the best).
    #[arg(long, value_enum, default_value = "line")]
    pub(crate) search: SearchMethod,
    /// With --search line: search this many resamples of the dev lists (drawn with
    /// replacement) and take the mean of their weights, which carries to other lists
    /// better than one search's; 1 searches the lists themselves [default: 64 for 100
    /// lists or more, else 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) bags: Option<u32>,
    /// Search the given grid alone: no widening where the best value sits at a range's
    /// end, no refinement around the best, no line search.
    #[arg(long)]
    pub(crate) grid_only: bool,
    /// Apply each row's weights from an earlier `tune --json` report (or --save file)
    /// instead of searching: dev-tuned weights on a test set.
    #[arg(long)]
    pub(crate) apply: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub(crate) save: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also draw a PNG of WER against lm_weight and over lm_weight × length_penalty,
    /// around the chosen weights.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = SCORE_BATCH, value_parser = positive)]
    pub(crate) batch_size: usize,
    /// Run the candidates' shared prefixes (a backward model's shared suffixes) through
    /// the network once: on or off. The numbers are the same either way.
    #[arg(long, default_value = "on", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub(crate) prefix_sharing: bool,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

/// The forward model and the backward one that `args` name (none with `--scored`).
fn load_models(args: &TuneArgs) -> Result<(Option<LoadedModel>, Option<LoadedModel>)> {
    let Some(dir) = &args.model else {
        return Ok((None, None));
    };
    let device = args.device.resolve()?;
    let forward = match args.backward_model {
        Some(_) => ModelDir::new(dir).load_forward(device)?,
        None => ModelDir::new(dir).load(device)?,
    };
    let backward = match &args.backward_model {
        Some(dir) => Some(ModelDir::new(dir).load_backward(device)?),
        None => None,
    };
    Ok((Some(forward), backward))
}

/// A report that `tune --json` (or `--save`) wrote, for `--apply`.
fn read_report(path: &std::path::Path) -> Result<rnnlm::tune::report::TuneReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a `tune --json` report", path.display()))
}

pub(crate) fn run(args: TuneArgs) -> Result<()> {
    if args.columns.format == Format::Text {
        anyhow::bail!("tune reads N-best lists: --format csv or kaldi");
    }
    for (flag, values) in [
        ("--ngram-weights", &args.ngram_weights.0),
        ("--backward-weights", &args.backward_weights.0),
    ] {
        if let Some(w) = values.iter().find(|w| !(0.0..=1.0).contains(*w)) {
            anyhow::bail!("{flag}: {w} is not in [0, 1]");
        }
    }
    let (loaded, backward) = load_models(&args)?;
    let apply = args.apply.as_deref().map(read_report).transpose()?;
    let options = TuneOptions {
        input: args.input,
        format: args.columns.format,
        columns: args.columns.names(),
        references: args.references,
        reference_column: args.reference_column,
        scored: args.scored,
        oov: args.oov.options(OovPolicy::Divide),
        batch_size: args.batch_size,
        prefix_sharing: args.prefix_sharing,
        grid: Grid {
            lm_weights: args.lm_weights.0,
            length_penalties: args.length_penalties.0,
            ngram_weights: args.ngram_weights.0,
            backward_weights: args.backward_weights.0,
            refine: !args.grid_only,
            method: args.search,
            bags: args.bags.map(|b| b as usize),
        },
        apply,
        backward_model: args.backward_model,
        plot: args.plot,
    };
    let report = rnnlm::tune::tune(loaded.as_ref(), backward.as_ref(), &options)?;
    let json = serde_json::to_string(&report)?;
    if let Some(path) = &args.save {
        rnnlm::files::write_atomic(path, |w| Ok(writeln!(w, "{json}")?))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{json}")?;
    } else {
        write!(out, "{}", rnnlm::tune::report::report_table(&report))?;
    }
    Ok(())
}
