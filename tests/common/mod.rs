//! What the end-to-end tests share: running the binary and writing fixtures.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `rnnlm` binary with `args`.
pub fn rnnlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rnnlm"))
        .args(args)
        .output()
        .expect("run rnnlm")
}

/// Its standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}
