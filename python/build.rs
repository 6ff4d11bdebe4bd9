//! Records the version of the torch whose libtorch the extension links, so that
//! `import rnnlm` can refuse an interpreter that would load another one.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    // torch/lib sits beside torch/version.py: `__version__ = '2.11.0+cu130'`.
    let version_file = Path::new(&lib_dir).with_file_name("version.py");
    println!("cargo:rerun-if-changed={}", version_file.display());
    let version = std::fs::read_to_string(&version_file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=RNNLM_BUILT_TORCH={version}");
}
