//! The argument groups that several commands share: OOV scoring, input columns,
//! the device, the tokenizer.

use super::values::{finite, positive, MAX_THREADS};
use clap::Args;
use rnnlm::device::{DeviceChoice, DeviceUnavailable};
use rnnlm::oov::{OovOptions, OovPolicy};
use rnnlm::rescore::nbest::{ColumnNames, LogBase};
use rnnlm::rescore::Format;
use rnnlm::vocab::Level;

#[derive(Args)]
pub(crate) struct OovArgs {
    /// Out-of-vocabulary words: divide (<UNK>'s probability times the word's share of
    /// the <UNK> class) or unk (<UNK>'s probability itself).
    #[arg(long, value_enum)]
    pub(crate) oov: Option<OovPolicy>,
    /// Added (natural log) to the log-probability per out-of-vocabulary token.
    #[arg(long, default_value = "0", value_parser = finite, allow_hyphen_values = true)]
    pub(crate) oov_penalty: f64,
}

impl OovArgs {
    pub(crate) fn options(&self, default: OovPolicy) -> OovOptions {
        OovOptions {
            policy: self.oov.unwrap_or(default),
            penalty: self.oov_penalty,
        }
    }
}

#[derive(Args)]
pub(crate) struct ColumnArgs {
    /// Input format: CSV with a header, Kaldi N-best text (uttid-N w1 w2 …), or plain
    /// text with one sentence per line (score only).
    #[arg(long, value_enum, default_value = "csv")]
    pub(crate) format: Format,
    /// Column with the sentence.
    #[arg(long, default_value = "sentence")]
    pub(crate) text_column: String,
    /// Column that groups the candidates of one utterance (default: utterance_id when present).
    #[arg(long)]
    pub(crate) group_column: Option<String>,
    /// Column with a first-pass acoustic log score (natural log), combined into `score`.
    #[arg(long)]
    pub(crate) am_column: Option<String>,
    /// Column with a first-pass n-gram LM log score of each hypothesis.
    #[arg(long)]
    pub(crate) ngram_column: Option<String>,
    /// Base of the n-gram column's logarithms: 10 (as ARPA tools print) or e.
    #[arg(long, value_enum, default_value = "10")]
    pub(crate) ngram_log_base: LogBase,
    /// The CSV input has no header row (nor will the output): name its columns with
    /// --columns. For engines that pipe raw lines (Dask, Spark's RDD.pipe).
    #[arg(long, requires = "columns")]
    pub(crate) no_header: bool,
    /// With --no-header: the input's column names in order, e.g.
    /// utterance_id,candidate_id,sentence,am_score.
    #[arg(long, value_delimiter = ',', requires = "no_header")]
    pub(crate) columns: Vec<String>,
    /// Read only the first N candidates of each utterance, in file order: a deep
    /// N-best list at a shallower depth.
    #[arg(long, value_parser = positive)]
    pub(crate) max_candidates: Option<usize>,
}

impl ColumnArgs {
    pub(crate) fn names(&self) -> ColumnNames {
        ColumnNames {
            text: self.text_column.clone(),
            group: self.group_column.clone(),
            am: self.am_column.clone(),
            ngram: self.ngram_column.clone(),
            ngram_base: self.ngram_log_base,
            headerless: self.no_header.then(|| self.columns.clone()),
            max_candidates: self.max_candidates,
        }
    }
}

#[derive(Args)]
pub(crate) struct DeviceArgs {
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub(crate) device: DeviceChoice,
    /// libtorch's CPU threads per operation [default: one per core]; running several
    /// processes, keep processes x threads within the cores.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=i64::from(MAX_THREADS)))]
    pub(crate) threads: Option<i32>,
}

impl DeviceArgs {
    /// Sets the thread count and picks the device.
    pub(crate) fn resolve(&self) -> Result<tch::Device, DeviceUnavailable> {
        if let Some(threads) = self.threads {
            tch::set_num_threads(threads);
        }
        self.device.resolve()
    }

    /// [`DeviceArgs::resolve`] for rank `local_rank` of several on one machine: a bare
    /// `--device cuda` is the rank's own GPU.
    pub(crate) fn resolve_for_local_rank(
        &self,
        local_rank: usize,
    ) -> Result<tch::Device, DeviceUnavailable> {
        if let Some(threads) = self.threads {
            tch::set_num_threads(threads);
        }
        self.device.for_local_rank(local_rank).resolve()
    }
}

#[derive(Args)]
pub(crate) struct TokenizerArgs {
    /// Token level.
    #[arg(long, value_enum, default_value = "word")]
    pub(crate) level: Level,
    /// Lowercase the text.
    #[arg(long)]
    pub(crate) lowercase: bool,
    /// Split leading and trailing punctuation off words.
    #[arg(long)]
    pub(crate) split_punct: bool,
    /// Drop punctuation-only tokens.
    #[arg(long)]
    pub(crate) drop_punct: bool,
    /// Split words at their hyphens.
    #[arg(long)]
    pub(crate) split_hyphens: bool,
    /// The recognizer's text form: --lowercase --drop-punct --split-hyphens.
    #[arg(long)]
    pub(crate) recognizer_form: bool,
    /// Train a backward model: every sentence is read reversed (eval, score, tune and
    /// sample then reverse for it).
    #[arg(long)]
    pub(crate) reverse: bool,
    /// Keep tokens seen at least this often in train.txt; rarer ones become <UNK>
    /// [default: 4 for words, 1 for characters].
    #[arg(long)]
    pub(crate) min_count: Option<usize>,
    /// Keep at most this many tokens besides <EOS> and <UNK>.
    #[arg(long)]
    pub(crate) max_size: Option<usize>,
}
