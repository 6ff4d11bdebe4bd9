//! How a command ends: a panic or a closed standard output turned into what the
//! user should see.

use anyhow::Result;
use rnnlm::torch_error::{is_out_of_memory, panic_text, torch_message};

/// The first panic's message and place, kept by the panic hook for [`guarded`].
pub(crate) static PANIC: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// Runs a command with a boundary around it: tch's non-`f_` methods panic on
/// libtorch's errors (out of memory, a failed check), and such a panic, in any
/// thread, becomes one error line instead of a backtrace and exit 101.
pub(crate) fn guarded(command: impl FnOnce() -> Result<()>) -> Result<()> {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_text(info.payload());
        let place = info.location().map(|l| l.to_string()).unwrap_or_default();
        let _ = PANIC.set((message, place));
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)) {
        Ok(result) => result,
        Err(_) => {
            let (message, place) = PANIC.get().cloned().unwrap_or_default();
            Err(anyhow::anyhow!(panic_line(&message, &place)))
        }
    }
}

/// One line for a panic: libtorch's own first line (with what to lower when memory
/// ran out), or the message and place of a bug.
pub(crate) fn panic_line(message: &str, place: &str) -> String {
    let torch = torch_message(message);
    match torch {
        Some(text) if is_out_of_memory(&text) => format!(
            "out of memory: {text}; lower --batch-size (or --hidden, --embed, --bptt), or on a GPU try --device cpu"
        ),
        Some(text) => format!("libtorch: {text}"),
        None if is_out_of_memory(message) => format!(
            "out of memory: {}; lower --batch-size (or --hidden, --embed, --bptt), or on a GPU try --device cpu",
            message.lines().next().unwrap_or_default()
        ),
        None => format!(
            "internal error at {place}: {}",
            message.lines().next().unwrap_or_default()
        ),
    }
}

/// A closed standard output (`rnnlm score … | head -1`) is success, as for xsv and
/// ripgrep. The csv crate wraps the I/O error in its own type.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            match cause.downcast_ref::<csv::Error>().map(csv::Error::kind) {
                Some(csv::ErrorKind::Io(io)) => Some(io),
                _ => None,
            }
        });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
