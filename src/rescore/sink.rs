//! Output tables (CSV, or tab-separated) that appear whole or not at all.

use crate::files::AtomicFile;
use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::rc::Rc;

/// An output file written under a temporary name and renamed into place on
/// [`Sink::commit`] (removed if the sink is dropped first), or standard output, or
/// a device or pipe written in place. Rows go through `csv::Writer`, so a field that
/// holds the delimiter, a quote or a line break is quoted rather than breaking the row.
///
/// Standard output cannot be taken back, so what is written to it is held until
/// [`Sink::release`] or [`Sink::commit`]: a run that fails before then prints nothing,
/// not a header with no rows under it.
pub struct Sink {
    /// Where the rows go.
    pub writer: csv::Writer<BufWriter<Box<dyn Write>>>,
    file: Option<AtomicFile>,
    held: Option<Rc<RefCell<Vec<u8>>>>,
}

/// Bytes bound for standard output, kept until the rows they hold are final.
struct Held(Rc<RefCell<Vec<u8>>>);

impl Write for Held {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    /// Opens `path` for writing, or standard output for `None`, for rows whose fields
    /// are separated by `delimiter`.
    pub fn create(path: Option<&Path>, delimiter: u8) -> Result<Self> {
        let mut held = None;
        let (inner, file): (Box<dyn Write>, _) = match path {
            None => {
                let bytes = Rc::new(RefCell::new(Vec::new()));
                held = Some(Rc::clone(&bytes));
                (Box::new(Held(bytes)), None)
            }
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
                    let mut file = AtomicFile::create(&path)?;
                    let handle = file
                        .file()
                        .try_clone()
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    (Box::new(handle), Some(file))
                }
            },
        };
        Ok(Sink {
            writer: csv::WriterBuilder::new()
                .delimiter(delimiter)
                .from_writer(BufWriter::new(inner)),
            file,
            held,
        })
    }

    /// Prints the rows written so far when the sink is standard output; they are final.
    pub fn release(&mut self) -> Result<()> {
        self.writer.flush()?;
        if let Some(held) = &self.held {
            let bytes = std::mem::take(&mut *held.borrow_mut());
            let mut stdout = io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
        Ok(())
    }

    /// Flushes and moves the file into place (prints what standard output holds).
    pub fn commit(mut self) -> Result<()> {
        self.release()?;
        let mut inner = self.writer.into_inner().map_err(|e| e.into_error())?;
        inner.flush()?;
        match self.file.take() {
            Some(file) => file.commit(),
            None => Ok(()),
        }
    }
}
