//! What can go wrong reading, converting or writing a model's files.

use std::path::{Path, PathBuf};

/// An error of this library: which file, and what about it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is malformed: truncated, of the wrong type,
    /// inconsistent with itself (or, for a file being written, with what
    /// was planned for it).
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        message: String,
    },
    /// Well-formed, but not something Tailor implements.
    #[error("{}: {message}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not supported, and what is.
        message: String,
    },
    /// A value given by the caller is not one this library knows.
    #[error("{0}")]
    Invalid(String),
}

impl ModelError {
    /// An I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
        move |source| ModelError::Io { path: path.to_path_buf(), source }
    }

    /// Malformed content in `path`.
    pub fn malformed(path: &Path, message: impl Into<String>) -> ModelError {
        ModelError::Malformed { path: path.to_path_buf(), message: message.into() }
    }

    /// Unsupported content in `path`.
    pub fn unsupported(path: &Path, message: impl Into<String>) -> ModelError {
        ModelError::Unsupported { path: path.to_path_buf(), message: message.into() }
    }
}

/// For callers whose errors are messages (stage errors, the CLI).
impl From<ModelError> for String {
    fn from(e: ModelError) -> String {
        e.to_string()
    }
}

/// This library's results.
pub type Result<T> = std::result::Result<T, ModelError>;
