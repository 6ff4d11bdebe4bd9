//! The `rnnlm` command line: parses arguments and calls the library.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use rnnlm::checkpoint::ModelDir;
use rnnlm::data::Corpus;
use rnnlm::device::{DeviceChoice, DeviceUnavailable};
use rnnlm::model::{Cell, ModelConfig};
use rnnlm::oov::{OovOptions, OovPolicy};
use rnnlm::output::OutputConfig;
use rnnlm::rescore::combine::Weights;
use rnnlm::rescore::nbest::{ColumnNames, LogBase};
use rnnlm::rescore::{Format, ScoreOptions};
use rnnlm::sample::Sampler;
use rnnlm::score::{evaluate, SCORE_BATCH};
use rnnlm::train::{LrSchedule, OptimizerKind, TrainConfig};
use rnnlm::tune::{parse_range, Grid, TuneOptions};
use rnnlm::vocab::{Level, Tokenizer, VocabLimits};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Word- and character-level recurrent language models: train, evaluate, score
/// (rescore speech-recognition candidates), sample.
#[derive(Parser)]
#[command(name = "rnnlm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on DIR/train.txt, validating on DIR/valid.txt.
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

/// The output layer `train` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SoftmaxKind {
    /// A softmax over the whole vocabulary.
    Full,
    /// A head of frequent words and clusters of rarer ones.
    Class,
}

/// The values of one weight that `tune` searches.
#[derive(Clone, Debug)]
struct Values(Vec<f64>);

fn values(text: &str) -> Result<Values, String> {
    parse_range(text).map(Values)
}

/// A finite number.
fn finite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("'{text}' is not a finite number")),
    }
}

/// A number in [0, 1].
fn unit_interval(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if (0.0..=1.0).contains(&v) => Ok(v),
        v => Err(format!("{v} is not in [0, 1]")),
    }
}

/// A layer size or count: a whole number of at least 1.
fn size(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

/// A dropout probability, in [0, 1).
fn dropout_rate(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if (0.0..1.0).contains(&v) => Ok(v),
        v => Err(format!("{v} is not in [0, 1)")),
    }
}

/// A number above 0.
fn positive_number(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if v > 0.0 => Ok(v),
        v => Err(format!("{v} is not above 0")),
    }
}

/// A number of at least 0.
fn non_negative(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if v >= 0.0 => Ok(v),
        v => Err(format!("{v} is below 0")),
    }
}

/// A decay factor, in (0, 1].
fn decay(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if v > 0.0 && v <= 1.0 => Ok(v),
        v => Err(format!("{v} is not in (0, 1]")),
    }
}

/// A whole number of at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

/// A number of decimals, 1 to 17 (all that an f64 holds).
fn decimals(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(v) if (1..=17).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not a whole number in 1..=17")),
    }
}

/// The most CPU threads `--threads` takes.
const MAX_THREADS: i32 = 1024;

/// A thread count in 1..=[`MAX_THREADS`].
fn thread_count(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(v) if (1..=MAX_THREADS).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{text}' is not a whole number in 1..={MAX_THREADS}"
        )),
    }
}

#[derive(Args)]
struct OovArgs {
    /// Out-of-vocabulary words: divide (<UNK>'s probability times the word's share of
    /// the <UNK> class) or unk (<UNK>'s probability itself).
    #[arg(long, value_enum)]
    oov: Option<OovPolicy>,
    /// Added (natural log) to the log-probability per out-of-vocabulary token.
    #[arg(long, default_value = "0", value_parser = finite, allow_hyphen_values = true)]
    oov_penalty: f64,
}

impl OovArgs {
    fn options(&self, default: OovPolicy) -> OovOptions {
        OovOptions {
            policy: self.oov.unwrap_or(default),
            penalty: self.oov_penalty,
        }
    }
}

#[derive(Args)]
struct ColumnArgs {
    /// Input format: CSV with a header, Kaldi N-best text (uttid-N w1 w2 …), or plain
    /// text with one sentence per line (score only).
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Column with the sentence.
    #[arg(long, default_value = "sentence")]
    text_column: String,
    /// Column that groups the candidates of one utterance (default: utterance_id when present).
    #[arg(long)]
    group_column: Option<String>,
    /// Column with a first-pass acoustic log score (natural log), combined into `score`.
    #[arg(long)]
    am_column: Option<String>,
    /// Column with a first-pass n-gram LM log score of each hypothesis.
    #[arg(long)]
    ngram_column: Option<String>,
    /// Base of the n-gram column's logarithms: 10 (as ARPA tools print) or e.
    #[arg(long, value_enum, default_value = "10")]
    ngram_log_base: LogBase,
    /// The CSV input has no header row (nor will the output): name its columns with
    /// --columns. For engines that pipe raw lines (Dask, Spark's RDD.pipe).
    #[arg(long, requires = "columns")]
    no_header: bool,
    /// With --no-header: the input's column names in order, e.g.
    /// utterance_id,candidate_id,sentence,am_score.
    #[arg(long, value_delimiter = ',', requires = "no_header")]
    columns: Vec<String>,
}

impl ColumnArgs {
    fn names(&self) -> ColumnNames {
        ColumnNames {
            text: self.text_column.clone(),
            group: self.group_column.clone(),
            am: self.am_column.clone(),
            ngram: self.ngram_column.clone(),
            ngram_base: self.ngram_log_base,
            headerless: self.no_header.then(|| self.columns.clone()),
        }
    }
}

#[derive(Args)]
struct TuneArgs {
    /// Model directory (not needed with --scored).
    #[arg(long, required_unless_present = "scored")]
    model: Option<PathBuf>,
    /// Dev N-best list.
    #[arg(long)]
    input: PathBuf,
    /// CSV with utterance_id,reference.
    #[arg(long, required_unless_present = "reference_column")]
    references: Option<PathBuf>,
    /// Column of the input with each candidate's reference, instead of --references.
    #[arg(long, conflicts_with = "references")]
    reference_column: Option<String>,
    /// The input was written by `rnnlm score`: read its logprob column instead of
    /// running a model. The values are as rounded as score wrote them (`--digits`, 4
    /// by default), so near-ties can rank otherwise than with --model; score with
    /// `--digits 17` to rank the same.
    #[arg(long, conflicts_with = "model")]
    scored: bool,
    #[command(flatten)]
    columns: ColumnArgs,
    #[command(flatten)]
    oov: OovArgs,
    /// lm_weight values to search: START:END:STEP, A,B,C or one value.
    #[arg(long, default_value = "0:3:0.1", value_parser = values, allow_hyphen_values = true)]
    lm_weights: Values,
    /// length_penalty values to search (per word).
    #[arg(long, default_value = "-5:5:0.5", value_parser = values, allow_hyphen_values = true)]
    length_penalties: Values,
    /// ngram_weight values to search, in [0, 1] (with --ngram-column).
    #[arg(long, default_value = "0:1:0.1", value_parser = values)]
    ngram_weights: Values,
    /// A backward model (trained with --reverse) to mix in; its weight is searched too.
    #[arg(long, requires = "model")]
    backward_model: Option<PathBuf>,
    /// backward_weight values to search, in [0, 1] (with --backward-model).
    #[arg(long, default_value = "0:1:0.1", value_parser = values)]
    backward_weights: Values,
    /// Search the given grid alone: no widening where the best value sits at a range's
    /// end, no refinement around the best.
    #[arg(long)]
    grid_only: bool,
    /// Apply each row's weights from an earlier `tune --json` report (or --save file)
    /// instead of searching: dev-tuned weights on a test set.
    #[arg(long)]
    apply: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = SCORE_BATCH, value_parser = positive)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct DeviceArgs {
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// libtorch's CPU threads per operation [default: one per core]; running several
    /// processes, keep processes x threads within the cores.
    #[arg(long, value_parser = thread_count)]
    threads: Option<i32>,
}

impl DeviceArgs {
    /// Sets the thread count and picks the device.
    fn resolve(&self) -> Result<tch::Device, DeviceUnavailable> {
        if let Some(threads) = self.threads {
            tch::set_num_threads(threads);
        }
        self.device.resolve()
    }
}

#[derive(Args)]
struct TokenizerArgs {
    /// Token level.
    #[arg(long, value_enum, default_value = "word")]
    level: Level,
    /// Lowercase the text.
    #[arg(long)]
    lowercase: bool,
    /// Split leading and trailing punctuation off words.
    #[arg(long)]
    split_punct: bool,
    /// Drop punctuation-only tokens.
    #[arg(long)]
    drop_punct: bool,
    /// Split words at their hyphens.
    #[arg(long)]
    split_hyphens: bool,
    /// The recognizer's text form: --lowercase --drop-punct --split-hyphens.
    #[arg(long)]
    recognizer_form: bool,
    /// Train a backward model: every sentence is read reversed (eval, score, tune and
    /// sample then reverse for it).
    #[arg(long)]
    reverse: bool,
    /// Keep tokens seen at least this often in train.txt; rarer ones become <UNK>
    /// [default: 4 for words, 1 for characters].
    #[arg(long)]
    min_count: Option<usize>,
    /// Keep at most this many tokens besides <EOS> and <UNK>.
    #[arg(long)]
    max_size: Option<usize>,
}

#[derive(Args)]
struct TrainArgs {
    /// Directory with train.txt and valid.txt, one sequence per line.
    #[arg(long)]
    data: PathBuf,
    /// Model directory to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    tokenizer: TokenizerArgs,
    /// Recurrent cell.
    #[arg(long, value_enum, default_value = "lstm")]
    cell: Cell,
    /// Embedding size.
    #[arg(long, default_value_t = 256, value_parser = size)]
    embed: i64,
    /// Hidden units per layer.
    #[arg(long, default_value_t = 256, value_parser = size)]
    hidden: i64,
    /// Recurrent layers.
    #[arg(long, default_value_t = 2, value_parser = size)]
    layers: i64,
    /// Dropout on embeddings, between layers and before the output layer.
    #[arg(long, default_value_t = 0.3, value_parser = dropout_rate)]
    dropout: f64,
    /// Tie the output matrix to the embedding matrix (needs --embed = --hidden).
    #[arg(long)]
    tie: bool,
    /// Output layer: full (softmax over the vocabulary) or class (an exactly normalized
    /// head of frequent words plus clusters of rarer ones, several times faster).
    #[arg(long, value_enum, default_value = "full")]
    softmax: SoftmaxKind,
    /// With --softmax class: vocabulary ranks where the head ends and each further
    /// cluster begins, e.g. 400,4200 [default: chosen from the training counts].
    #[arg(long, value_delimiter = ',')]
    cutoffs: Vec<i64>,
    /// With --softmax class and no --cutoffs: the number of clusters.
    #[arg(long, default_value_t = 3, value_parser = positive)]
    clusters: usize,
    /// Stop after this many learning-rate cuts in a row without a better valid loss (0: never).
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Sentences per batch (rows per batch with --stream).
    #[arg(long, default_value_t = 32, value_parser = positive)]
    batch_size: usize,
    /// Read the data as one token stream with truncated BPTT instead of sentence by sentence.
    #[arg(long)]
    stream: bool,
    /// Steps per truncated-BPTT chunk with --stream.
    #[arg(long, default_value_t = 35, value_parser = positive)]
    bptt: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = 0.002, value_parser = positive_number)]
    lr: f64,
    /// Multiply the learning rate by this when the valid loss does not improve.
    #[arg(long, default_value_t = 0.5, value_parser = decay)]
    lr_decay: f64,
    /// Learning-rate schedule: plateau (decay when valid loss stalls) or linear (to zero
    /// over --time-limit or --epochs).
    #[arg(long, value_enum, default_value = "plateau")]
    lr_schedule: LrSchedule,
    /// Clip the gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    clip: f64,
    /// Epochs (in all, when resuming).
    #[arg(long, default_value_t = 10, value_parser = positive)]
    epochs: usize,
    /// Stop at the first batch boundary after this many seconds, keeping the best model
    /// (with --lr-schedule linear: the whole run's budget, resumes included).
    #[arg(long, value_parser = positive_number)]
    time_limit: Option<f64>,
    /// Stop this run after this many optimizer steps, inside an epoch if need be;
    /// --resume goes on from that step exactly.
    #[arg(long, value_parser = positive)]
    max_steps: Option<usize>,
    /// Seed for initialization, dropout and shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Continue training the model in --out.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Replace the model already in --out (it stays until the new run's first checkpoint).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    oov: OovArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct ScoreArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Input file, or - for standard input.
    #[arg(long, default_value = "-")]
    input: String,
    /// Output file, or - for standard output.
    #[arg(long, default_value = "-")]
    output: String,
    #[command(flatten)]
    columns: ColumnArgs,
    #[command(flatten)]
    oov: OovArgs,
    /// score = am + lm_weight * lm + length_penalty * words.
    #[arg(long, default_value = "1", value_parser = finite, allow_hyphen_values = true)]
    lm_weight: f64,
    /// Added to score per word of the hypothesis (negative: an insertion penalty).
    #[arg(long, default_value = "0", value_parser = finite, allow_hyphen_values = true)]
    length_penalty: f64,
    /// lm = (1 - b - w) * logprob + b * backward + w * ngram, with the n-gram score in
    /// natural log.
    #[arg(long, default_value = "0", value_parser = unit_interval)]
    ngram_weight: f64,
    /// A backward model (trained with --reverse) whose log-probability is mixed in.
    #[arg(long)]
    backward_model: Option<PathBuf>,
    /// The backward model's share b of lm, in [0, 1]; b + ngram_weight is at most 1.
    #[arg(long, default_value = "0", value_parser = unit_interval, requires = "backward_model")]
    backward_weight: f64,
    /// Report bad rows on stderr and score the good ones instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Write per-token log-probabilities (row, position, token, logprob) to this CSV file.
    #[arg(long)]
    per_token: Option<PathBuf>,
    /// Sentences per forward pass (similar lengths are batched together).
    #[arg(long, default_value_t = SCORE_BATCH, value_parser = positive)]
    batch_size: usize,
    /// Rows read and scored at a time (a group of candidates is never split; memory
    /// grows with it).
    #[arg(long, default_value_t = rnnlm::rescore::CHUNK_ROWS, value_parser = positive)]
    chunk_rows: usize,
    /// Decimals of the logprob, log10prob, backward_logprob, lm and score columns
    /// (1 to 17). `tune --scored` ranks by the values it reads back, so at 4 a near-tie
    /// can rank otherwise than a run on the model; 17 ranks exactly the same.
    #[arg(long, default_value_t = 4, value_parser = decimals)]
    digits: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct SampleArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Number of sequences.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    count: usize,
    /// Stop a sequence after this many tokens.
    #[arg(long, default_value_t = 100, value_parser = positive)]
    max_len: usize,
    /// Seed for the draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Text to continue (tokenized as the model was trained).
    #[arg(long)]
    prefix: Option<String>,
    /// Print a tab and the sample's natural-log probability after each sample.
    #[arg(long)]
    show_logprob: bool,
    /// Word level: print tokens separated by single spaces instead of readable text.
    #[arg(long)]
    tokens: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = rnnlm::files::remove_temporaries_on_signal() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = guarded(|| match cli.command {
        Command::Train(args) => train(args, matches.subcommand_matches("train")),
        Command::Eval(args) => eval(args),
        Command::Score(args) => score(args),
        Command::Sample(args) => sample(args),
        Command::Tune(args) => tune(args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
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

/// The training flags that define a run, by argument id: given on the command line
/// with `--resume`, each must agree with the run.
const RUN_FLAGS: [(&str, &str); 16] = [
    ("optimizer", "--optimizer"),
    ("batch_size", "--batch-size"),
    ("clip", "--clip"),
    ("stream", "--stream"),
    ("bptt", "--bptt"),
    ("lr_schedule", "--lr-schedule"),
    ("lr", "--lr"),
    ("lr_decay", "--lr-decay"),
    ("epochs", "--epochs"),
    ("time_limit", "--time-limit"),
    ("cell", "--cell"),
    ("embed", "--embed"),
    ("hidden", "--hidden"),
    ("layers", "--layers"),
    ("dropout", "--dropout"),
    ("tie", "--tie"),
];

/// The run-defining flags given on the command line.
fn given_flags(matches: Option<&clap::ArgMatches>) -> Vec<String> {
    let Some(matches) = matches else {
        return Vec::new();
    };
    RUN_FLAGS
        .iter()
        .filter(|(id, _)| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(|(_, flag)| flag.to_string())
        .collect()
}

/// The first panic's message and place, kept by the panic hook for [`guarded`].
static PANIC: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// Runs a command with a boundary around it: tch's non-`f_` methods panic on
/// libtorch's errors (out of memory, a failed check), and such a panic, in any
/// thread, becomes one error line instead of a backtrace and exit 101.
fn guarded(command: impl FnOnce() -> Result<()>) -> Result<()> {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let place = info.location().map(|l| l.to_string()).unwrap_or_default();
        let _ = PANIC.set((message, place));
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)) {
        Ok(result) => result,
        Err(_) => {
            let (message, place) = PANIC.get().cloned().unwrap_or_default();
            Err(anyhow::anyhow!(panic_line(&message, &place)))
        }
    }
}

/// One line for a panic: libtorch's own first line (with what to lower when memory
/// ran out), or the message and place of a bug.
fn panic_line(message: &str, place: &str) -> String {
    let torch = message
        .find("Torch(\"")
        .map(|at| &message[at + "Torch(\"".len()..])
        .map(|rest| {
            // tch prints libtorch's message Debug-escaped: its lines end in a literal \n.
            let end = rest
                .find("\\n")
                .or_else(|| rest.rfind("\")"))
                .unwrap_or(rest.len());
            rest[..end].replace("\\\"", "\"")
        });
    match torch {
        Some(text) if is_out_of_memory(&text) => format!(
            "out of memory: {text}; lower --batch-size (or --hidden, --embed, --bptt), or on a GPU try --device cpu"
        ),
        Some(text) => format!("libtorch: {text}"),
        None if is_out_of_memory(message) => format!(
            "out of memory: {}; lower --batch-size (or --hidden, --embed, --bptt), or on a GPU try --device cpu",
            message.lines().next().unwrap_or_default()
        ),
        None => format!(
            "internal error at {place}: {}",
            message.lines().next().unwrap_or_default()
        ),
    }
}

fn is_out_of_memory(text: &str) -> bool {
    let text = text.to_lowercase();
    text.contains("out of memory")
        || text.contains("not enough memory")
        || text.contains("can't allocate memory")
}

/// A closed standard output (`rnnlm score … | head -1`) is success, as for xsv and
/// ripgrep. The csv crate wraps the I/O error in its own type.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            match cause.downcast_ref::<csv::Error>().map(csv::Error::kind) {
                Some(csv::ErrorKind::Io(io)) => Some(io),
                _ => None,
            }
        });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn train(args: TrainArgs, matches: Option<&clap::ArgMatches>) -> Result<()> {
    // Training only: scoring streams, and there a heap that never shrinks would grow
    // with the fragments of batches of every length.
    rnnlm::malloc::keep_freed_memory();
    let device = args.device.resolve()?;
    let t = &args.tokenizer;
    let config = TrainConfig {
        data: args.data,
        out: args.out,
        tokenizer: Tokenizer {
            level: t.level,
            lowercase: t.lowercase || t.recognizer_form,
            split_punct: t.split_punct,
            drop_punct: t.drop_punct || t.recognizer_form,
            split_hyphens: t.split_hyphens || t.recognizer_form,
            reverse: t.reverse,
        },
        vocab_limits: VocabLimits {
            min_count: t
                .min_count
                .unwrap_or(if t.level == Level::Word { 4 } else { 1 }),
            max_size: t.max_size,
        },
        model: ModelConfig {
            cell: args.cell,
            vocab_size: 0,
            embed: args.embed,
            hidden: args.hidden,
            layers: args.layers,
            dropout: args.dropout,
            tie: args.tie,
            output: match args.softmax {
                SoftmaxKind::Full => OutputConfig::Full,
                SoftmaxKind::Class => OutputConfig::Class {
                    cutoffs: args.cutoffs,
                },
            },
        },
        clusters: args.clusters,
        patience: args.patience,
        batch_size: args.batch_size,
        stream: args.stream,
        bptt: args.bptt,
        optimizer: args.optimizer,
        lr: args.lr,
        lr_decay: args.lr_decay,
        lr_schedule: args.lr_schedule,
        clip: args.clip,
        epochs: args.epochs,
        time_limit: args.time_limit,
        max_steps: args.max_steps,
        seed: args.seed,
        resume: args.resume,
        force: args.force,
        given: given_flags(matches),
    };
    let summary = rnnlm::train::train(&config, device)?;
    let best = summary.best_valid_loss;
    tracing::info!(
        "best valid loss {best:.4} nats/token, perplexity {:.2}, {:.4} bits/token; model in {}",
        best.exp(),
        best / std::f64::consts::LN_2,
        config.out.display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let loaded = ModelDir::new(&args.model).load(device)?;
    let corpus = Corpus::load(&args.data, &loaded.config.tokenizer, &loaded.vocab)?;
    let oov_options = args.oov.options(OovPolicy::Unk);
    let oov = rnnlm::oov::OovScorer::new(oov_options, loaded.oov.as_ref(), &loaded.dir)?;
    let e = evaluate(&loaded.model, &corpus, SCORE_BATCH, &oov)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&e)?)?;
    } else {
        writeln!(
            out,
            "{}: {} sentences, {} tokens (<EOS> included), {} <UNK> (--oov {})\nperplexity {:.2} | {:.4} nats/token | {:.4} bits/token",
            args.data.display(),
            e.sentences,
            e.tokens,
            e.oov_count,
            match oov_options.policy {
                OovPolicy::Divide => "divide",
                OovPolicy::Unk => "unk",
            },
            e.perplexity,
            e.nats_per_token,
            e.bits_per_token
        )?;
    }
    Ok(())
}

fn path_or_std(arg: &str) -> Option<PathBuf> {
    (arg != "-").then(|| PathBuf::from(arg))
}

fn score(args: ScoreArgs) -> Result<()> {
    if args.backward_weight + args.ngram_weight > 1.0 + 1e-9 {
        anyhow::bail!(
            "--backward-weight {} and --ngram-weight {} sum to more than 1",
            args.backward_weight,
            args.ngram_weight
        );
    }
    let device = args.device.resolve()?;
    let loaded = ModelDir::new(&args.model).load(device)?;
    let backward = match &args.backward_model {
        Some(dir) => Some(load_backward(dir, device)?),
        None => None,
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
    Ok(())
}

/// Loads a --backward-model, which must have been trained with --reverse.
fn load_backward(
    dir: &std::path::Path,
    device: tch::Device,
) -> Result<rnnlm::checkpoint::LoadedModel> {
    let model = ModelDir::new(dir).load(device)?;
    if !model.config.tokenizer.reverse {
        anyhow::bail!(
            "{}: --backward-model is not a backward model (trained without --reverse)",
            dir.display()
        );
    }
    Ok(model)
}

fn tune(args: TuneArgs) -> Result<()> {
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
    let device = match &args.model {
        Some(_) => Some(args.device.resolve()?),
        None => None,
    };
    let loaded = match (&args.model, device) {
        (Some(dir), Some(device)) => Some(ModelDir::new(dir).load(device)?),
        _ => None,
    };
    let backward = match (&args.backward_model, device) {
        (Some(dir), Some(device)) => Some(load_backward(dir, device)?),
        _ => None,
    };
    let apply = match &args.apply {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a `tune --json` report", path.display()))?,
            )
        }
        None => None,
    };
    let options = TuneOptions {
        input: args.input,
        format: args.columns.format,
        columns: args.columns.names(),
        references: args.references,
        reference_column: args.reference_column,
        scored: args.scored,
        oov: args.oov.options(OovPolicy::Divide),
        batch_size: args.batch_size,
        grid: Grid {
            lm_weights: args.lm_weights.0,
            length_penalties: args.length_penalties.0,
            ngram_weights: args.ngram_weights.0,
            backward_weights: args.backward_weights.0,
            refine: !args.grid_only,
        },
        apply,
        backward_model: args.backward_model,
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

fn sample(args: SampleArgs) -> Result<()> {
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
    let samples = rnnlm::sample::sample(
        &loaded.model,
        &prefix,
        args.count,
        args.max_len,
        &mut sampler,
    )
    .context("sampling failed")?;
    let seconds = start.elapsed().as_secs_f64();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in &samples {
        let tokens: Vec<String> = s
            .tokens
            .iter()
            .map(|&id| loaded.vocab.token(id).to_string())
            .collect();
        // A backward model draws the sentence from its end: print it in reading order.
        let text = if args.tokens {
            tokenizer.reading_order(&tokens).join(" ")
        } else {
            tokenizer.detokenize(&tokens)
        };
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
