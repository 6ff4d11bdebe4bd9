//! Files and directories that appear whole or not at all.
//!
//! Every output is written under a hidden temporary name beside its destination and
//! renamed into place when complete ([`AtomicFile`], [`write_atomic`]); a model
//! directory is replaced whole by [`crate::swap`]. Temporary
//! paths are registered while they exist, so that SIGINT or SIGTERM removes them
//! before the process exits ([`remove_temporaries_on_signal`]); an error drops them
//! on the way out.

use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tempfile::NamedTempFile;

/// Temporary files and directories that a signal must not leave behind.
pub(crate) static TEMPORARIES: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

pub(crate) fn register(path: &Path) {
    if let Ok(mut set) = TEMPORARIES.lock() {
        set.insert(path.to_path_buf());
    }
}

/// Makes a temporary (`make` returns it and its path) and registers it in one step
/// under the sweep's lock: a signal then finds it registered or never made, never
/// made but unknown.
pub(crate) fn create_registered<T>(make: impl FnOnce() -> Result<(T, PathBuf)>) -> Result<T> {
    let mut set = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
    let (made, path) = make()?;
    set.insert(path);
    Ok(made)
}

pub(crate) fn unregister(path: &Path) {
    if let Ok(mut set) = TEMPORARIES.lock() {
        set.remove(path);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: removes every registered temporary and exits with
/// 128 + the signal number, as a shell reports a killed process.
pub fn remove_temporaries_on_signal() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install the signal handlers")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held to the exit, so no new temporary is registered after the sweep.
            let set = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
            for path in set.iter() {
                if path.is_dir() {
                    // Another thread may still be writing a file into it, so that one
                    // pass finds it not empty at the end; once it is gone, no file can
                    // be made in it.
                    for _ in 0..100 {
                        if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
                            break;
                        }
                    }
                } else {
                    let _ = std::fs::remove_file(path);
                }
            }
            eprintln!("error: interrupted (signal {signal}); no partial output was left");
            // libtorch's worker threads are still running: exit handlers and static
            // destructors run under them would crash, so leave without running any.
            // SAFETY: _exit only ends the process.
            unsafe { libc::_exit(128 + signal) }
        }
    });
    Ok(())
}

/// A file written under a hidden temporary name in the destination's directory and
/// renamed over the destination by [`AtomicFile::commit`]; dropped uncommitted, the
/// temporary is removed.
pub struct AtomicFile {
    temp: Option<NamedTempFile>,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts a file that will become `path`. The temporary keeps `path`'s extension,
    /// for writers that choose the format by it.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suffix = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let temp = create_registered(|| {
            let prefix = format!(".{name}.");
            let mut builder = tempfile::Builder::new();
            builder.prefix(&prefix).suffix(&suffix);
            // A temporary file is private (0600) by default; the finished file should
            // have the mode any other new file gets (0666 less the umask), so that a
            // model, a scored CSV or a report can be shared like the rest of the directory.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                builder.permissions(std::fs::Permissions::from_mode(0o666));
            }
            let temp = builder
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            let path = temp.path().to_path_buf();
            Ok((temp, path))
        })?;
        Ok(AtomicFile {
            temp: Some(temp),
            path: path.to_path_buf(),
        })
    }

    /// The temporary path, for writers that take a path rather than a stream.
    pub fn temp_path(&self) -> &Path {
        self.temp.as_ref().map_or(&self.path, |t| t.path())
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.temp
            .as_mut()
            .expect("an AtomicFile is only consumed by commit")
            .as_file_mut()
    }

    /// Syncs the temporary to disk and renames it over the destination.
    pub fn commit(mut self) -> Result<()> {
        let temp = self
            .temp
            .take()
            .expect("an AtomicFile is only consumed by commit");
        let temp_path = temp.path().to_path_buf();
        temp.as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        let result = temp
            .persist(&self.path)
            .map(|_| ())
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", self.path.display()));
        unregister(&temp_path);
        result
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let path = temp.path().to_path_buf();
            drop(temp);
            unregister(&path);
        }
    }
}

/// Writes `path` through `fill`, atomically.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    {
        let mut writer = BufWriter::new(file.file());
        fill(&mut writer).with_context(|| format!("cannot write {}", path.display()))?;
        writer
            .flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.commit()
}

#[cfg(all(test, unix))]
mod tests {
    use super::write_atomic;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_finished_file_has_the_mode_of_any_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::File::create(&plain).unwrap();
        let atomic = dir.path().join("atomic.txt");
        write_atomic(&atomic, |w| Ok(w.write_all(b"x")?)).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
    }
}
