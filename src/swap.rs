//! Model directories replaced whole, on any file system.
//!
//! A checkpoint is assembled in a sibling directory, `.NAME.next` ([`StagingDir`]), and
//! put in the model directory's place by [`swap_dir`]: one `renameat2` exchange where
//! the file system has it. The Linux NFS client and many FUSE file systems refuse the
//! exchange (EINVAL); there the old directory is renamed aside to `.NAME.old` and the
//! new one into place. A kill between those two renames leaves no `NAME`, only the
//! complete `.NAME.next` and the old directory aside; [`finish_interrupted_swap`],
//! which every load runs first, completes that swap, and so does a training, under
//! its own lock, before it reads the directory ([`TrainingLock::tidy`]).
//!
//! A training holds `.NAME.lock` ([`TrainingLock`]) while it runs, and removes it when
//! it ends, so that a second training into the same directory is refused, and a
//! reader never completes a swap that a live training is in the middle of.

use crate::files::{create_registered, register, unregister, TEMPORARIES};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Set (to anything) to make the atomic exchange fail with EINVAL, as on NFS, so that
/// the two-rename path can be tested on a local disk.
pub const FORCE_RENAME_FALLBACK: &str = "RNNLM_TEST_NO_RENAME_EXCHANGE";

/// How long a reader waits for a live training to finish a two-rename swap.
const SWAP_WAIT: Duration = Duration::from_secs(10);

/// `.NAME.<what>` beside `target`.
pub fn sibling(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    target.with_file_name(format!(".{name}.{what}"))
}

/// A directory being filled beside its destination; removed if dropped before
/// [`swap_dir`] moves it into place.
pub struct StagingDir {
    path: PathBuf,
    done: bool,
}

impl StagingDir {
    /// Creates `path` empty, removing whatever a killed run left there.
    pub fn create(path: PathBuf) -> Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove the leftover {}", path.display()))?;
        }
        let path = create_registered(|| {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok((path.clone(), path))
        })?;
        Ok(StagingDir { path, done: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
        }
        unregister(&self.path);
    }
}

/// Puts the complete directory `staging` at `target`: a reader of `target` finds the
/// old directory or the new one (after a kill between the fallback's two renames,
/// through [`finish_interrupted_swap`]). The old one is removed.
pub fn swap_dir(mut staging: StagingDir, target: &Path) -> Result<()> {
    sync_dir(staging.path())?;
    {
        // The signal handler sweeps under this lock, so no swap is half done when it
        // empties the staging directory (which would empty the new model).
        let mut temporaries = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
        if target.exists() {
            match exchange(staging.path(), target) {
                // `staging` now names the old directory; its drop removes it.
                Ok(()) => {}
                Err(e) if exchange_unsupported(&e) => {
                    replace_by_renames(&mut staging, target, &mut temporaries)?
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot replace {}", target.display()))
                }
            }
        } else {
            std::fs::rename(staging.path(), target)
                .with_context(|| format!("cannot create {}", target.display()))?;
            staging.done = true;
        }
    }
    sync_parent(target)
}

/// The fallback: the old directory aside, the new one in. `staging` then guards the
/// old directory, so that its drop (or a signal's sweep) removes it.
fn replace_by_renames(
    staging: &mut StagingDir,
    target: &Path,
    temporaries: &mut BTreeSet<PathBuf>,
) -> Result<()> {
    let aside = sibling(target, "old");
    if aside.exists() {
        std::fs::remove_dir_all(&aside)
            .with_context(|| format!("cannot remove the leftover {}", aside.display()))?;
    }
    std::fs::rename(target, &aside)
        .with_context(|| format!("cannot move {} aside", target.display()))?;
    if let Err(e) = std::fs::rename(staging.path(), target) {
        let _ = std::fs::rename(&aside, target);
        return Err(e).with_context(|| format!("cannot replace {}", target.display()));
    }
    temporaries.remove(&staging.path);
    temporaries.insert(aside.clone());
    staging.path = aside;
    Ok(())
}

/// Removes a staging directory that a killed training left half written beside
/// `target` (`.NAME.next` with no `.NAME.old`: not part of an interrupted swap, which
/// [`finish_interrupted_swap`] completes). The caller holds `target`'s training lock,
/// so no live training is writing it.
fn remove_abandoned_staging(target: &Path) -> Result<()> {
    let next = sibling(target, "next");
    if next.exists() && !sibling(target, "old").exists() {
        std::fs::remove_dir_all(&next)
            .with_context(|| format!("cannot remove the leftover {}", next.display()))?;
    }
    Ok(())
}

/// Completes a swap that a kill stopped between the fallback's two renames, and
/// removes an old directory left aside. A no-op (one `stat`) in the usual case.
pub fn finish_interrupted_swap(target: &Path) -> Result<()> {
    let aside = sibling(target, "old");
    if !aside.exists() {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        if target.exists() {
            // Done but for the cleanup, which a live training does itself.
            if TrainingLock::is_free(target) {
                let _ = std::fs::remove_dir_all(&aside);
            }
            return Ok(());
        }
        if let Some(lock) = TrainingLock::try_acquire(target, false)? {
            return lock.complete_swap();
        }
        if started.elapsed() > SWAP_WAIT {
            bail!(
                "{} is missing while {} holds it mid-checkpoint; try again",
                target.display(),
                TrainingLock::holder(target)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The advisory lock a training holds on its model directory (`.NAME.lock`, which
/// names the holder's pid). Released, and the file removed, when dropped; released
/// when the process ends in any way. On a file system without locks (NFS without a
/// lock manager: ENOLCK) it is held in name only, with a warning.
pub struct TrainingLock {
    file: File,
    path: PathBuf,
    target: PathBuf,
}

impl Drop for TrainingLock {
    fn drop(&mut self) {
        // Removed while still held: whoever opens the name afterwards gets a new file,
        // and one who opened the old one sees that it is no longer at the name.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
        unregister(&self.path);
    }
}

impl TrainingLock {
    /// Puts the model directory in order under this lock: completes a swap that a
    /// kill cut between the fallback's two renames, and removes a staging directory
    /// that a killed training left half written. A training runs it first, before it
    /// reads the directory, so no load has to wait for a lock this process holds.
    pub fn tidy(&self) -> Result<()> {
        if sibling(&self.target, "old").exists() {
            self.complete_swap()?;
        }
        remove_abandoned_staging(&self.target)
    }

    /// Completes a swap cut between its two renames, the lock held: the staging
    /// directory is complete once the old one has gone aside, so it takes the model's
    /// place, or else the old one goes back.
    fn complete_swap(&self) -> Result<()> {
        let (target, aside) = (&self.target, sibling(&self.target, "old"));
        if !target.exists() {
            let next = sibling(target, "next");
            let from = if next.exists() { &next } else { &aside };
            std::fs::rename(from, target).with_context(|| {
                format!(
                    "{} is missing and cannot be restored from {}",
                    target.display(),
                    from.display()
                )
            })?;
            sync_parent(target)?;
        }
        let _ = std::fs::remove_dir_all(&aside);
        Ok(())
    }

    /// Takes the lock, or refuses with a line that names the training holding it.
    pub fn acquire(target: &Path) -> Result<Self> {
        match Self::try_acquire(target, true)? {
            Some(lock) => Ok(lock),
            None => bail!(
                "{} is being written by another training ({}); wait for it to end or choose another --out",
                target.display(),
                Self::holder(target)
            ),
        }
    }

    /// Takes the lock if no one holds it; `record` writes this process's pid into it
    /// (a training does; a reader that only completes a swap does not).
    fn try_acquire(target: &Path, record: bool) -> Result<Option<Self>> {
        let path = sibling(target, "lock");
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // A holder removes the file as it lets go; a lock taken on a file that is no
        // longer at the name locks nothing, so take it again on the one that is.
        let mut file = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open the lock {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) if locks_unsupported(&e) => {
                    if record {
                        tracing::warn!(
                            "cannot lock {} ({e}): this file system has no locks, so nothing stops a second training into {} while this one runs",
                            path.display(),
                            target.display()
                        );
                    }
                    break file;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            if same_file(&file, &path) {
                break file;
            }
        };
        if record {
            // A signal's sweep removes it too.
            register(&path);
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .with_context(|| format!("cannot write the lock {}", path.display()))?;
        }
        Ok(Some(TrainingLock {
            file,
            path,
            target: target.to_path_buf(),
        }))
    }

    /// Whether no training holds the lock now.
    fn is_free(target: &Path) -> bool {
        matches!(Self::try_acquire(target, false), Ok(Some(_)))
    }

    /// "process PID, lock .NAME.lock", as far as the lock file tells.
    fn holder(target: &Path) -> String {
        let path = sibling(target, "lock");
        let mut pid = String::new();
        let _ = File::open(&path).and_then(|mut f| f.read_to_string(&mut pid));
        match pid.trim() {
            "" => format!("lock {}", path.display()),
            pid => format!("process {pid}, lock {}", path.display()),
        }
    }
}

/// Whether the open `file` is the one at `path` now.
fn same_file(file: &File, path: &Path) -> bool {
    let open = file.try_clone().and_then(same_file::Handle::from_file);
    matches!((open, same_file::Handle::from_path(path)), (Ok(a), Ok(b)) if a == b)
}

/// `flock` refused by the file system itself (NFS without a lock manager, some FUSE
/// file systems), not by another holder.
fn locks_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || [libc::ENOLCK, libc::EOPNOTSUPP, libc::ENOSYS].contains(&e.raw_os_error().unwrap_or(0))
}

fn exchange_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || [libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP].contains(&e.raw_os_error().unwrap_or(0))
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    if std::env::var_os(FORCE_RENAME_FALLBACK).is_some() {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", path.display()))
}

fn sync_parent(target: &Path) -> Result<()> {
    match target.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}
