//! Tailor's built-in stage kinds. Each kind is one module implementing
//! [`tailor_engine::Stage`]: its config type, what it declares (inputs,
//! files, environment), its plan notes and its `run`, which calls the
//! domain libraries (`libs/`: records and text quality, metrics, model
//! formats, reports) and, for training and evaluation, the `tailor-train`
//! process through the job files of `tailor-protocol`. Nothing here knows
//! about scheduling, caching or the DAG; [`registry`] is where a kind is
//! registered.

pub mod benchmark;
pub mod clean;
pub mod collect;
pub mod compare;
pub mod evaluate;
pub mod files;
pub mod format;
/// Implementation identity of each module, from `build.rs`: a digest of
/// the module's code and of everything it uses (see the build script).
pub mod identity {
    include!(concat!(env!("OUT_DIR"), "/identity.rs"));
}
pub mod inputs;
pub mod numerics;
pub mod retrain;
pub mod runner;
pub mod show;
pub mod stream;
pub mod train;

use tailor_engine::Registry;

/// A registry with every built-in stage kind.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<collect::Collect>();
    r.register::<clean::Clean>();
    r.register::<format::Format>();
    r.register::<train::Train>();
    r.register::<retrain::Retrain>();
    r.register::<evaluate::Evaluate>();
    r.register::<benchmark::Benchmark>();
    r
}

#[cfg(test)]
mod tests {
    /// Each stage kind's identity covers the code it runs: the stages that
    /// start `tailor-train` include the trainer, the data stages do not
    /// (so a trainer change reruns training, not cleaning).
    #[test]
    fn identities_cover_the_code_each_stage_runs() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/identity.rs"));
        let doc = |kind: &str| {
            generated.lines().find(|l| l.starts_with(&format!("/// Identity of `{kind}`:"))).unwrap_or_else(|| panic!("no identity for {kind}")).to_string()
        };
        for kind in ["train", "retrain", "evaluate", "benchmark"] {
            assert!(doc(kind).ends_with("and the trainer."), "{}", doc(kind));
        }
        for kind in ["collect", "clean", "format"] {
            assert!(!doc(kind).contains("trainer"), "{}", doc(kind));
        }
        assert!(doc("clean").contains("libs/text/src/minhash.rs") && doc("format").contains("tokenizer.rs"));
        let ids = [
            super::identity::COLLECT,
            super::identity::CLEAN,
            super::identity::FORMAT,
            super::identity::TRAIN,
            super::identity::RETRAIN,
            super::identity::EVALUATE,
            super::identity::BENCHMARK,
        ];
        let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
