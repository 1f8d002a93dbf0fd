//! Decoded records and columns -> Python objects; the module-level functions `decode_records`
//! and `crc32c`.
//!
//! Records become `record_type(offset, timestamp, timestamp_type, key, value, headers)` with
//! `key`/`value` as `bytes` or `None` and `headers` a fresh list of `(str, bytes | None)` tuples
//! (pylog.engine.Record's field order). Columns become eight `NativeBuffer`s in the order of
//! `pylog/_native.pyi`: offsets, timestamps, keys, key_offsets, key_null, values, value_offsets,
//! value_null.
//!
//! Work that does not need Python (framing, CRC, decompression, record parsing) runs with the
//! GIL released; only object construction holds it.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use super::buffer::{BufferBytes, NativeBuffer};
use super::errors::guard;
use crate::columns::ColumnsBuilder;
use crate::record::{decode_batches, RecordView};

/// `record_type(offset, timestamp, timestamp_type, key, value, headers)` for one record.
/// For a plain namedtuple class (such as `pylog.engine.Record`) the object is made by
/// `tuple.__new__(record_type, fields)`, which is all its generated `__new__` does.
// why: a namedtuple's generated `__new__` is a Python function that only calls
// `tuple.__new__(cls, fields)`; calling that directly skips a Python frame per record
// (measured: ~460 -> ~270 ns per record object). Used only when the class is a plain
// namedtuple: its `__new__` is the generated one and no `__init__` is defined.
#[allow(
    dead_code,
    reason = "called from partition_log.rs / the #[pymodule] in python/mod.rs"
)]
pub fn record_to_py<'py>(
    py: Python<'py>,
    record_type: &Bound<'py, PyAny>,
    r: &RecordView<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let fields = record_fields(py, r)?;
    if is_plain_namedtuple_cached(record_type) {
        tuple_new(py)?.call1((record_type, fields))
    } else {
        record_type.call1(fields)
    }
}

/// `tuple.__new__`, looked up once.
fn tuple_new(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static TUPLE_NEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    TUPLE_NEW
        .get_or_try_init(py, || {
            py.get_type::<PyTuple>()
                .getattr("__new__")
                .map(Bound::unbind)
        })
        .map(|t| t.bind(py))
}

/// `is_plain_namedtuple`, remembered for the last record type seen (callers use one type).
// why: record_to_py is called per record; the check is a few attribute lookups. The cache
// holds a strong reference, so a freed class cannot be mistaken for a new one at its address.
fn is_plain_namedtuple_cached(record_type: &Bound<'_, PyAny>) -> bool {
    static LAST: Mutex<Option<(Py<PyAny>, bool)>> = Mutex::new(None);
    {
        let last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached, plain)) = &*last {
            if cached.bind(record_type.py()).is(record_type) {
                return *plain;
            }
        }
    }
    // Python runs outside the lock (attribute lookups, the old entry's decref).
    let plain = is_plain_namedtuple(record_type);
    let previous = LAST
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .replace((record_type.clone().unbind(), plain));
    drop(previous);
    plain
}

/// The six constructor arguments of a record, as one tuple.
fn record_fields<'py>(py: Python<'py>, r: &RecordView<'_>) -> PyResult<Bound<'py, PyTuple>> {
    let key = r.key.map(|k| PyBytes::new(py, k));
    let value = r.value.map(|v| PyBytes::new(py, v));
    let headers = PyList::empty(py);
    for (k, v) in r.headers() {
        let value = match v {
            Some(v) => PyBytes::new(py, v).into_any(),
            None => py.None().into_bound(py),
        };
        headers.append(PyTuple::new(py, [PyString::new(py, k).into_any(), value])?)?;
    }
    (r.offset, r.timestamp, r.timestamp_type, key, value, headers).into_pyobject(py)
}

/// Builds many records of one `record_type`: the objects of `record_to_py`, with the
/// namedtuple check done once instead of per record.
pub struct RecordMaker<'py> {
    record_type: Bound<'py, PyAny>,
    tuple_new: Option<Bound<'py, PyAny>>,
}

impl<'py> RecordMaker<'py> {
    pub fn new(record_type: &Bound<'py, PyAny>) -> PyResult<RecordMaker<'py>> {
        let tuple_new = if is_plain_namedtuple(record_type) {
            Some(tuple_new(record_type.py())?.clone())
        } else {
            None
        };
        Ok(RecordMaker {
            record_type: record_type.clone(),
            tuple_new,
        })
    }

    pub fn make(&self, r: &RecordView<'_>) -> PyResult<Bound<'py, PyAny>> {
        let fields = record_fields(self.record_type.py(), r)?;
        match &self.tuple_new {
            Some(tuple_new) => tuple_new.call1((&self.record_type, fields)),
            None => self.record_type.call1(fields),
        }
    }
}

/// A namedtuple class of six fields whose construction is exactly `tuple.__new__(cls, fields)`.
fn is_plain_namedtuple(record_type: &Bound<'_, PyAny>) -> bool {
    let check = || -> PyResult<bool> {
        let py = record_type.py();
        let Ok(ty) = record_type.cast::<PyType>() else {
            return Ok(false);
        };
        if !ty.is_subclass_of::<PyTuple>()? || ty.getattr("_fields")?.len()? != 6 {
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
#[allow(
    dead_code,
    reason = "called from partition_log.rs / the #[pymodule] in python/mod.rs"
)]
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

#[allow(dead_code, reason = "API for partition_log.rs")]
impl PendingRecords {
    pub fn new() -> PendingRecords {
        PendingRecords::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
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

    /// The records as a list of `record_type(...)` objects (see `record_to_py`).
    pub fn to_py_list<'py>(
        &self,
        py: Python<'py>,
        record_type: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let maker = RecordMaker::new(record_type)?;
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
            Ok(py.detach(|| crate::record::crc32c(slice)))
        } else {
            Ok(crate::record::crc32c(slice))
        }
    })
}

/// Add `decode_records`, `crc32c` and `NativeBuffer` to the extension module; called from the
/// `#[pymodule]` in `python/mod.rs`.
#[allow(
    dead_code,
    reason = "called from partition_log.rs / the #[pymodule] in python/mod.rs"
)]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeBuffer>()?;
    m.add_function(wrap_pyfunction!(decode_records, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_py, m)?)?;
    Ok(())
}
