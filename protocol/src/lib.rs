//! The contract between Tailor's stages and `tailor-train`, the process that
//! links libtorch. A stage writes a job file ([`job::TrainJob`] or
//! [`job::InferJob`]) and starts `tailor-train SUBCOMMAND JOB`; the trainer
//! prints one [`event::Event`] per line on stdout and, on failure, one error
//! line on stderr. Both sides compile this crate, so a field added on one
//! side is there on the other, and the settings enums a pipeline writes
//! (`method: qlora`, `schedule: cosine`, …) are the ones the trainer reads.
//!
//! Serde and schemars only: no libtorch, no engine.

pub mod event;
pub mod job;
pub mod settings;

/// The trainer's implementation identity.
pub mod identity {
    include!(concat!(env!("OUT_DIR"), "/trainer.rs"));
}

pub use identity::TRAINER;
