//! `crate::error::Error` -> Python exceptions, and the panic guard.
//!
//! Both engines raise the classes of `pylog/errors.py`, so this is the only place the Rust enum
//! meets them: CorruptBatch -> `CorruptBatchError(message, path | None, position, kind)`,
//! InvalidBatch -> `InvalidRecordError(message, kind)` (kind: the `CorruptKind` value string),
//! OffsetOutOfRange / RecordTooLarge / InvalidConfig / InvalidRecord / Closed / Internal -> their
//! `pylog.errors` class, Type -> `TypeError`, Io -> the `OSError` subclass of its kind with errno.
//! A Rust panic must never reach Python as `PanicException` (which is a `BaseException` and
//! escapes `except Exception`): every entry point runs inside `guard`, which turns it into
//! `InternalError`.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyKeyboardInterrupt, PyNotADirectoryError, PyOSError,
    PyPermissionError, PyTypeError,
};
use pyo3::PyErr;
use pyo3::PyResult;

use crate::error::Error;

pyo3::import_exception!(pylog.errors, CorruptBatchError);
pyo3::import_exception!(pylog.errors, OffsetOutOfRangeError);
pyo3::import_exception!(pylog.errors, RecordTooLargeError);
pyo3::import_exception!(pylog.errors, InvalidConfigError);
pyo3::import_exception!(pylog.errors, InvalidRecordError);
pyo3::import_exception!(pylog.errors, LogClosedError);
pyo3::import_exception!(pylog.errors, InternalError);

/// The Python exception for `e` (see the module comment for the mapping).
pub fn to_pyerr(e: Error) -> PyErr {
    match e {
        Error::CorruptBatch {
            kind,
            reason,
            path,
            position,
        } => {
            let path = path.map(|p| p.to_string_lossy().into_owned());
            CorruptBatchError::new_err((reason, path, position, kind.name()))
        }
        Error::InvalidBatch { kind, reason } => InvalidRecordError::new_err((reason, kind.name())),
        Error::OffsetOutOfRange(m) => OffsetOutOfRangeError::new_err(m),
        Error::RecordTooLarge(m) => RecordTooLargeError::new_err(m),
        Error::InvalidConfig(m) => InvalidConfigError::new_err(m),
        Error::InvalidRecord(m) => InvalidRecordError::new_err(m),
        Error::Type(m) => PyTypeError::new_err(m),
        e @ Error::Closed(_) => LogClosedError::new_err(e.to_string()),
        e @ Error::Internal(_) => InternalError::new_err(e.to_string()),
        Error::Interrupted => PyKeyboardInterrupt::new_err("interrupted"),
        Error::Io { context, source } => io_to_pyerr(&context, &source),
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        to_pyerr(e)
    }
}

/// `OSError(errno, "context: description")` of the class matching the error's kind, so
/// `e.errno` is set and `str(e)` names the operation and path.
fn io_to_pyerr(context: &str, source: &io::Error) -> PyErr {
    let message = format!("{context}: {source}");
    macro_rules! raise {
        ($class:ty) => {
            match source.raw_os_error() {
                Some(errno) => <$class>::new_err((errno, message)),
                None => <$class>::new_err(message),
            }
        };
    }
    match source.kind() {
        io::ErrorKind::NotFound => raise!(PyFileNotFoundError),
        io::ErrorKind::PermissionDenied => raise!(PyPermissionError),
        io::ErrorKind::NotADirectory => raise!(PyNotADirectoryError),
        io::ErrorKind::AlreadyExists => raise!(PyFileExistsError),
        // why: OSError(errno, ...) picks the errno's own subclass (IsADirectoryError, ...).
        _ => raise!(PyOSError),
    }
}

/// Run `f`, turning a Rust panic into `pylog.errors.InternalError` instead of letting PyO3
/// raise `PanicException`.
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    // why here: every engine call returns through this point with its locks released, so
    // queued operator events can run Python logging handlers safely (python/logging.rs)
    super::logging::flush();
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_owned());
            Err(InternalError::new_err(format!(
                "internal error in pylog's native engine: {what}; please report this bug"
            )))
        }
    }
}
