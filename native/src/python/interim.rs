//! INTERIM stand-ins for the codec helper's Python-side pieces (errors.rs, buffer.rs,
//! convert.rs), so the PartitionLog class can be built and tested before rust-codec lands.
//! Delete this file once `errors::{to_pyerr, guard}`, `buffer::NativeBuffer`,
//! `convert::{record_to_py, columns_to_py, register}` exist; partition_log.rs imports them by
//! these same names.

use std::os::raw::c_int;
use std::sync::Arc;

use memmap2::Mmap;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::{ffi, IntoPyObjectExt};

use crate::columns::ColumnsBuilder;
use crate::error::Error;
use crate::record::RecordView;

/// Error -> pylog.errors class (or OSError subclass by kind).
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let class =
        |name: &str| -> PyResult<Bound<'_, PyAny>> { py.import("pylog.errors")?.getattr(name) };
    let build = || -> PyResult<PyErr> {
        Ok(match err {
            Error::CorruptBatch {
                reason,
                path,
                position,
            } => {
                let path = path.map(|p| p.to_string_lossy().into_owned());
                PyErr::from_value(class("CorruptBatchError")?.call1((reason, path, position))?)
            }
            Error::OffsetOutOfRange(m) => {
                PyErr::from_value(class("OffsetOutOfRangeError")?.call1((m,))?)
            }
            Error::RecordTooLarge(m) => {
                PyErr::from_value(class("RecordTooLargeError")?.call1((m,))?)
            }
            Error::InvalidConfig(m) => PyErr::from_value(class("InvalidConfigError")?.call1((m,))?),
            Error::InvalidRecord(m) => PyErr::from_value(class("InvalidRecordError")?.call1((m,))?),
            Error::Type(m) => PyTypeError::new_err(m),
            e @ Error::Closed(_) => {
                PyErr::from_value(class("LogClosedError")?.call1((e.to_string(),))?)
            }
            Error::Io { context, source } => {
                let msg = format!("{context}: {source}");
                let base: PyErr = source.into();
                let ty = base.get_type(py);
                let errno = base.value(py).getattr("errno").ok();
                match ty.call1((errno, msg)) {
                    Ok(v) => PyErr::from_value(v),
                    Err(_) => PyOSError::new_err(context.to_string()),
                }
            }
            e @ Error::Internal(_) => {
                PyErr::from_value(class("InternalError")?.call1((e.to_string(),))?)
            }
        })
    };
    build().unwrap_or_else(|e| e)
}

/// Run `f`, turning a Rust panic into `pylog.errors.InternalError`.
pub fn guard<T>(py: Python<'_>, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            Err(to_pyerr(py, Error::Internal(msg)))
        }
    }
}

enum Data {
    Mapped(Arc<Mmap>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// Read-only bytes owned by Rust, exposed via the buffer protocol.
#[pyclass(frozen, module = "pylog._native")]
pub struct NativeBuffer {
    data: Data,
}

impl NativeBuffer {
    pub fn mapped(map: Arc<Mmap>, range: std::ops::Range<usize>) -> NativeBuffer {
        NativeBuffer {
            data: Data::Mapped(map, range),
        }
    }
    pub fn owned(v: Vec<u8>) -> NativeBuffer {
        NativeBuffer {
            data: Data::Owned(v),
        }
    }
    fn slice(&self) -> &[u8] {
        match &self.data {
            Data::Mapped(m, r) => &m[r.clone()],
            Data::Owned(v) => v,
        }
    }
}

#[pymethods]
impl NativeBuffer {
    fn __len__(&self) -> usize {
        self.slice().len()
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let s = slf.get().slice();
        let (ptr, len) = (s.as_ptr(), s.len());
        // SAFETY: the data lives as long as `slf`, which the view keeps a reference to.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr as *mut _, len as isize, 1, flags)
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

pub fn record_to_py<'py>(
    py: Python<'py>,
    record_type: &Bound<'py, PyAny>,
    rv: &RecordView<'_>,
    timestamp_type: u8,
) -> PyResult<Bound<'py, PyAny>> {
    let key = rv.key.map(|k| PyBytes::new(py, k));
    let value = rv.value.map(|v| PyBytes::new(py, v));
    let headers = PyList::empty(py);
    for (k, v) in rv.headers() {
        headers.append((k, v.map(|v| PyBytes::new(py, v))))?;
    }
    let args = PyTuple::new(
        py,
        [
            rv.offset.into_bound_py_any(py)?,
            rv.timestamp.into_bound_py_any(py)?,
            timestamp_type.into_bound_py_any(py)?,
            key.into_bound_py_any(py)?,
            value.into_bound_py_any(py)?,
            headers.into_any(),
        ],
    )?;
    record_type.call1(args)
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

pub fn columns_to_py(py: Python<'_>, c: ColumnsBuilder) -> PyResult<Bound<'_, PyTuple>> {
    let items = [
        NativeBuffer::owned(i64s(&c.offsets)),
        NativeBuffer::owned(i64s(&c.timestamps)),
        NativeBuffer::owned(c.keys),
        NativeBuffer::owned(i64s(&c.key_offsets)),
        NativeBuffer::owned(c.key_null),
        NativeBuffer::owned(c.values),
        NativeBuffer::owned(i64s(&c.value_offsets)),
        NativeBuffer::owned(c.value_null),
    ];
    let objs: Vec<Bound<'_, NativeBuffer>> = items
        .into_iter()
        .map(|b| Bound::new(py, b))
        .collect::<PyResult<_>>()?;
    PyTuple::new(py, objs)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeBuffer>()
}
