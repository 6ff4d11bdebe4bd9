//! Progress on standard error for the long commands (training epochs, scoring), drawn
//! when standard error is a terminal and the `cli` feature is on; otherwise nothing,
//! so that the library alone needs no progress-bar crate.

#[cfg(feature = "cli")]
use std::io::IsTerminal;

/// A progress bar or spinner, or nothing.
pub struct Progress {
    #[cfg(feature = "cli")]
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// Counts `len` tokens with a loss message: a training epoch.
    pub fn tokens(len: u64) -> Self {
        #[cfg(feature = "cli")]
        {
            if !std::io::stderr().is_terminal() {
                return Self::none();
            }
            let bar = indicatif::ProgressBar::new(len);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {percent:>3}% {human_pos}/{human_len} tokens {per_sec:>12} loss {msg} ETA {eta}",
            );
            if let Ok(style) = style {
                bar.set_style(style);
            }
            Progress { bar }
        }
        #[cfg(not(feature = "cli"))]
        {
            let _ = len;
            Self::none()
        }
    }

    /// Counts rows of unknown total: scoring a stream.
    pub fn rows() -> Self {
        #[cfg(feature = "cli")]
        {
            if !std::io::stderr().is_terminal() {
                return Self::none();
            }
            Progress {
                bar: indicatif::ProgressBar::new_spinner().with_message("rows scored"),
            }
        }
        #[cfg(not(feature = "cli"))]
        Self::none()
    }

    /// Shows nothing.
    pub fn none() -> Self {
        Progress {
            #[cfg(feature = "cli")]
            bar: indicatif::ProgressBar::hidden(),
        }
    }

    /// Moves on by `n`.
    pub fn inc(&self, n: u64) {
        #[cfg(feature = "cli")]
        self.bar.inc(n);
        #[cfg(not(feature = "cli"))]
        let _ = n;
    }

    /// Shows `message` beside the bar.
    pub fn set_message(&self, message: impl FnOnce() -> String) {
        #[cfg(feature = "cli")]
        if !self.bar.is_hidden() {
            self.bar.set_message(message());
        }
        #[cfg(not(feature = "cli"))]
        let _ = message;
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        #[cfg(feature = "cli")]
        self.bar.finish_and_clear();
    }
}
