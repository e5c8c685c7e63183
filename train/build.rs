//! torch-sys puts no rpath on our binaries and `--as-needed` would drop
//! libtorch: link it explicitly and record where it lives.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cpu");
        println!("cargo:rustc-link-arg=-lc10");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
