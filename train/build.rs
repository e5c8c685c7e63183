//! Builds `csrc/ops.cpp` (native operations tch does not expose) against the
//! libtorch that torch-sys found, with the same C++ ABI, and — because
//! torch-sys puts no rpath on our binaries and `--as-needed` would drop
//! libtorch — links libtorch explicitly and records where it lives.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rustc-check-cfg=cfg(tailor_cuda)");
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
    // A CUDA libtorch (`TAILOR_CUDA=1 scripts/setup.sh`) also has libtorch_cuda: link it without
    // --as-needed too, or its CUDA backend never registers and no device is ever seen.
    let cuda = PathBuf::from(&lib).join("libtorch_cuda.so").exists();
    let mut libs = vec!["-ltorch_cpu", "-lc10"];
    if cuda {
        libs.extend(["-ltorch_cuda", "-lc10_cuda"]);
        println!("cargo:rustc-cfg=tailor_cuda");
    }
    let mut args = vec![format!("-Wl,-rpath,{lib}"), "-Wl,--no-as-needed".into()];
    args.extend(libs.iter().map(|l| l.to_string()));
    args.push("-Wl,--as-needed".into());
    for arg in args {
        println!("cargo:rustc-link-arg={arg}");
    }
}
