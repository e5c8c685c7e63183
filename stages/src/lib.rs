//! Tailor's built-in stages. Each stage kind is one module implementing
//! [`tailor_engine::Stage`]; shared domain types (records) live beside them.
//! Nothing here knows about scheduling, caching or the DAG.

pub mod clean;
pub mod collect;
pub mod estimate;
pub mod evaluate;
pub mod format;
pub mod metric;
pub mod model;
pub mod record;
pub mod report;
pub mod retrain;
pub mod runner;
pub mod show;
pub mod text;
pub mod tokenizer;
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
    r
}
