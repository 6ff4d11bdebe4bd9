//! `rnnlm sample`.

use super::args::DeviceArgs;
use super::values::positive;
use anyhow::{Context, Result};
use clap::Args;
use rnnlm::checkpoint::ModelDir;
use rnnlm::report::steps::StepsOptions;
use rnnlm::sample::Sampler;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct SampleArgs {
    /// Model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Number of sequences.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub(crate) count: usize,
    /// Stop a sequence after this many tokens.
    #[arg(long, default_value_t = 100, value_parser = positive)]
    pub(crate) max_len: usize,
    /// Seed for the draws.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Text to continue (tokenized as the model was trained).
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// Print a tab and the sample's natural-log probability after each sample.
    #[arg(long)]
    pub(crate) show_logprob: bool,
    /// Word level: print tokens separated by single spaces instead of readable text.
    #[arg(long)]
    pub(crate) tokens: bool,
    /// Also write an HTML page of every step: the most likely next tokens, the draw,
    /// and <UNK>'s share (the same samples as without it).
    #[arg(long)]
    pub(crate) steps: Option<PathBuf>,
    /// Next tokens shown per step on the --steps page.
    #[arg(long, default_value_t = 10, value_parser = positive, requires = "steps")]
    pub(crate) top_k: usize,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

pub(crate) fn run(args: SampleArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let loaded = ModelDir::new(&args.model).load(device)?;
    let tokenizer = &loaded.config.tokenizer;
    let prefix: Vec<i64> = match &args.prefix {
        Some(text) => tokenizer
            .tokenize(text)
            .iter()
            .map(|t| loaded.vocab.id(t))
            .collect(),
        None => Vec::new(),
    };
    let mut sampler = Sampler::new(args.seed);
    let start = std::time::Instant::now();
    let samples = match &args.steps {
        Some(path) => rnnlm::report::steps::sample_with_steps(
            &loaded.model,
            &loaded.vocab,
            tokenizer,
            &prefix,
            args.count,
            args.max_len,
            &mut sampler,
            &StepsOptions {
                path,
                model_name: &args.model.display().to_string(),
                top_k: args.top_k,
                seed: args.seed,
            },
        ),
        None => rnnlm::sample::sample(
            &loaded.model,
            &prefix,
            args.count,
            args.max_len,
            &mut sampler,
        ),
    }
    .context("sampling failed")?;
    let seconds = start.elapsed().as_secs_f64();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in &samples {
        let text = s.render(&loaded.vocab, tokenizer, args.tokens);
        if args.show_logprob {
            writeln!(out, "{text}\t{:.4}", s.log_prob)?;
        } else {
            writeln!(out, "{text}")?;
        }
    }
    out.flush()?;
    let cut = samples.iter().filter(|s| s.truncated).count();
    // Drawn tokens: the words or characters after the prefix, and each <EOS>.
    let drawn: usize = samples
        .iter()
        .map(|s| s.tokens.len() - prefix.len() + usize::from(!s.truncated))
        .sum();
    tracing::info!(
        "{} samples, {cut} cut at --max-len {}; {drawn} tokens drawn in {seconds:.3} s: {:.1} tokens/s",
        samples.len(),
        args.max_len,
        drawn as f64 / seconds
    );
    Ok(())
}
