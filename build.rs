//! Link the binary so that it runs with no LD_LIBRARY_PATH and sees CUDA when a GPU is there.
//!
//! torch-sys reports the libtorch it built against as `DEP_TCH_LIBTORCH_LIB`. We add
//! that directory as an rpath, and link `libtorch_cuda` with `--no-as-needed`: nothing
//! in our code references a symbol of it, so the linker would otherwise drop it and
//! `tch::Cuda::is_available()` would silently report false on a GPU machine.
//!
//! It also compiles `csrc/fused_adam.cpp` against the same libtorch's headers: a
//! binding to ATen's fused Adam kernel, which tch does not expose.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/fused_adam.cpp");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // libtorch's headers sit beside its lib directory (torch/lib, torch/include).
    let include = Path::new(&lib_dir).with_file_name("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/fused_adam.cpp")
        .include(&include)
        .flag("-std=c++17")
        // The PyPI builds of torch use the C++11 string ABI.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-w")
        .compile("rnnlm_fused_adam");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
