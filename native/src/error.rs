//! The one error type of the storage engine. Pure Rust: converted to the `pylog.errors` classes
//! (and `OSError` subclasses by kind) only at the PyO3 boundary, `python/errors.rs`.

use std::io;
use std::path::PathBuf;

/// What was wrong with a batch: one closed set, the same in both engines (its Python twin is
/// `pylog.errors.CorruptKind`, whose docstrings say which Kafka error code each maps to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorruptKind {
    /// Size below the header, a length field that disagrees with the bytes, an incomplete
    /// batch, or a segment scan that met bytes which do not frame.
    Framing,
    /// Magic byte other than 2.
    Magic,
    /// Stored CRC-32C differs from the bytes.
    Crc,
    /// Codec id above 4.
    Codec,
    /// The records do not decompress, or decompress past the size limit.
    Compression,
    /// A record's layout (varints, lengths, header count and keys, UTF-8).
    Record,
    /// The record count disagrees with the batch (<= 0, too few records, bytes left over,
    /// `lastOffsetDelta != count - 1`).
    RecordCount,
    /// Record offset deltas that are not 0..count-1 in order.
    Offset,
    /// A timestamp that overflows, or a CreateTime maxTimestamp that lies.
    Timestamp,
    /// Attribute bits 7-15 set.
    Attributes,
    /// A control batch that is not one well-formed control record.
    Control,
    /// A record without a key on a partition whose `cleanup.policy` includes `compact`.
    Key,
}

impl CorruptKind {
    pub const ALL: [CorruptKind; 12] = [
        CorruptKind::Framing,
        CorruptKind::Magic,
        CorruptKind::Crc,
        CorruptKind::Codec,
        CorruptKind::Compression,
        CorruptKind::Record,
        CorruptKind::RecordCount,
        CorruptKind::Offset,
        CorruptKind::Timestamp,
        CorruptKind::Attributes,
        CorruptKind::Control,
        CorruptKind::Key,
    ];

    /// The value of the Python `CorruptKind` member.
    pub fn name(self) -> &'static str {
        match self {
            CorruptKind::Framing => "framing",
            CorruptKind::Magic => "magic",
            CorruptKind::Crc => "crc",
            CorruptKind::Codec => "codec",
            CorruptKind::Compression => "compression",
            CorruptKind::Record => "record",
            CorruptKind::RecordCount => "record_count",
            CorruptKind::Offset => "offset",
            CorruptKind::Timestamp => "timestamp",
            CorruptKind::Attributes => "attributes",
            CorruptKind::Control => "control",
            CorruptKind::Key => "key",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A batch failed validation. `path` is `None` for an in-memory buffer.
    #[error("{reason}")]
    CorruptBatch {
        kind: CorruptKind,
        reason: String,
        path: Option<PathBuf>,
        position: u64,
    },
    /// A well-formed batch that `append_raw` refuses (maps to `InvalidRecordError` with a kind).
    #[error("{reason}")]
    InvalidBatch { kind: CorruptKind, reason: String },
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
    pub fn corrupt(kind: CorruptKind, reason: impl Into<String>, position: u64) -> Self {
        Error::CorruptBatch {
            kind,
            reason: reason.into(),
            path: None,
            position,
        }
    }

    /// Attach the file a corrupt batch was read from (positions are already file positions).
    pub fn in_file(mut self, file: &std::path::Path) -> Self {
        if let Error::CorruptBatch {
            path: path @ None, ..
        } = &mut self
        {
            *path = Some(file.to_path_buf());
        }
        self
    }

    /// Shift the position of a corrupt-batch error found inside a slice that starts at `base`.
    pub fn shifted(mut self, base: u64) -> Self {
        if let Error::CorruptBatch { position, .. } = &mut self {
            *position += base;
        }
        self
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
