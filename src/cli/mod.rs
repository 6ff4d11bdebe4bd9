//! The command line: one module per command, and the argument groups and value
//! checks they share. Each command parses its flags into the library's options and
//! calls the library.

mod args;
mod errors;
mod eval;
pub(crate) mod malloc;
mod sample;
mod score;
mod train;
mod tune;
mod values;

use clap::{Parser, Subcommand};
use eval::EvalArgs;
use sample::SampleArgs;
use score::ScoreArgs;
use train::TrainArgs;
use tune::TuneArgs;

pub(crate) use errors::{guarded, is_broken_pipe};

/// Word- and character-level recurrent language models: train, evaluate, score
/// (rescore speech-recognition candidates), sample.
#[derive(Parser)]
#[command(name = "rnnlm", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train a model on DIR/train.txt, validating on DIR/valid.txt (or --valid).
    Train(TrainArgs),
    /// Perplexity of a text file, every line scored on its own from zero state.
    Eval(EvalArgs),
    /// Log-probability of every sentence of a CSV (or text) file.
    Score(ScoreArgs),
    /// Draw new sequences from a trained model.
    Sample(SampleArgs),
    /// Choose --lm-weight, --length-penalty, --ngram-weight and --backward-weight on a
    /// dev N-best set by WER.
    Tune(TuneArgs),
}

/// Runs `command`; `matches` are the parsed arguments, for what was given explicitly.
pub(crate) fn run(command: Command, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => train::run(args, matches.subcommand_matches("train")),
        Command::Eval(args) => eval::run(args),
        Command::Score(args) => score::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Tune(args) => tune::run(args),
    }
}
