//! How a command ends: a panic or a closed standard output turned into what the
//! user should see.

use anyhow::Result;
use rnnlm::torch_error::{is_out_of_memory, panic_text, torch_message};

std::thread_local! {
    /// Where this thread last panicked, kept by the panic hook for [`guarded`]: per
    /// thread, so that a worker's panic never stands in for the main thread's.
    static PANIC_PLACE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Runs a command with a boundary around it: tch's non-`f_` methods panic on
/// libtorch's errors (out of memory, a failed check), and such a panic of the
/// command's thread becomes one error line instead of a backtrace and exit 101. The
/// line is the command's own panic, whatever panicked on other threads before it.
pub(crate) fn guarded(command: impl FnOnce() -> Result<()>) -> Result<()> {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| l.to_string()).unwrap_or_default();
        PANIC_PLACE.with(|p| *p.borrow_mut() = place);
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)) {
        Ok(result) => result,
        Err(payload) => {
            let message = panic_text(payload.as_ref());
            let place = PANIC_PLACE.with(|p| p.borrow().clone());
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

#[cfg(test)]
mod tests {
    use super::guarded;

    /// A worker thread's panic first, then the main thread's: the line is the main
    /// thread's, with its place.
    #[test]
    fn the_boundary_reports_the_main_threads_panic() {
        let previous = std::panic::take_hook();
        let result = guarded(|| {
            let _ = std::thread::spawn(|| panic!("a worker's panic")).join();
            panic!("the main thread's panic")
        });
        std::panic::set_hook(previous);
        let line = result.unwrap_err().to_string();
        assert!(line.contains("the main thread's panic"), "{line}");
        assert!(line.contains("errors.rs"), "{line}");
    }
}
