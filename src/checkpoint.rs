//! The model directory: `config.json`, `vocab.txt`, `oov_counts.tsv` and
//! `weights.safetensors` (the best weights), plus the training record and what
//! `--resume` needs (`metrics.csv`, `loss.png`, `state.json`, `last.safetensors`,
//! `optimizer.safetensors`).
//!
//! Training saves a checkpoint as one unit: every file of it goes into a fresh
//! sibling directory, which then takes the model directory's place
//! ([`crate::swap::swap_dir`]). A kill at any moment leaves the old checkpoint or the
//! new one, and a reader that loads while training runs gets one of them whole
//! ([`ModelDir::load`] checks that the directory was not swapped while it read).

use crate::files::write_atomic;
use crate::metrics::{write_metrics, EpochRecord};
use crate::model::{ModelConfig, RnnLm};
use crate::oov::OovClasses;
use crate::swap::{finish_interrupted_swap, sibling, swap_dir, StagingDir};
use crate::vocab::{Tokenizer, Vocab, VocabLimits};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

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
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
    /// The run's seed: every epoch's shuffle and every batch's dropout draw from
    /// streams derived from it and their numbers, so a resumed run continues them.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The best valid loss after a whole epoch, which the learning-rate schedule
    /// compares with (a cut epoch's validation may keep better weights without
    /// moving the schedule); `None` in older states: `best_valid_loss`.
    #[serde(default)]
    pub epoch_best_valid_loss: Option<f64>,
    /// Where a cut epoch stopped: batches (stream chunks) of epoch `epoch` done.
    #[serde(default)]
    pub batches_done: usize,
    /// The cut epoch's summed train loss, tokens and seconds so far.
    #[serde(default)]
    pub partial_loss_sum: f64,
    /// See `partial_loss_sum`.
    #[serde(default)]
    pub partial_tokens: usize,
    /// See `partial_loss_sum`.
    #[serde(default)]
    pub partial_seconds: f64,
    /// Batches one optimizer step takes (ranks × `accumulate`), where it is more
    /// than 1; a resume must take as many, so that its steps are the run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_per_step: Option<usize>,
}

impl TrainState {
    /// Refuses numbers no run writes: a state with them was changed by hand, and a
    /// resume from it would train at a negative rate or against a time budget already
    /// overspent.
    fn check(&self) -> std::result::Result<(), String> {
        let at_least_zero = [
            ("lr", self.lr),
            ("seconds", self.seconds),
            ("partial_seconds", self.partial_seconds),
            ("partial_loss_sum", self.partial_loss_sum),
        ];
        for (name, value) in at_least_zero {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "{name} {value:?} is not a finite number of 0 or more"
                ));
            }
        }
        let losses = std::iter::once(("best_valid_loss", self.best_valid_loss)).chain(
            self.epoch_best_valid_loss
                .map(|loss| ("epoch_best_valid_loss", loss)),
        );
        for (name, value) in losses {
            if value.is_nan() || value < 0.0 {
                return Err(format!("{name} {value:?} is not a loss (0 or more)"));
            }
        }
        Ok(())
    }
}

/// What a checkpoint holds: the run's header files (written by its first checkpoint,
/// carried over by the later ones), the weights after the last epoch, the optimizer's
/// state and the record.
pub struct Snapshot<'a> {
    /// The configuration.
    pub config: &'a SavedConfig,
    /// The vocabulary.
    pub vocab: &'a Vocab,
    /// The `<UNK>` class counts (absent in directories of older versions).
    pub oov: Option<&'a OovClasses>,
    /// The weights now.
    pub weights: &'a nn::VarStore,
    /// Whether the weights now are the best so far (else the saved best ones stay).
    pub improved: bool,
    /// With weight averaging, the averaged weights by name: the model that is kept
    /// (`weights.safetensors`), while `weights` are what training goes on from.
    pub averaged: Option<Vec<(String, Tensor)>>,
    /// The optimizer's state tensors, by name.
    pub optimizer: Vec<(String, Tensor)>,
    /// Where training stands.
    pub state: &'a TrainState,
    /// Every epoch so far.
    pub history: &'a [EpochRecord],
}

pub use crate::oov::OOV_FILE;

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

    /// `last.safetensors`: the weights after the last epoch, where `--resume` goes on.
    pub fn last_weights(&self) -> PathBuf {
        self.root.join("last.safetensors")
    }
    /// `optimizer.safetensors`: the optimizer's moment estimates, for `--resume`.
    pub fn optimizer(&self) -> PathBuf {
        self.root.join("optimizer.safetensors")
    }

    /// Whether the directory holds a model (its `config.json`), once a checkpoint that
    /// a kill interrupted is completed.
    pub fn exists(&self) -> bool {
        let _ = finish_interrupted_swap(&self.root);
        self.config().exists()
    }

    /// Checks that a new run may write here: the directory is absent or empty, or holds
    /// a model and `force` is given.
    pub fn check_writable(&self, force: bool) -> Result<()> {
        finish_interrupted_swap(&self.root)?;
        let root = &self.root;
        match std::fs::read_dir(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", root.display())),
            Ok(mut entries) => {
                if entries.next().is_none() {
                    Ok(())
                } else if !self.exists() {
                    bail!(
                        "{} holds files that are not a model; choose another --out",
                        root.display()
                    )
                } else if !force {
                    bail!(
                        "{} already holds a model: pass --resume to continue it, or --force to replace it (the old model stays until the new one's first checkpoint)",
                        root.display()
                    )
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Saves a checkpoint as one unit. `fresh`: the run's first checkpoint, which keeps
    /// nothing of what the directory held.
    pub fn commit(&self, snapshot: &Snapshot, fresh: bool) -> Result<()> {
        if fresh && !snapshot.improved {
            bail!("the first checkpoint of a run must hold its best weights");
        }
        let staging = StagingDir::create(self.staging_path())?;
        let next = ModelDir::new(staging.path());
        // Later checkpoints of a run carry the header files (and the best weights when
        // they did not improve) over from the last one as links.
        if fresh {
            write_atomic(&next.config(), |w| {
                serde_json::to_writer_pretty(&mut *w, snapshot.config)?;
                writeln!(w)?;
                Ok(())
            })?;
            snapshot.vocab.save(&next.vocab())?;
            if let Some(oov) = snapshot.oov {
                oov.save(&next.oov())?;
            }
        }
        save_vars(snapshot.weights, &next.last_weights())?;
        match (snapshot.improved, &snapshot.averaged) {
            (false, _) => {}
            (true, None) => link_or_copy(&next.last_weights(), &next.weights())?,
            (true, Some(averaged)) => Tensor::write_safetensors(averaged, next.weights())
                .with_context(|| format!("cannot write {}", self.weights().display()))?,
        }
        if !snapshot.optimizer.is_empty() {
            Tensor::write_safetensors(&snapshot.optimizer, next.optimizer())
                .with_context(|| format!("cannot write {}", self.optimizer().display()))?;
        }
        write_atomic(&next.state(), |w| {
            serde_json::to_writer_pretty(&mut *w, snapshot.state)?;
            Ok(())
        })?;
        write_metrics(&next.metrics(), snapshot.history)?;
        if let Err(e) = crate::plot::plot_losses(&next.plot(), snapshot.history) {
            tracing::warn!("cannot draw {}: {e:#}", self.plot().display());
            let _ = std::fs::remove_file(next.plot());
        }
        if !fresh {
            self.carry_other_files(staging.path())?;
        }
        swap_dir(staging, &self.root)
    }

    /// Carries what the last checkpoint holds and this one does not write (the header,
    /// unimproved best weights, a user's files, folders and links) into the next one,
    /// so that a swap does not drop them. The record of the run is never carried: a
    /// plot that could not be drawn this time is left out rather than left stale.
    fn carry_other_files(&self, next: &Path) -> Result<()> {
        let rewritten = [
            self.last_weights(),
            self.optimizer(),
            self.state(),
            self.metrics(),
            self.plot(),
        ];
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.root.display()))
            }
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", self.root.display()))?;
            let target = next.join(entry.file_name());
            if !target.exists() && !rewritten.contains(&entry.path()) {
                carry(&entry.path(), &target)?;
            }
        }
        Ok(())
    }

    /// `.NAME.next` beside the directory: where the next checkpoint is assembled.
    fn staging_path(&self) -> PathBuf {
        sibling(&self.root, "next")
    }

    /// Reads `config.json` and `vocab.txt` and checks that they belong together.
    pub fn load_header(&self) -> Result<(SavedConfig, Vocab)> {
        finish_interrupted_swap(&self.root)?;
        let path = self.config();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a model directory: cannot read {}",
                self.root.display(),
                path.display()
            )
        })?;
        let config: SavedConfig = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: not an rnnlm model configuration: {e}", path.display())
        })?;
        if config.format != FORMAT {
            bail!(
                "{}: format '{}' is not {FORMAT}",
                path.display(),
                config.format
            );
        }
        config
            .model
            .check()
            .with_context(|| format!("{}: model", path.display()))?;
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

    /// Refuses a configuration whose parameters would not fit in the weights file,
    /// before building the model: a tampered `config.json` must not allocate
    /// terabytes on its way to a shape mismatch.
    fn check_weights_size(&self, config: &SavedConfig) -> Result<()> {
        let path = self.weights();
        let bytes = std::fs::metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let needed = config.model.parameter_count() * 4;
        if u128::from(bytes) < needed {
            bail!(
                "{}: {bytes} bytes, too small for the {needed} bytes of parameters that {} describes: truncated, or not this configuration's weights",
                path.display(),
                self.config().display()
            );
        }
        Ok(())
    }

    /// Reads `state.json`.
    pub fn load_state(&self) -> Result<TrainState> {
        finish_interrupted_swap(&self.root)?;
        let path = self.state();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let state: TrainState = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a training state", path.display()))?;
        state
            .check()
            .map_err(|e| anyhow::anyhow!("{}: not a training state: {e}", path.display()))?;
        Ok(state)
    }

    /// Loads a trained model onto `device`. If training swapped in a new checkpoint
    /// while the files were read, reads again, so the parts are always of one checkpoint.
    pub fn load(&self, device: Device) -> Result<LoadedModel> {
        let mut attempts = 0;
        loop {
            let before = directory_id(&self.root);
            let loaded = self.load_once(device);
            if before.is_none() || directory_id(&self.root) == before || attempts == 5 {
                return loaded;
            }
            attempts += 1;
        }
    }

    /// Loads a backward model (trained with `--reverse`), to be combined with a forward
    /// one; refuses a forward model.
    pub fn load_backward(&self, device: Device) -> Result<LoadedModel> {
        let model = self.load(device)?;
        if !model.config.tokenizer.reverse {
            bail!(
                "{}: --backward-model is not a backward model (trained without --reverse)",
                self.root.display()
            );
        }
        Ok(model)
    }

    /// Loads the forward model of a forward + backward pair: refuses a backward model
    /// here, which would make the pair backward + backward without a word.
    pub fn load_forward(&self, device: Device) -> Result<LoadedModel> {
        let model = self.load(device)?;
        if model.config.tokenizer.reverse {
            bail!(
                "{}: --model is a backward model (trained with --reverse); give the forward model as --model and this one as --backward-model",
                self.root.display()
            );
        }
        Ok(model)
    }

    fn load_once(&self, device: Device) -> Result<LoadedModel> {
        let (config, vocab) = self.load_header()?;
        self.check_weights_size(&config)?;
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
    let variables = vs.variables();
    if let Some(extra) = stored.keys().find(|name| !variables.contains_key(*name)) {
        bail!(
            "{}: tensor '{extra}' is not part of this configuration's model",
            path.display()
        );
    }
    let _guard = tch::no_grad_guard();
    for (name, mut var) in variables {
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
        if value.kind() != var.kind() {
            bail!(
                "{}: '{name}' holds {:?} values, the model needs {:?}",
                path.display(),
                value.kind(),
                var.kind()
            );
        }
        var.f_copy_(value).map_err(|e| {
            anyhow::anyhow!(
                "{}: '{name}': {}",
                path.display(),
                first_line(&e.to_string())
            )
        })?;
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The identity of the directory at `path` (its device and inode), which a swap changes.
fn directory_id(path: &Path) -> Option<same_file::Handle> {
    same_file::Handle::from_path(path).ok()
}

/// Saves `vs` to `path` (a `.safetensors` name: tch picks the format by it).
fn save_vars(vs: &nn::VarStore, path: &Path) -> Result<()> {
    vs.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Recreates `from` at `to`: files as links (or copies), folders entry by entry,
/// symbolic links as links to the same target.
fn carry(from: &Path, to: &Path) -> Result<()> {
    let kind = std::fs::symlink_metadata(from)
        .with_context(|| format!("cannot read {}", from.display()))?
        .file_type();
    if kind.is_symlink() {
        let points_to =
            std::fs::read_link(from).with_context(|| format!("cannot read {}", from.display()))?;
        std::os::unix::fs::symlink(points_to, to)
            .with_context(|| format!("cannot create {}", to.display()))
    } else if kind.is_dir() {
        std::fs::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
        for entry in
            std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
        {
            let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
            carry(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        link_or_copy(from, to)
    }
}

/// A hard link when the file system allows one (files of a checkpoint never change
/// once written), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}
