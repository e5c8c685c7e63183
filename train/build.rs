//! Builds `csrc/ops.cpp` (native operations tch does not expose) against the
//! libtorch that torch-sys found, with the same C++ ABI, and — because
//! torch-sys puts no rpath on our binaries and `--as-needed` would drop
//! libtorch — links libtorch explicitly and records where it lives.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let root = PathBuf::from(&lib).parent().map(PathBuf::from).unwrap_or_default();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/ops.cpp")
        .compile("tailor_ops");
    for arg in [format!("-Wl,-rpath,{lib}"), "-Wl,--no-as-needed".into(), "-ltorch_cpu".into(), "-lc10".into(), "-Wl,--as-needed".into()] {
        println!("cargo:rustc-link-arg={arg}");
    }
}
