//! What decides the exact bits a libtorch stage computes, beyond its data
//! and settings — and so what its fingerprint must hold.
//!
//! Two things change floating-point results on CPU for the same inputs:
//!
//! * **The instruction set.** MKL, oneDNN and ATen pick kernels by CPU
//!   (AVX-512 here, AVX2 there, vendor-specific paths), and each sums in
//!   its own order. The trainer is started with these pinned to the AVX2
//!   paths every x86-64 machine of the last decade has (`MKL_CBWR=AVX2,STRICT`
//!   — MKL's conditional numerical reproducibility, strict mode —
//!   `ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2`), so one model
//!   of CPU computes what another does. A user who sets any of these
//!   variables keeps their value, and the value enters the fingerprint.
//! * **The thread count.** ATen splits reductions (a loss, a norm's weight
//!   gradient) into one partial sum per thread, so 1 and 2 threads add in a
//!   different order. The trainer therefore always gets an explicit count
//!   (the `threads:` setting, else this machine's CPUs) and the count is in
//!   the fingerprint: a machine with another count recomputes rather than
//!   being served bits it would not have produced. Setting `threads:` in
//!   the pipeline makes results shareable across machines.

use std::collections::BTreeMap;

/// Environment pinned for every `tailor-train` process (unless set).
pub const PINNED: &[(&str, &str)] = &[("MKL_CBWR", "AVX2,STRICT"), ("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")];

/// The libtorch thread count a stage runs with.
pub fn threads(setting: Option<usize>) -> usize {
    setting.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get)).max(1)
}

/// The values the pinned variables will have in the trainer.
pub fn pinned() -> Vec<(&'static str, String)> {
    PINNED.iter().map(|(k, v)| (*k, std::env::var(k).unwrap_or_else(|_| (*v).to_string()))).collect()
}

/// Fingerprint entries for a libtorch stage: thread count and pinned kernels.
pub fn env(threads: usize) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("threads".into(), threads.to_string());
    env.insert("kernels".into(), pinned().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    env
}

/// The plan note that says why the thread count matters.
pub fn note(setting: Option<usize>) -> Option<String> {
    setting.is_none().then(|| {
        format!(
            "results depend on the libtorch thread count ({} here, from this machine's CPUs); set `threads:` to reuse them on machines with another count",
            threads(None)
        )
    })
}
