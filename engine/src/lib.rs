//! Tailor's engine: everything about pipelines that is not about fine-tuning.
//!
//! A pipeline file is parsed with source positions ([`yaml`]), overridden and
//! parameterised ([`config`]), validated against schemas generated from the
//! stage config types ([`schema`]), bound into a DAG of typed artifacts
//! ([`pipeline`], [`dag`]), planned and run with content-addressed caching
//! ([`exec`], [`fingerprint`], [`store`], [`digest`]) and recorded in a lock
//! file ([`lockfile`]). Stage kinds plug in through the [`stage::Stage`]
//! trait and a [`stage::Registry`]; the engine knows nothing else about them.

pub mod compare;
pub mod config;
pub mod dag;
pub mod diag;
pub mod digest;
pub mod exec;
pub mod fingerprint;
pub mod lockfile;
pub mod paths;
pub mod pipeline;
pub mod remote;
pub mod report;
mod resolve;
pub mod resources;
pub mod rounds;
pub mod runs;
mod schedule;
pub mod schema;
pub mod slurm;
pub mod stage;
pub mod store;
pub mod workspace;
pub mod yaml;

pub use config::Overrides;
pub use diag::{Diagnostic, Span};
pub use exec::{Outcome, PlanEntry, PlanStatus, RunOptions, RunSummary, plan, run};
pub use pipeline::{LoadError, Pipeline, load};
pub use report::Reporter;
pub use stage::{
    ArtifactView, Check, ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Registry, Stage, StageContext, StageError, StageOutcome, StageSpec,
};
pub use workspace::Workspace;

/// The engine's version, recorded in run records.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
