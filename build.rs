//! Link the binary so that it runs with no LD_LIBRARY_PATH and sees CUDA when a GPU is there.
//!
//! torch-sys reports the libtorch it built against as `DEP_TCH_LIBTORCH_LIB`. We add
//! that directory as an rpath, and link `libtorch_cuda` with `--no-as-needed`: nothing
//! in our code references a symbol of it, so the linker would otherwise drop it and
//! `tch::Cuda::is_available()` would silently report false on a GPU machine.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
