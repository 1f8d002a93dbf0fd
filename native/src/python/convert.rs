//! Decoded records and columns -> Python objects; the module-level functions `decode_records`
//! and `crc32c`, and `CORRUPT_KINDS` (the names of `error::CorruptKind`, in declaration order).
//!
//! Records become `record_type(offset, timestamp, timestamp_type, key, value, headers)` with
//! `key`/`value` as `bytes` or `None` and `headers` a fresh list of `(str, bytes | None)` tuples
//! (pylog.engine.Record's field order). Columns become eight `NativeBuffer`s in the order of
//! `pylog/_native.pyi`: offsets, timestamps, keys, key_offsets, key_null, values, value_offsets,
//! value_null.
//!
//! Work that does not need Python (framing, CRC, decompression, record parsing) runs with the
//! GIL released; only object construction holds it.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use super::buffer::{BufferBytes, NativeBuffer};
use super::errors::guard;
use crate::batch::decode_batches;
use crate::columns::ColumnsBuilder;
use crate::record::RecordView;

const RECORD_FIELDS: usize = 6;

/// Builds `record_type(offset, timestamp, timestamp_type, key, value, headers)` objects, the
/// class checked once per batch of records instead of once per record.
// why the fast path: a namedtuple's generated `__new__` is a Python function that only calls
// `tuple.__new__(cls, fields)`; allocating the tuple subclass and setting its six items does the
// same without a Python frame or an intermediate tuple (measured: ~460 -> ~200 ns per record).
// It is taken only for a plain namedtuple (generated `__new__`, no `__init__`) with tuple's exact
// memory layout, on CPython before 3.14 (see `new`); any other class is called.
pub struct RecordMaker<'py> {
    record_type: Bound<'py, PyAny>,
    plain_tuple: Option<Bound<'py, PyType>>,
}

impl<'py> RecordMaker<'py> {
    pub fn new(record_type: &Bound<'py, PyAny>) -> RecordMaker<'py> {
        // why not on 3.14+: tuples there carry a cached hash that must start at -1, which only
        // CPython's own constructors set; a zero-filled one would make `hash(record)` return 0.
        let layout_known = record_type.py().version_info() < (3, 14);
        let plain_tuple = if layout_known && is_plain_namedtuple(record_type) {
            tuple_layout(record_type).cloned()
        } else {
            None
        };
        RecordMaker {
            record_type: record_type.clone(),
            plain_tuple,
        }
    }

    pub fn make(&self, r: &RecordView<'_>) -> PyResult<Bound<'py, PyAny>> {
        let py = self.record_type.py();
        let bytes_or_none = |b: Option<&[u8]>| match b {
            Some(b) => PyBytes::new(py, b).into_any(),
            None => py.None().into_bound(py),
        };
        let headers = PyList::empty(py);
        for (k, v) in r.headers() {
            headers.append((PyString::new(py, k), bytes_or_none(v)))?;
        }
        let items: [Bound<'py, PyAny>; RECORD_FIELDS] = [
            r.offset.into_pyobject(py)?.into_any(),
            r.timestamp.into_pyobject(py)?.into_any(),
            r.timestamp_type.into_pyobject(py)?.into_any(),
            bytes_or_none(r.key),
            bytes_or_none(r.value),
            headers.into_any(),
        ];
        let Some(cls) = &self.plain_tuple else {
            return self.record_type.call1(PyTuple::new(py, items)?);
        };
        // SAFETY: `cls` is a tuple subclass with tuple's exact layout (tuple_layout), and before
        // 3.14 a tuple has no field besides its items that CPython expects set; tp_alloc
        // returns a zeroed, GC-tracked tuple of RECORD_FIELDS slots (tuple traversal skips NULLs),
        // and PyTuple_SET_ITEM steals each new reference into its own slot exactly once.
        unsafe {
            let tp = cls.as_type_ptr();
            let alloc = (*tp).tp_alloc.unwrap_or(pyo3::ffi::PyType_GenericAlloc);
            let obj = alloc(tp, RECORD_FIELDS as pyo3::ffi::Py_ssize_t);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            for (i, item) in items.into_iter().enumerate() {
                pyo3::ffi::PyTuple_SET_ITEM(obj, i as pyo3::ffi::Py_ssize_t, item.into_ptr());
            }
            Ok(Bound::from_owned_ptr(py, obj))
        }
    }
}

/// `record_type` as a tuple subclass with tuple's exact layout (no extra fields, no `__dict__`),
/// whose instances can be allocated and filled directly.
fn tuple_layout<'a, 'py>(record_type: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyType>> {
    let cls = record_type.cast::<PyType>().ok()?;
    if !cls.is_subclass_of::<PyTuple>().unwrap_or(false) {
        return None;
    }
    // SAFETY: reading two size fields of live type objects.
    let (basic, item, tuple_basic) = unsafe {
        let tp = cls.as_type_ptr();
        let tuple_basic = (*std::ptr::addr_of!(pyo3::ffi::PyTuple_Type)).tp_basicsize;
        ((*tp).tp_basicsize, (*tp).tp_itemsize, tuple_basic)
    };
    let plain =
        basic == tuple_basic && item == std::mem::size_of::<*mut pyo3::ffi::PyObject>() as isize;
    plain.then_some(cls)
}

/// A namedtuple class of six fields whose construction is exactly `tuple.__new__(cls, fields)`.
fn is_plain_namedtuple(record_type: &Bound<'_, PyAny>) -> bool {
    let check = || -> PyResult<bool> {
        let py = record_type.py();
        let Ok(ty) = record_type.cast::<PyType>() else {
            return Ok(false);
        };
        if !ty.is_subclass_of::<PyTuple>()? || ty.getattr("_fields")?.len()? != RECORD_FIELDS {
            return Ok(false);
        }
        let object_init = py.get_type::<PyAny>().getattr("__init__")?;
        if !ty.getattr("__init__")?.is(&object_init) {
            return Ok(false);
        }
        let tuple_new = py.get_type::<PyTuple>().getattr("__new__")?;
        let generated = ty
            .getattr("__new__")?
            .getattr("__globals__")?
            .get_item("_tuple_new")?;
        Ok(generated.is(&tuple_new))
    };
    check().unwrap_or(false)
}

/// The eight column buffers of `read_columns`, zero-copy over the builder's vectors.
pub fn columns_to_py(py: Python<'_>, c: ColumnsBuilder) -> PyResult<Bound<'_, PyTuple>> {
    let ColumnsBuilder {
        offsets,
        timestamps,
        keys,
        key_offsets,
        key_null,
        values,
        value_offsets,
        value_null,
    } = c;
    let buffers = [
        NativeBuffer::from_i64s(offsets),
        NativeBuffer::from_i64s(timestamps),
        NativeBuffer::from_vec(keys),
        NativeBuffer::from_i64s(key_offsets),
        NativeBuffer::from_vec(key_null),
        NativeBuffer::from_vec(values),
        NativeBuffer::from_i64s(value_offsets),
        NativeBuffer::from_vec(value_null),
    ];
    let objects = buffers
        .into_iter()
        .map(|b| Bound::new(py, b))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, objects)
}

/// One record of `PendingRecords`: spans into its arena.
struct Pending {
    offset: i64,
    timestamp: i64,
    timestamp_type: u8,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    headers: (usize, usize),
    header_count: usize,
}

/// Records decoded with the GIL released, turned into Python objects afterwards.
///
/// Decoded records borrow from their batch or from a decompression buffer that the next batch
/// reuses, so `push` copies the record's bytes into an arena (a memcpy; building the Python
/// objects costs far more). Typical use in a `records_chunk`:
/// `py.detach(|| decode_batch(batch, &mut scratch, |r| { pending.push(&r); Ok(()) }))`, then
/// `pending.to_py_list(py, record_type)`.
#[derive(Default)]
pub struct PendingRecords {
    records: Vec<Pending>,
    arena: Vec<u8>,
}

impl PendingRecords {
    pub fn new() -> PendingRecords {
        PendingRecords::default()
    }

    /// Forget the records, keeping the memory (a pooled arena stays paged in).
    pub fn clear(&mut self) {
        self.records.clear();
        self.arena.clear();
    }

    /// Keep a copy of `r`.
    pub fn push(&mut self, r: &RecordView<'_>) {
        let arena = &mut self.arena;
        let mut span = |b: &[u8]| {
            let start = arena.len();
            arena.extend_from_slice(b);
            (start, b.len())
        };
        let key = r.key.map(&mut span);
        let value = r.value.map(&mut span);
        let headers = span(r.headers_raw);
        self.records.push(Pending {
            offset: r.offset,
            timestamp: r.timestamp,
            timestamp_type: r.timestamp_type,
            key,
            value,
            headers,
            header_count: r.header_count,
        });
    }

    /// The records as a list of `record_type(...)` objects (see `RecordMaker`).
    pub fn to_py_list<'py>(
        &self,
        py: Python<'py>,
        record_type: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let maker = RecordMaker::new(record_type);
        let _gc = GcPause::new(py);
        let arena = &self.arena[..];
        let slice = |(start, len): (usize, usize)| &arena[start..start + len];
        let mut objects = Vec::with_capacity(self.records.len());
        for (i, p) in self.records.iter().enumerate() {
            let view = RecordView {
                offset: p.offset,
                timestamp: p.timestamp,
                timestamp_type: p.timestamp_type,
                key: p.key.map(slice),
                value: p.value.map(slice),
                headers_raw: slice(p.headers),
                header_count: p.header_count,
            };
            objects.push(maker.make(&view)?);
            // why: a huge buffer takes a while; let Ctrl-C through.
            if i % 65536 == 65535 {
                py.check_signals()?;
            }
        }
        PyList::new(py, objects)
    }
}

/// Pauses Python's cyclic GC while a batch of objects is built, restoring its state on drop.
// why: every Record and headers list is a GC-tracked container; building 100k of them in a
// row triggers repeated collections that traverse the growing result (measured: half the cost
// of records() iteration). Nothing we build can form a cycle, so no garbage is delayed.
pub struct GcPause<'py> {
    _py: Python<'py>,
    was_enabled: bool,
}

impl<'py> GcPause<'py> {
    pub fn new(py: Python<'py>) -> GcPause<'py> {
        // SAFETY: the GIL is held (witnessed by `py`); PyGC_Disable only flips interpreter state
        // and returns the previous one.
        let was_enabled = unsafe { pyo3::ffi::PyGC_Disable() } != 0;
        GcPause {
            _py: py,
            was_enabled,
        }
    }
}

impl Drop for GcPause<'_> {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: the guard holds a `Python<'py>` token, so it cannot outlive or leave the
            // thread holding the GIL.
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

/// `decode_records(buffer, record_type) -> list`: every record of the whole batches in
/// `buffer`, CRC-checked; a corrupt or incomplete batch raises `CorruptBatchError` with the
/// batch's position in the buffer (path None).
#[pyfunction]
pub fn decode_records<'py>(
    py: Python<'py>,
    buffer: &Bound<'py, PyAny>,
    record_type: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    guard(|| {
        let bytes = BufferBytes::new(buffer)?;
        let data = bytes.as_slice();
        let mut pending = PendingRecords::new();
        py.detach(|| {
            decode_batches(data, &mut Vec::new(), |r| {
                pending.push(&r);
                Ok(())
            })
        })?;
        pending.to_py_list(py, record_type)
    })
}

/// `crc32c(data) -> int`: CRC-32C (Castagnoli) of a bytes-like object, as Kafka's Crc32C.
#[pyfunction(name = "crc32c")]
pub fn crc32c_py(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u32> {
    guard(|| {
        let bytes = BufferBytes::new(data)?;
        let slice = bytes.as_slice();
        // why: releasing the GIL costs more than hashing a short buffer.
        if slice.len() >= 1 << 16 {
            Ok(py.detach(|| crate::batch::crc32c(slice)))
        } else {
            Ok(crate::batch::crc32c(slice))
        }
    })
}

/// Add `decode_records`, `crc32c` and `NativeBuffer` to the extension module; called from the
/// `#[pymodule]` in `python/mod.rs`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeBuffer>()?;
    m.add_function(wrap_pyfunction!(decode_records, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_py, m)?)?;
    // why: tests assert this equals `pylog.errors.CorruptKind`, so the two closed sets stay one.
    let kinds: Vec<&str> = crate::error::CorruptKind::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    m.add("CORRUPT_KINDS", PyTuple::new(m.py(), kinds)?)?;
    Ok(())
}
