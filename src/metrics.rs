//! `metrics.csv`: one row per epoch of training, read back by `--resume`.

use crate::files::write_atomic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One row of `metrics.csv`: one epoch of training.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// Epochs completed (fractional when a run stopped mid-epoch).
    pub epoch: f64,
    /// Mean training loss, nats per token.
    pub train_loss: f64,
    /// Validation loss, nats per token.
    pub valid_loss: f64,
    /// Training tokens per second of training time.
    pub tokens_per_s: f64,
    /// Training seconds in this epoch.
    pub seconds: f64,
    /// Learning rate used in the epoch.
    pub lr: f64,
}

/// The columns of `metrics.csv`.
#[derive(Serialize, Deserialize)]
struct MetricsRow {
    epoch: f64,
    train_loss: f64,
    valid_loss: f64,
    valid_ppl: f64,
    tokens_per_s: f64,
    seconds: f64,
    lr: f64,
}

/// Writes `metrics.csv` (atomically).
pub fn write_metrics(path: &Path, history: &[EpochRecord]) -> Result<()> {
    write_atomic(path, |w| {
        let mut writer = csv::Writer::from_writer(w);
        for r in history {
            writer.serialize(MetricsRow {
                epoch: r.epoch,
                train_loss: r.train_loss,
                valid_loss: r.valid_loss,
                valid_ppl: r.valid_loss.exp(),
                tokens_per_s: r.tokens_per_s,
                seconds: r.seconds,
                lr: r.lr,
            })?;
        }
        writer.flush()?;
        Ok(())
    })
}

/// Reads `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRecord>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut history = Vec::new();
    for (n, row) in reader.deserialize::<MetricsRow>().enumerate() {
        let row = row.map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), n + 2))?;
        history.push(EpochRecord {
            epoch: row.epoch,
            train_loss: row.train_loss,
            valid_loss: row.valid_loss,
            tokens_per_s: row.tokens_per_s,
            seconds: row.seconds,
            lr: row.lr,
        });
    }
    Ok(history)
}
