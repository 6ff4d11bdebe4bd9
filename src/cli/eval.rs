//! `rnnlm eval`.

use super::args::{DeviceArgs, OovArgs};
use anyhow::{Context, Result};
use clap::Args;
use rnnlm::checkpoint::ModelDir;
use rnnlm::data::Corpus;
use rnnlm::oov::OovPolicy;
use rnnlm::score::{evaluate, SCORE_BATCH};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) oov: OovArgs,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

pub(crate) fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let loaded = ModelDir::new(&args.model).load(device)?;
    let corpus = Corpus::load(&args.data, &loaded.config.tokenizer, &loaded.vocab)?;
    let oov_options = args.oov.options(OovPolicy::Unk);
    let oov = rnnlm::oov::OovScorer::new(oov_options, loaded.oov.as_ref(), &loaded.dir)?;
    let e = evaluate(&loaded.model, &corpus, SCORE_BATCH, &oov)
        .with_context(|| args.data.display().to_string())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&e)?)?;
    } else {
        let policy = oov_options.policy;
        writeln!(out, "{} (--oov {policy}): {e}", args.data.display())?;
    }
    Ok(())
}
