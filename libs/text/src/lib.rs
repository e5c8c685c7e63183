//! Tailor's records and the text-quality algorithms of the data stages
//! (`collect`, `clean`): where the MinHash, the PII patterns and the
//! Japanese register analysis live.
//!
//! * [`record`]: the JSONL record every data stage reads and writes
//!   (prompt/completion, chat messages or text, with provenance), and
//!   rejected records with their reasons.
//!
//! Each module is independent and pure (no I/O, no global state besides
//! lazily compiled regexes), so stages can call them per record and in
//! parallel:
//!
//! * [`normalize`]: NFKC, control/zero-width stripping, whitespace and
//!   newline normalization, borrowing when nothing changes.
//! * [`minhash`]: character-shingle MinHash + LSH near-duplicate detection.
//! * [`pii`]: e-mail, phone, URL, IPv4 and card-number detection/redaction.
//! * [`register`]: Japanese polite/plain register of sentence endings.
//! * [`variants`]: Japanese spelling variants (表記ゆれ) across a dataset.
//! * [`profile`]: a dataset profile — size band, consistency, duplicates and
//!   a transparent knowledge-or-behaviour signal (fine-tuning or RAG).
//! * [`quality`]: Gopher/C4-style measurements (callers own thresholds).
//! * [`lang`]: a cheap script-based language guess.
//! * [`hash`]: stable 64-bit hashing shared by the above.

pub mod hash;
pub mod lang;
pub mod minhash;
pub mod normalize;
pub mod pii;
pub mod profile;
pub mod quality;
pub mod record;
pub mod register;
pub mod variants;

pub use lang::detect;
pub use minhash::{MinHashConfig, NearDupSearch, confirmed, jaccard, near_duplicates, near_duplicates_where, signature};
pub use normalize::{Newline, NormalizeOptions, normalize};
pub use pii::{PiiKind, PiiMatch, find_pii, redact};
pub use quality::QualityReport;
pub use register::{Register, RegisterReport, analyze};
