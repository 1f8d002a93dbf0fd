//! Zero-copy bytes between Rust and Python through the buffer protocol.
//!
//! Out: `NativeBuffer` is a frozen, immutable pyclass owning its bytes (a vector, a vector of i64
//! for numeric columns, or a range of a shared read-only mmap). `memoryview(buf)` and
//! `numpy.frombuffer(buf, ...)` point straight at those bytes; the exporter (`view->obj`) is the
//! NativeBuffer itself, so the bytes (and the mapping) live as long as any view does. Views are
//! always read-only: a request for a writable buffer raises `BufferError`.
//! Invariant: the bytes behind a NativeBuffer never move or change after construction (frozen
//! pyclass, no mutating method), which is what makes handing out raw pointers sound.
//!
//! In: `BufferBytes` reads any object exporting a C-contiguous buffer. Exporters whose bytes can
//! never change (exact `bytes`, NativeBuffer) are borrowed without copying; everything else is
//! copied first, with the GIL held, because the GIL is released while Rust reads and another
//! thread could write meanwhile. "Read-only" is not enough: `memoryview(bytearray).toreadonly()`
//! or an `ACCESS_READ` mmap are read-only views of bytes that still change.

use std::ffi::{c_int, c_void};
use std::ops::Range;
use std::sync::Arc;

use memmap2::Mmap;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{ffi, PyErr};

enum Data {
    Bytes(Vec<u8>),
    /// Kept as i64 so numpy sees 8-byte aligned int64 data.
    Words(Vec<i64>),
    Mapped(Arc<Mmap>, Range<usize>),
}

/// Read-only bytes owned by Rust, exposed through the buffer protocol.
#[pyclass(frozen, module = "pylog._native")]
pub struct NativeBuffer {
    data: Data,
}

impl NativeBuffer {
    pub fn from_vec(bytes: Vec<u8>) -> NativeBuffer {
        NativeBuffer {
            data: Data::Bytes(bytes),
        }
    }

    /// The values as native-endian bytes (numpy's `int64` on this machine).
    pub fn from_i64s(values: Vec<i64>) -> NativeBuffer {
        NativeBuffer {
            data: Data::Words(values),
        }
    }

    /// `range` of the mapping; panics when it is not inside the mapping (a caller bug).
    pub fn from_mmap(map: Arc<Mmap>, range: Range<usize>) -> NativeBuffer {
        assert!(
            range.start <= range.end && range.end <= map.len(),
            "NativeBuffer range {range:?} outside a mapping of {} bytes",
            map.len()
        );
        NativeBuffer {
            data: Data::Mapped(map, range),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.data {
            Data::Bytes(v) => v,
            // SAFETY: the pointer and length cover exactly the initialised i64 elements of the
            // vector; u8 has alignment 1 and every bit pattern is a valid u8, and the borrow of
            // `self` keeps the vector alive and unmodified for the returned lifetime.
            Data::Words(v) => unsafe {
                std::slice::from_raw_parts(
                    v.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(v.as_slice()),
                )
            },
            Data::Mapped(map, range) => &map[range.clone()],
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[pymethods]
impl NativeBuffer {
    fn __len__(&self) -> usize {
        self.len()
    }

    fn __repr__(&self) -> String {
        format!("<NativeBuffer of {} bytes>", self.len())
    }

    /// # Safety
    /// `view` is the `Py_buffer` CPython passes to `bf_getbuffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NativeBuffer: null Py_buffer"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("NativeBuffer is read-only"));
        }
        let bytes = slf.get().as_bytes();
        // SAFETY: `bytes` stays valid and unchanged while `slf` lives (module invariant);
        // PyBuffer_FillInfo stores a new reference to `slf` in `view->obj`, so every view keeps
        // the NativeBuffer alive. It fills format ("B", static), shape and strides per `flags`,
        // so there is nothing to free in `__releasebuffer__`.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut c_void,
                bytes.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(slf.py()))
        }
    }

    /// # Safety
    /// Called by CPython when a view is released; nothing was allocated for it.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

/// The bytes of a Python object exporting a buffer: borrowed when the exporter is read-only,
/// copied when it is writable (see the module comment). Non-contiguous buffers are refused.
pub enum BufferBytes {
    Borrowed(PyUntypedBuffer),
    Owned(Vec<u8>),
}

impl BufferBytes {
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<BufferBytes> {
        let buf = PyUntypedBuffer::get(obj)?;
        if !buf.is_c_contiguous() {
            return Err(PyBufferError::new_err("a C-contiguous buffer is required"));
        }
        if obj.is_exact_instance_of::<PyBytes>() || obj.is_instance_of::<NativeBuffer>() {
            Ok(BufferBytes::Borrowed(buf))
        } else {
            let copy = raw_slice(&buf).to_vec();
            Ok(BufferBytes::Owned(copy))
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            BufferBytes::Borrowed(buf) => raw_slice(buf),
            BufferBytes::Owned(v) => v,
        }
    }
}

/// The bytes of a C-contiguous buffer.
fn raw_slice(buf: &PyUntypedBuffer) -> &[u8] {
    let len = buf.len_bytes();
    if len == 0 {
        return &[];
    }
    // SAFETY: the buffer is C-contiguous (checked by the caller), so `len_bytes` bytes start at
    // `buf_ptr`; the Py_buffer held by `buf` keeps the exporter and its memory alive until it is
    // released, which cannot happen while `buf` is borrowed. Other exporters than bytes and
    // NativeBuffer (whose bytes never change) are only read here with the GIL held, to copy them.
    unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>().cast_const(), len) }
}
