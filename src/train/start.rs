//! Where a run starts: a fresh vocabulary and header built from the training text,
//! or the checkpoint that `--resume` goes on from, with the run's own settings; and
//! the training data, encoded.

use super::{resume, EpochRecord, TrainConfig};
use crate::checkpoint::{ModelDir, SavedConfig, TrainState, FORMAT};
use crate::data::Corpus;
use crate::metrics::read_metrics;
use crate::oov::OovClasses;
use crate::output::{choose_cutoffs, OutputConfig};
use crate::vocab::{read_lines, Tokenizer, Vocab};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The training data, tokenized and encoded.
pub(super) struct Data {
    pub(super) train: Corpus,
    pub(super) valid: Corpus,
}

/// What a run starts from: a fresh header, or the checkpoint it resumes.
pub(super) struct Start {
    pub(super) saved: SavedConfig,
    pub(super) vocab: Vocab,
    pub(super) oov: Option<OovClasses>,
    pub(super) state: TrainState,
    pub(super) history: Vec<EpochRecord>,
}

/// The run's start and its settings: `config` for a fresh run, the resumed run's own
/// (with what this command line may change) on `--resume`. The seed is the run's.
pub(super) fn begin(config: &TrainConfig, dir: &ModelDir) -> Result<(Start, TrainConfig)> {
    let mut start = if config.resume {
        resume_start(dir)?
    } else {
        dir.check_writable(config.force)?;
        fresh_start(config)?
    };
    let seed = *start.state.seed.get_or_insert(config.seed);
    let mut settings = if config.resume {
        let settings = resume::settings(config, &start.saved, dir)?;
        let state = &start.state;
        tracing::info!(
            "resuming {} after epoch {}{} at lr {}",
            dir.root.display(),
            state.epoch,
            match state.batches_done {
                0 => String::new(),
                n => format!(" and {n} batches of the next"),
            },
            state.lr
        );
        settings
    } else {
        config.clone()
    };
    settings.seed = seed;
    Ok((start, settings))
}

fn fresh_start(config: &TrainConfig) -> Result<Start> {
    let mut tokenized: Vec<Vec<String>> = Vec::new();
    for path in config.train_files() {
        let (lines, _) = read_lines(&path)?;
        tokenized.extend(lines.iter().map(|l| config.tokenizer.tokenize(l)));
    }
    let vocab = Vocab::build(&tokenized, config.vocab_limits);
    let oov_counts = OovClasses::count(&tokenized, &vocab);
    let oov = OovClasses::new(config.tokenizer.level, &vocab, oov_counts);
    let mut model = config.model.clone();
    model.vocab_size = vocab.len() as i64;
    if let OutputConfig::Class { cutoffs } = &mut model.output {
        if cutoffs.is_empty() {
            let mut counts = vec![0u64; vocab.len()];
            for sentence in &tokenized {
                for token in sentence {
                    counts[vocab.id(token) as usize] += 1;
                }
                counts[crate::vocab::EOS_ID as usize] += 1;
            }
            *cutoffs = choose_cutoffs(&counts, config.clusters);
            tracing::info!(
                "class output layer: cutoffs {cutoffs:?} (chosen from the training counts)"
            );
        }
    }
    model.check()?;
    let saved = SavedConfig {
        format: FORMAT.to_string(),
        model,
        tokenizer: config.tokenizer.clone(),
        vocab_limits: config.vocab_limits,
        training: serde_json::to_value(config)?,
    };
    let state = TrainState {
        epoch: 0,
        lr: config.lr,
        best_valid_loss: f64::INFINITY,
        seconds: 0.0,
        cuts_without_improvement: 0,
        seed: Some(config.seed),
        ..Default::default()
    };
    Ok(Start {
        saved,
        vocab,
        oov: Some(oov),
        state,
        history: Vec::new(),
    })
}

fn resume_start(dir: &ModelDir) -> Result<Start> {
    let (saved, vocab) = dir.load_header().context("--resume")?;
    let state = dir.load_state().context("--resume")?;
    let history = read_metrics(&dir.metrics()).context("--resume")?;
    let oov = match dir.oov().exists() {
        true => Some(OovClasses::load(&dir.oov(), saved.tokenizer.level, &vocab)?),
        false => None,
    };
    Ok(Start {
        saved,
        vocab,
        oov,
        state,
        history,
    })
}

pub(super) fn load_data(
    config: &TrainConfig,
    tokenizer: &Tokenizer,
    vocab: &Vocab,
) -> Result<Data> {
    let mut train = Corpus::default();
    for (index, path) in config.train_files().iter().enumerate() {
        let corpus = Corpus::load(path, tokenizer, vocab)?;
        check_and_log(path, &corpus)?;
        let weight = config.train_weight(index);
        let corpus = corpus.weighted(weight, config.seed.wrapping_add(index as u64));
        if weight != 1.0 {
            tracing::info!(
                "{}: weight {weight}: {} sentences per epoch",
                path.display(),
                corpus.sentences.len()
            );
        }
        train.extend(corpus);
    }
    let valid_path = config.valid_file();
    let valid = Corpus::load(&valid_path, tokenizer, vocab)?;
    check_and_log(&valid_path, &valid)?;
    Ok(Data { train, valid })
}

/// Refuses a file with no sentences and logs what it holds.
fn check_and_log(path: &Path, corpus: &Corpus) -> Result<()> {
    if corpus.sentences.is_empty() {
        bail!("{}: no sentences", path.display());
    }
    tracing::info!(
        "{}: {} sentences, {} tokens, {} <UNK>, {} empty lines skipped",
        path.display(),
        corpus.sentences.len(),
        corpus.tokens(),
        corpus.oov_count,
        corpus.empty_lines
    );
    Ok(())
}
