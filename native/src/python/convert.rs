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
        RecordMaker {
            record_type: record_type.clone(),
            plain_tuple: fast_tuple_class(record_type, RECORD_FIELDS),
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
        match &self.plain_tuple {
            Some(cls) => alloc_tuple(cls, items),
            None => self.record_type.call1(PyTuple::new(py, items)?),
        }
    }
}

/// The class itself when instances of `record_type` (a namedtuple of `fields` fields) can be
/// allocated and filled directly (`alloc_tuple`), else None (then it is called).
fn fast_tuple_class<'py>(
    record_type: &Bound<'py, PyAny>,
    fields: usize,
) -> Option<Bound<'py, PyType>> {
    // why not on 3.14+: tuples there carry a cached hash that must start at -1, which only
    // CPython's own constructors set; a zero-filled one would make `hash(record)` return 0.
    let layout_known = record_type.py().version_info() < (3, 14);
    if layout_known && is_plain_namedtuple(record_type, fields) {
        tuple_layout(record_type).cloned()
    } else {
        None
    }
}

/// An instance of `cls` (a class `fast_tuple_class` accepted) holding `items`.
fn alloc_tuple<'py, const N: usize>(
    cls: &Bound<'py, PyType>,
    items: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `cls` is a tuple subclass with tuple's exact layout (tuple_layout), and before
    // 3.14 a tuple has no field besides its items that CPython expects set; tp_alloc returns a
    // zeroed, GC-tracked tuple of N slots (tuple traversal skips NULLs), and PyTuple_SET_ITEM
    // steals each new reference into its own slot exactly once.
    unsafe {
        let tp = cls.as_type_ptr();
        let alloc = (*tp).tp_alloc.unwrap_or(pyo3::ffi::PyType_GenericAlloc);
        let obj = alloc(tp, N as pyo3::ffi::Py_ssize_t);
        if obj.is_null() {
            return Err(PyErr::fetch(cls.py()));
        }
        for (i, item) in items.into_iter().enumerate() {
            pyo3::ffi::PyTuple_SET_ITEM(obj, i as pyo3::ffi::Py_ssize_t, item.into_ptr());
        }
        Ok(Bound::from_owned_ptr(cls.py(), obj))
    }
}

const CONSUMER_RECORD_FIELDS: usize = 13;

/// Builds `pylog.ConsumerRecord(topic, partition, leader_epoch, offset, timestamp,
/// timestamp_type, key, value, headers, checksum, serialized_key_size, serialized_value_size,
/// serialized_header_size)` (kafka-python's field order) for one partition: `leader_epoch` -1,
/// `checksum` None (v2 batches have one CRC per batch), sizes -1 for a null key/value, the
/// header size as kafka-python computes it (UTF-8 key bytes plus value bytes, -1 with no headers).
pub struct ConsumerRecordMaker<'py> {
    record_type: Bound<'py, PyAny>,
    plain_tuple: Option<Bound<'py, PyType>>,
    topic: Bound<'py, PyAny>,
    partition: Bound<'py, PyAny>,
    /// The last timestamp object built: consecutive records of a batch usually share it.
    last_timestamp: Option<(i64, Bound<'py, PyAny>)>,
}

impl<'py> ConsumerRecordMaker<'py> {
    pub fn new(
        record_type: &Bound<'py, PyAny>,
        topic: &Bound<'py, PyAny>,
        partition: &Bound<'py, PyAny>,
    ) -> ConsumerRecordMaker<'py> {
        ConsumerRecordMaker {
            record_type: record_type.clone(),
            plain_tuple: fast_tuple_class(record_type, CONSUMER_RECORD_FIELDS),
            topic: topic.clone(),
            partition: partition.clone(),
            last_timestamp: None,
        }
    }

    pub fn make(&mut self, r: &RecordView<'_>) -> PyResult<Bound<'py, PyAny>> {
        let py = self.record_type.py();
        let bytes_or_none = |b: Option<&[u8]>| match b {
            Some(b) => PyBytes::new(py, b).into_any(),
            None => py.None().into_bound(py),
        };
        let size = |b: Option<&[u8]>| b.map_or(-1i64, |b| b.len() as i64);
        let headers = PyList::empty(py);
        let mut header_size = -1i64;
        for (k, v) in r.headers() {
            headers.append((PyString::new(py, k), bytes_or_none(v)))?;
            header_size = header_size.max(0) + k.len() as i64 + v.map_or(0, |v| v.len() as i64);
        }
        let timestamp = match &self.last_timestamp {
            Some((ts, obj)) if *ts == r.timestamp => obj.clone(),
            _ => {
                let obj = r.timestamp.into_pyobject(py)?.into_any();
                self.last_timestamp = Some((r.timestamp, obj.clone()));
                obj
            }
        };
        let items: [Bound<'py, PyAny>; CONSUMER_RECORD_FIELDS] = [
            self.topic.clone(),
            self.partition.clone(),
            (-1i64).into_pyobject(py)?.into_any(),
            r.offset.into_pyobject(py)?.into_any(),
            timestamp,
            r.timestamp_type.into_pyobject(py)?.into_any(),
            bytes_or_none(r.key),
            bytes_or_none(r.value),
            headers.clone().into_any(),
            py.None().into_bound(py),
            size(r.key).into_pyobject(py)?.into_any(),
            size(r.value).into_pyobject(py)?.into_any(),
            header_size.into_pyobject(py)?.into_any(),
        ];
        let record = match &self.plain_tuple {
            Some(cls) => alloc_tuple(cls, items)?,
            None => self.record_type.call1(PyTuple::new(py, items)?)?,
        };
        // why untracked: the record and its headers list hold only strings, bytes, ints and
        // None, so they are in no reference cycle, and thousands of tracked containers per poll
        // made every poll pay a young-generation collection that traversed them all (measured:
        // 500-record polls 0.79 -> 1.2 M rec/s per CPU-s with the collector off). A user who
        // builds a cycle through a record (puts it in its own headers) leaks that cycle instead
        // of having it collected, as with any untracked container.
        // SAFETY: both are live objects and the GIL is held; untracking an object the
        // collector does not track is a no-op, and only GC objects are passed.
        unsafe {
            if pyo3::ffi::PyObject_IS_GC(record.as_ptr()) != 0 {
                pyo3::ffi::PyObject_GC_UnTrack(record.as_ptr().cast());
            }
            pyo3::ffi::PyObject_GC_UnTrack(headers.as_ptr().cast());
        }
        Ok(record)
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

/// A namedtuple class of `fields` fields whose construction is exactly `tuple.__new__(cls, fields)`.
fn is_plain_namedtuple(record_type: &Bound<'_, PyAny>, fields: usize) -> bool {
    let check = || -> PyResult<bool> {
        let py = record_type.py();
        let Ok(ty) = record_type.cast::<PyType>() else {
            return Ok(false);
        };
        if !ty.is_subclass_of::<PyTuple>()? || ty.getattr("_fields")?.len()? != fields {
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

    /// The records as a list of `pylog.ConsumerRecord`s of one partition (`ConsumerRecordMaker`).
    pub fn to_consumer_records<'py>(
        &self,
        py: Python<'py>,
        record_type: &Bound<'py, PyAny>,
        topic: &Bound<'py, PyAny>,
        partition: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut maker = ConsumerRecordMaker::new(record_type, topic, partition);
        self.build_list(py, |view| maker.make(view))
    }

    /// The records as a list of `record_type(...)` objects (see `RecordMaker`).
    pub fn to_py_list<'py>(
        &self,
        py: Python<'py>,
        record_type: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let maker = RecordMaker::new(record_type);
        self.build_list(py, |view| maker.make(view))
    }

    /// One Python object per record, made by `make` from the record's view, as a list (the GC
    /// paused while it is built).
    fn build_list<'py>(
        &self,
        py: Python<'py>,
        mut make: impl FnMut(&RecordView<'_>) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
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
            objects.push(make(&view)?);
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

/// `record_spans(buffer) -> list[tuple[int, int, int]]`: per whole batch of `buffer`, its
/// records and their first and last offsets (-1 without data records), every check of
/// `decode_records` made but no record built; a bad batch raises `CorruptBatchError` as there.
#[pyfunction]
pub fn record_spans<'py>(
    py: Python<'py>,
    buffer: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    guard(|| {
        let bytes = BufferBytes::new(buffer)?;
        let data = bytes.as_slice();
        let spans = py.detach(|| crate::batch::record_spans(data))?;
        PyList::new(py, spans)
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
    m.add_function(wrap_pyfunction!(record_spans, m)?)?;
    // why: tests assert this equals `pylog.errors.CorruptKind`, so the two closed sets stay one.
    let kinds: Vec<&str> = crate::error::CorruptKind::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    m.add("CORRUPT_KINDS", PyTuple::new(m.py(), kinds)?)?;
    Ok(())
}
