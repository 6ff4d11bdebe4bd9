//! The model directory: `config.json`, `vocab.txt`, `weights.safetensors`, plus the
//! training record (`metrics.csv`, `loss.png`, `state.json`). Every file is written
//! to a temporary name and renamed, so a kill at any moment leaves the last good
//! version of each file in place.

use crate::model::{ModelConfig, RnnLm};
use crate::oov::OovClasses;
use crate::vocab::{Tokenizer, Vocab, VocabLimits};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

/// Hyper-parameters and tokenizer settings saved as `config.json` beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedConfig {
    /// Format marker, so that a directory of something else is refused.
    pub format: String,
    /// The network's shape.
    pub model: ModelConfig,
    /// How text was tokenized in training.
    pub tokenizer: Tokenizer,
    /// How the vocabulary was cut.
    pub vocab_limits: VocabLimits,
    /// The training settings, for the record (free-form).
    pub training: serde_json::Value,
}

/// Where training stands, for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Learning rate for the next epoch.
    pub lr: f64,
    /// Best validation loss so far (nats per token); the saved weights are that model's.
    pub best_valid_loss: f64,
    /// Training seconds so far.
    pub seconds: f64,
    /// Learning-rate cuts since the valid loss last improved.
    #[serde(default)]
    pub cuts_without_improvement: usize,
}

/// The file of training counts of the tokens mapped to `<UNK>`.
pub const OOV_FILE: &str = "oov_counts.tsv";

/// The format marker in `config.json`.
pub const FORMAT: &str = "rnnlm-1";

/// Paths of the files in a model directory.
pub struct ModelDir {
    /// The directory.
    pub root: PathBuf,
}

impl ModelDir {
    /// A model directory at `root` (not yet checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelDir { root: root.into() }
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `vocab.txt`.
    pub fn vocab(&self) -> PathBuf {
        self.root.join("vocab.txt")
    }
    /// `weights.safetensors`.
    pub fn weights(&self) -> PathBuf {
        self.root.join("weights.safetensors")
    }
    /// `oov_counts.tsv`.
    pub fn oov(&self) -> PathBuf {
        self.root.join(OOV_FILE)
    }
    /// `metrics.csv`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    /// `loss.png`.
    pub fn plot(&self) -> PathBuf {
        self.root.join("loss.png")
    }
    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Writes the configuration, the vocabulary and the `<UNK>` class counts (once, at
    /// the start of training).
    pub fn save_header(&self, config: &SavedConfig, vocab: &Vocab, oov: &OovClasses) -> Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create model directory {}", self.root.display()))?;
        write_atomic(&self.config(), |w| {
            serde_json::to_writer_pretty(&mut *w, config)?;
            writeln!(w)?;
            Ok(())
        })?;
        vocab.save(&self.vocab())?;
        oov.save(&self.oov())
    }

    /// Saves the weights of `vs` and the training state.
    pub fn save_weights(&self, vs: &nn::VarStore, state: &TrainState) -> Result<()> {
        // The temporary name keeps the .safetensors suffix: tch picks the format by it.
        let tmp = self.root.join(".weights.tmp.safetensors");
        vs.save(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, self.weights())
            .with_context(|| format!("cannot write {}", self.weights().display()))?;
        write_atomic(&self.state(), |w| {
            serde_json::to_writer_pretty(&mut *w, state)?;
            Ok(())
        })
    }

    /// Reads `config.json` and `vocab.txt` and checks that they belong together.
    pub fn load_header(&self) -> Result<(SavedConfig, Vocab)> {
        let path = self.config();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a model directory: cannot read {}",
                self.root.display(),
                path.display()
            )
        })?;
        let config: SavedConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an rnnlm model configuration", path.display()))?;
        if config.format != FORMAT {
            bail!(
                "{}: format '{}' is not {FORMAT}",
                path.display(),
                config.format
            );
        }
        let vocab = Vocab::load(&self.vocab())?;
        if vocab.len() as i64 != config.model.vocab_size {
            bail!(
                "{}: {} tokens, but {} says the model has {}",
                self.vocab().display(),
                vocab.len(),
                path.display(),
                config.model.vocab_size
            );
        }
        Ok((config, vocab))
    }

    /// Reads `state.json`.
    pub fn load_state(&self) -> Result<TrainState> {
        let path = self.state();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a training state", path.display()))
    }

    /// Loads a trained model onto `device`.
    pub fn load(&self, device: Device) -> Result<LoadedModel> {
        let (config, vocab) = self.load_header()?;
        let mut vs = nn::VarStore::new(device);
        let model = RnnLm::new(&vs.root(), &config.model);
        load_weights(&mut vs, &self.weights())?;
        let oov_path = self.oov();
        let oov = if oov_path.exists() {
            Some(OovClasses::load(&oov_path, config.tokenizer.level, &vocab)?)
        } else {
            None
        };
        Ok(LoadedModel {
            dir: self.root.clone(),
            vs,
            model,
            vocab,
            config,
            oov,
        })
    }
}

/// A model read back from its directory.
pub struct LoadedModel {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// Holds the parameters.
    pub vs: nn::VarStore,
    /// The network.
    pub model: RnnLm,
    /// Its vocabulary.
    pub vocab: Vocab,
    /// Its configuration.
    pub config: SavedConfig,
    /// The `<UNK>` class distribution; `None` for a model trained without `oov_counts.tsv`.
    pub oov: Option<OovClasses>,
}

/// Fills `vs` from a safetensors file; every variable must be there with its shape.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let stored = tch::Tensor::read_safetensors(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot read weights: {}",
            path.display(),
            first_line(&e.to_string())
        )
    })?;
    let stored: std::collections::HashMap<String, tch::Tensor> = stored.into_iter().collect();
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let Some(value) = stored.get(&name) else {
            bail!(
                "{}: no tensor '{name}': the weights do not belong to this configuration",
                path.display()
            );
        };
        if value.size() != var.size() {
            bail!(
                "{}: '{name}' has shape {:?}, the configuration needs {:?}",
                path.display(),
                value.size(),
                var.size()
            );
        }
        var.copy_(value);
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Writes a file through `fill` into a temporary file beside it, then renames it into place.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut writer = BufWriter::new(file);
        fill(&mut writer)?;
        writer.flush()?;
        writer.get_ref().sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A hidden temporary name in the same directory (so the rename stays on one file system).
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}
