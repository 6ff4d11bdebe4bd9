//! The `rnnlm` command line: parses arguments and calls the library ([`cli`]).

mod cli;

use clap::{CommandFactory, FromArgMatches};
use rnnlm::device::DeviceUnavailable;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_log_level().into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    let matches = cli::Cli::command().get_matches();
    let parsed = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = rnnlm::files::remove_temporaries_on_signal() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match cli::guarded(|| cli::run(parsed.command, &matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<DeviceUnavailable>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `info`, or `warn` on a rank other than 0 of a distributed run: one voice, rank 0's.
fn default_log_level() -> &'static str {
    match std::env::var("RANK")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    {
        Some(rank) if rank > 0 => "warn",
        _ => "info",
    }
}
