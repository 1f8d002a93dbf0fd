//! The one error type of the storage engine. Pure Rust: converted to the `pylog.errors` classes
//! (and `OSError` subclasses by kind) only at the PyO3 boundary, `python/errors.rs`.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A batch failed validation. `path` is `None` for an in-memory buffer.
    #[error("{reason}")]
    CorruptBatch {
        reason: String,
        path: Option<PathBuf>,
        position: u64,
    },
    #[error("{0}")]
    OffsetOutOfRange(String),
    #[error("{0}")]
    RecordTooLarge(String),
    #[error("{0}")]
    InvalidConfig(String),
    /// Records that cannot form a batch (empty, mismatched lengths, bad timestamps).
    #[error("{0}")]
    InvalidRecord(String),
    /// A value of the wrong type (maps to Python's `TypeError`).
    #[error("{0}")]
    Type(String),
    #[error("the partition log at {0} is closed")]
    Closed(PathBuf),
    /// Long work (recovery of a big log) stopped at a safe point because the caller asked
    /// (Ctrl-C); maps to `KeyboardInterrupt`.
    #[error("interrupted")]
    Interrupted,
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// A broken internal invariant (a bug); maps to `pylog.errors.InternalError`.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn corrupt(reason: impl Into<String>, position: u64) -> Self {
        Error::CorruptBatch {
            reason: reason.into(),
            path: None,
            position,
        }
    }

    /// Attach the file a corrupt batch was read from (positions are already file positions).
    pub fn in_file(self, file: &std::path::Path) -> Self {
        match self {
            Error::CorruptBatch {
                reason,
                path: None,
                position,
            } => Error::CorruptBatch {
                reason,
                path: Some(file.to_path_buf()),
                position,
            },
            other => other,
        }
    }

    /// Shift the position of a corrupt-batch error found inside a slice that starts at `base`.
    pub fn shifted(self, base: u64) -> Self {
        match self {
            Error::CorruptBatch {
                reason,
                path,
                position,
            } => Error::CorruptBatch {
                reason,
                path,
                position: position + base,
            },
            other => other,
        }
    }
}

/// `io_context(path)` wraps an `io::Error` with the operation and the path it concerned.
pub trait IoContext<T> {
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}
