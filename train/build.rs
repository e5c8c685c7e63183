//! Builds `csrc/ops.cpp` (native operations tch does not expose) against the
//! libtorch that torch-sys found, with the same C++ ABI, and — because
//! torch-sys puts no rpath on our binaries and `--as-needed` would drop
//! libtorch — links libtorch explicitly and records where it lives.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rustc-check-cfg=cfg(tailor_cuda)");
    println!("cargo:rustc-check-cfg=cfg(tailor_gloo)");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let root = PathBuf::from(&lib).parent().map(PathBuf::from).unwrap_or_default();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    // A C++ file against libtorch's headers, with its ABI.
    let torch_cpp = |file: &str| {
        let mut b = cc::Build::new();
        b.cpp(true)
            .pic(true)
            .warnings(false)
            .include(root.join("include"))
            .include(root.join("include/torch/csrc/api/include"))
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .file(file);
        b
    };
    torch_cpp("csrc/ops.cpp").compile("tailor_ops");
    // Data-parallel workers: c10d's Gloo process group is in libtorch_cpu,
    // but its header includes Gloo's, which the wheel lacks; Debian's
    // libgloo-dev has them (`GLOO_INCLUDE` names another directory). Without
    // them dist.cpp builds as a stub that says what to install.
    let gloo = std::env::var("GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/include"));
    println!("cargo:rerun-if-changed={}", gloo.join("gloo/context.h").display());
    let mut dist = torch_cpp("csrc/dist.cpp");
    if gloo.join("gloo/context.h").exists() {
        // (/usr/include is searched anyway; naming it with -I would reorder the system directories.)
        if gloo != std::path::Path::new("/usr/include") {
            dist.include(&gloo);
        }
        dist.define("USE_C10D_GLOO", None).define("TAILOR_GLOO", None);
        println!("cargo:rustc-cfg=tailor_gloo");
    } else {
        println!("cargo:warning=Gloo's headers are not in {}: `workers:` above 1 will not run (install libgloo-dev)", gloo.display());
    }
    dist.compile("tailor_dist");
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
