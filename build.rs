//! Link the binary so that it runs with no LD_LIBRARY_PATH and sees CUDA when a GPU is there.
//!
//! torch-sys reports the libtorch it built against as `DEP_TCH_LIBTORCH_LIB`. We add
//! that directory as an rpath, and link `libtorch_cuda` with `--no-as-needed`: nothing
//! in our code references a symbol of it, so the linker would otherwise drop it and
//! `tch::Cuda::is_available()` would silently report false on a GPU machine.
//!
//! It also compiles `csrc/fused_adam.cpp` against the same libtorch's headers: a
//! binding to ATen's fused Adam kernel, which tch does not expose. Where Gloo's headers
//! are installed (Debian's `libgloo-dev`; the torch wheel lacks them), it compiles
//! `csrc/process_group.cpp`, the binding to c10d's Gloo process group, and sets the
//! `rnnlm_gloo` cfg; without them, training runs in one process only. Where the torch
//! wheel's libtorch has CUDA and the CUDA runtime's and NCCL's headers sit beside it
//! (PyPI's `nvidia-cuda-runtime`, `nvidia-cuda-crt`, `nvidia-cuda-cccl` and
//! `nvidia-nccl` packages, which `make nccl-headers` completes), the binding also gets
//! c10d's NCCL group for ranks on GPUs (the `rnnlm_nccl` cfg).
use std::path::Path;

/// Where Debian's `libgloo-dev` puts Gloo's headers.
const GLOO_HEADERS: &str = "/usr/include";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/fused_adam.cpp");
    println!("cargo:rerun-if-changed=csrc/process_group.cpp");
    println!("cargo:rerun-if-changed=csrc/tensors.h");
    println!("cargo:rustc-check-cfg=cfg(rnnlm_gloo)");
    println!("cargo:rustc-check-cfg=cfg(rnnlm_nccl)");
    for name in ["LIBTORCH_USE_PYTORCH", "LIBTORCH_CXX11_ABI", "VIRTUAL_ENV"] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!(
            "torch-sys did not report where libtorch is (DEP_TCH_LIBTORCH_LIB), so the fused \
             Adam binding cannot be built; run `make build`, which installs torch into .venv \
             and builds with LIBTORCH_USE_PYTORCH=1"
        );
    };
    // libtorch's headers sit beside its lib directory (torch/lib, torch/include).
    let include = Path::new(&lib_dir).with_file_name("include");
    if !include.join("ATen").is_dir() {
        panic!(
            "no libtorch headers in {} (beside DEP_TCH_LIBTORCH_LIB={lib_dir}); the fused Adam \
             binding needs them",
            include.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .file("csrc/fused_adam.cpp")
        // libtorch's headers as system headers: the warnings are for our code.
        .flag("-isystem")
        .flag(include.to_str().expect("a UTF-8 libtorch path"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .warnings(true)
        .extra_warnings(true)
        .compile("rnnlm_fused_adam");
    let gloo = Path::new(GLOO_HEADERS).join("gloo/config.h");
    println!("cargo:rerun-if-changed={}", gloo.display());
    if gloo.exists() {
        let mut build = cc::Build::new();
        let nccl = nccl_headers(Path::new(&lib_dir));
        if let Some(dirs) = &nccl {
            for dir in dirs {
                build
                    .flag("-isystem")
                    .flag(dir.to_str().expect("a UTF-8 CUDA header path"));
            }
            build.flag("-DUSE_C10D_NCCL").flag("-DRNNLM_NCCL");
            println!("cargo:rustc-cfg=rnnlm_nccl");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
        }
        build
            .cpp(true)
            .file("csrc/process_group.cpp")
            .flag("-isystem")
            .flag(include.to_str().expect("a UTF-8 libtorch path"))
            .flag("-isystem")
            .flag(
                include
                    .join("torch/csrc/api/include")
                    .to_str()
                    .expect("a UTF-8 libtorch path"),
            )
            .flag("-std=c++17")
            .flag("-DUSE_C10D_GLOO")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
            .warnings(true)
            .compile("rnnlm_process_group");
        println!("cargo:rustc-cfg=rnnlm_gloo");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// The C++ string ABI of the libtorch that torch-sys builds against, found the way
/// torch-sys finds it (it does not pass it on): the venv's torch says when
/// LIBTORCH_USE_PYTORCH is set, else LIBTORCH_CXX11_ABI, by default 1. The binding
/// must match it, or it links against symbols libtorch does not have.
fn cxx11_abi() -> String {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_none() {
        return std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    }
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
        "python"
    } else {
        "python3"
    };
    let output = std::process::Command::new(python)
        .args([
            "-c",
            "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} to ask torch for its C++ ABI: {e}"));
    let abi = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if abi != "0" && abi != "1" {
        panic!(
            "{python} did not report torch's C++ ABI (is torch installed in it?): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    abi
}

/// The include directories of CUDA's runtime and NCCL, from the wheel's site-packages
/// (beside `torch/lib`), when all that c10d's NCCL header needs is there.
fn nccl_headers(lib_dir: &Path) -> Option<Vec<std::path::PathBuf>> {
    let site = lib_dir.parent()?.parent()?;
    let cuda = site.join("nvidia/cu13/include");
    let nccl = site.join("nvidia/nccl/include");
    let needed = [
        lib_dir.join("libtorch_cuda.so"),
        lib_dir.join("libc10_cuda.so"),
        cuda.join("cuda_runtime.h"),
        cuda.join("crt/host_config.h"),
        cuda.join("nv/target"),
        nccl.join("nccl.h"),
    ];
    for path in &needed {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    needed.iter().all(|p| p.exists()).then(|| vec![cuda, nccl])
}
