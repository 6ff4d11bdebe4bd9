//! Output files that appear whole or not at all.

use crate::checkpoint::temporary_path;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An output file written under a temporary name and renamed into place on
/// [`Sink::commit`], or standard output, or a device or pipe written in place.
pub struct Sink {
    /// Where the rows go.
    pub writer: BufWriter<Box<dyn Write>>,
    paths: Option<(PathBuf, PathBuf)>,
}

impl Sink {
    /// Opens `path` for writing, or standard output for `None`.
    pub fn create(path: Option<&Path>) -> Result<Self> {
        let (inner, paths): (Box<dyn Write>, _) = match path {
            None => (Box::new(io::stdout().lock()), None),
            Some(path) => match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    bail!("{} is a directory, not an output file", path.display())
                }
                // A device, pipe or socket (`/dev/null`, a FIFO) is written in place:
                // renaming a file over it would replace the device itself.
                Ok(meta) if !meta.is_file() => {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    (Box::new(file), None)
                }
                _ => {
                    // Through a symlink, the file it points to is replaced, not the link.
                    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                    let tmp = temporary_path(&path);
                    let file = File::create(&tmp)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    (Box::new(file), Some((tmp, path)))
                }
            },
        };
        Ok(Sink {
            writer: BufWriter::new(inner),
            paths,
        })
    }

    /// Flushes and moves the file into place.
    pub fn commit(mut self) -> Result<()> {
        self.writer.flush()?;
        if let Some((tmp, path)) = self.paths.take() {
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Not committed: an error stopped the run, so no half-written file is left.
        if let Some((tmp, _)) = &self.paths {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
