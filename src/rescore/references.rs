//! The reference transcripts of N-best lists: an `utterance_id,reference` CSV.

use crate::rescore::nbest::require_column;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;

/// `utterance_id,reference` rows, each used once.
pub struct References {
    /// The file's name in messages.
    pub name: String,
    /// Reference and line, by utterance; `None` once taken.
    rows: HashMap<String, (Option<String>, u64)>,
}

impl References {
    /// Reads the file (`utterance_id` and `reference` columns).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let name = path.display().to_string();
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("cannot open {name}"))?;
        let headers = reader
            .headers()
            .with_context(|| format!("{name}: cannot read the header"))?
            .clone();
        let id = require_column(&headers, &name, "utterance_id", "--references")?;
        let text = require_column(&headers, &name, "reference", "--references")?;
        let mut rows: HashMap<String, (Option<String>, u64)> = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                anyhow!("{name}: line {line}: {e}")
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let utterance = record.get(id).unwrap_or("").to_string();
            if let Some((_, first)) = rows.get(&utterance) {
                bail!("{name}: line {line}: a second reference for utterance '{utterance}' (the first is on line {first})");
            }
            rows.insert(
                utterance,
                (Some(record.get(text).unwrap_or("").to_string()), line),
            );
        }
        Ok(References { name, rows })
    }

    /// The reference of `utterance`; `None` if there is none, or it was taken already.
    pub fn take(&mut self, utterance: &str) -> Option<String> {
        self.rows.get_mut(utterance).and_then(|(r, _)| r.take())
    }

    /// A reference never taken, the earliest in the file.
    pub fn unused(&self) -> Option<(&str, u64)> {
        self.rows
            .iter()
            .filter(|(_, (r, _))| r.is_some())
            .map(|(id, (_, line))| (id.as_str(), *line))
            .min_by_key(|&(_, line)| line)
    }
}
