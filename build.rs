//! Only the `tailor-train` binary links libtorch; `tailor` stays light so
//! that no-op runs start fast. torch-sys sets no rpath and `--as-needed`
//! would drop libtorch, so both are handled here for that binary alone.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        for arg in [format!("-Wl,-rpath,{lib}"), "-Wl,--no-as-needed".into(), "-ltorch_cpu".into(), "-lc10".into(), "-Wl,--as-needed".into()] {
            println!("cargo:rustc-link-arg-bin=tailor-train={arg}");
        }
    }
}
