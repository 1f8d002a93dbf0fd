//! `pylog._native.PartitionLog`: the Python face of `crate::log::PartitionLog`
//! (signatures in `pylog/_native.pyi`, behaviour in docs/partition-log.md).
//!
//! Python objects are only touched with the GIL held: `append` takes its own references to the
//! items, borrows `bytes` in place (immutable, kept alive by those references), takes other
//! buffers through `BufferBytes` (writable ones copied), then releases the GIL (`py.detach`) for
//! encode + write. Every file operation and record loop runs detached; only building the `Record`
//! objects of `records_chunk` needs the GIL. The class is frozen; the log inside is `Sync`
//! (one mutex around its state), so any number of Python threads may call in.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};

use crate::compression::Codec;
use crate::config::{ConfigValue, LogConfig};
use crate::error::Error;
use crate::log::{now_ms, PartitionLog};
use crate::record::RecordSpec;
use crate::segment::SegmentBytes;

use super::buffer::{BufferBytes, NativeBuffer};
use super::convert::{columns_to_py, PendingRecords};
use super::errors::{guard, to_pyerr};

/// Bytes taken from a Python bytes-like object: `bytes` borrowed in place (immutable, and kept
/// alive by the caller's references for as long as the borrow), other buffers through the codec
/// helper's `BufferBytes` (read-only exporters borrowed, writable ones copied).
enum Buf<'a> {
    Borrowed(&'a [u8]),
    Buffer(BufferBytes),
    Owned(Vec<u8>),
}

impl Buf<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Borrowed(b) => b,
            Buf::Buffer(b) => b.as_slice(),
            Buf::Owned(v) => v,
        }
    }

    /// An owned copy (for items of containers that may change while the GIL is released).
    fn into_owned(self) -> Buf<'static> {
        match self {
            Buf::Borrowed(b) => Buf::Owned(b.to_vec()),
            Buf::Buffer(b) => Buf::Buffer(b),
            Buf::Owned(v) => Buf::Owned(v),
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

/// A bytes-like object (bytes, bytearray, memoryview, any buffer) or None; `str` and
/// non-buffers are `TypeError` (the reference engine's `_to_bytes`).
fn extract_bytes<'a>(
    obj: &'a Bound<'_, PyAny>,
    what: impl FnOnce() -> String,
) -> Result<Option<Buf<'a>>, Error> {
    if obj.is_none() {
        return Ok(None);
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(Buf::Borrowed(b.as_bytes())));
    }
    if !obj.is_instance_of::<PyString>() {
        if let Ok(b) = BufferBytes::new(obj) {
            return Ok(Some(Buf::Buffer(b)));
        }
    }
    Err(Error::Type(format!(
        "{} must be bytes-like, not {}",
        what(),
        type_name(obj)
    )))
}

/// `str`, `bytes`, `bytearray` and `memoryview` are not sequences of records.
fn is_text_or_bytes(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyByteArray>()
        || obj.is_instance_of::<PyMemoryView>()
}

/// The items of a sequence argument (list and tuple fast paths, else any iterable).
fn items<'py>(obj: &Bound<'py, PyAny>, name: &str) -> Result<Vec<Bound<'py, PyAny>>, Error> {
    if let Ok(l) = obj.cast::<PyList>() {
        return Ok(l.iter().collect());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return Ok(t.iter().collect());
    }
    let not_a_sequence =
        || Error::Type(format!("{name} must be a sequence, not {}", type_name(obj)));
    if is_text_or_bytes(obj) {
        return Err(not_a_sequence());
    }
    let iter = obj.try_iter().map_err(|_| not_a_sequence())?;
    iter.collect::<PyResult<Vec<_>>>()
        .map_err(|e| Error::Type(format!("{name} could not be iterated: {e}")))
}

/// An int argument (`TypeError` for bools and non-ints, like the reference's `_as_int`),
/// saturated to the i64 range (an offset past it is simply out of range).
fn int_arg(obj: &Bound<'_, PyAny>, name: &str) -> Result<i64, Error> {
    let not_int = || Error::Type(format!("{name} must be an integer, not {}", type_name(obj)));
    if let Ok(v) = obj.cast_exact::<PyInt>() {
        if let Ok(v) = v.extract::<i64>() {
            return Ok(v); // the common case, without an attribute lookup
        }
    }
    if obj.is_instance_of::<PyBool>() || !obj.hasattr("__index__").unwrap_or(false) {
        return Err(not_int());
    }
    let wide: i128 = obj.extract().map_err(|_| not_int())?;
    Ok(wide.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The codec named by the Python layer (`pylog.config.resolve_codec` already mapped aliases).
fn codec_from_name(name: &str) -> Result<Codec, Error> {
    Codec::from_name(name)
        .ok_or_else(|| Error::InvalidConfig(format!("unknown compression codec {name:?}")))
}

/// The complete normalized dict of `LogConfig.to_kafka_dict()` (validated by `pylog/config.py`).
fn config_from_dict(config: &Bound<'_, PyDict>) -> Result<LogConfig, Error> {
    let mut pairs = Vec::with_capacity(config.len());
    for (k, v) in config.iter() {
        let key: String = k.extract().map_err(|_| {
            Error::InvalidConfig(format!("config keys are strings, not {}", type_name(&k)))
        })?;
        let value = if v.is_instance_of::<PyInt>() {
            ConfigValue::Int(
                v.extract()
                    .map_err(|_| Error::InvalidConfig(format!("{key} is out of range")))?,
            )
        } else if v.is_instance_of::<PyFloat>() {
            ConfigValue::Float(
                v.extract()
                    .map_err(|_| Error::InvalidConfig(format!("{key} must be a number")))?,
            )
        } else if let Ok(s) = v.extract::<String>() {
            ConfigValue::Str(s)
        } else {
            return Err(Error::InvalidConfig(format!(
                "{key} has an unsupported value type {}",
                type_name(&v)
            )));
        };
        pairs.push((key, value));
    }
    LogConfig::from_complete_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.clone())))
}

/// `_native.default_config()`: the Rust defaults (`LogConfig::default`) under their Kafka names,
/// so a Python test can hold them equal to `pylog.config.LogConfig()`'s.
#[pyfunction]
pub fn default_config(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for (key, value) in LogConfig::default().to_pairs() {
        match value {
            ConfigValue::Int(i) => out.set_item(key, i)?,
            ConfigValue::Float(f) => out.set_item(key, f)?,
            ConfigValue::Str(s) => out.set_item(key, s)?,
        }
    }
    Ok(out)
}

/// Everything `append` extracted from Python, owned (or borrowed from immutable `bytes`).
struct Extracted<'a> {
    values: Vec<Option<Buf<'a>>>,
    keys: Option<Vec<Option<Buf<'a>>>>,
    /// Per record: the range of `header_items` that belongs to it.
    header_ranges: Option<Vec<std::ops::Range<usize>>>,
    header_items: Vec<(PyBackedStr, Option<Buf<'static>>)>,
    timestamps: Option<Vec<i64>>,
}

/// The items of `append`'s arguments, shape-checked; holding these references keeps every
/// borrowed `bytes` alive while the GIL is released (another thread may mutate the lists).
struct Shapes<'py> {
    values: Vec<Bound<'py, PyAny>>,
    keys: Option<Vec<Bound<'py, PyAny>>>,
    headers: Option<Vec<Bound<'py, PyAny>>>,
    timestamps: Option<Vec<Bound<'py, PyAny>>>,
}

/// Check the shape of `append`'s arguments. Order (as the reference's `prepare_records`): the
/// shape of values (non-empty), keys, headers, timestamps_ms; then (`extract_items`) the items
/// of values, keys, headers, timestamps, each in index order. The first failure wins.
/// The items of the optional per-record argument `name` (`None` = not given), which must
/// number `n`; `label` names them in the error ("3 keys for 4 values").
fn optional_items<'py>(
    arg: Option<&Bound<'py, PyAny>>,
    name: &str,
    label: &str,
    n: usize,
) -> Result<Option<Vec<Bound<'py, PyAny>>>, Error> {
    let Some(arg) = arg.filter(|a| !a.is_none()) else {
        return Ok(None);
    };
    let found = items(arg, name)?;
    if found.len() != n {
        return Err(Error::InvalidRecord(format!(
            "{} {label} for {n} values",
            found.len()
        )));
    }
    Ok(Some(found))
}

fn shapes<'py>(
    values: &Bound<'py, PyAny>,
    keys: Option<&Bound<'py, PyAny>>,
    headers: Option<&Bound<'py, PyAny>>,
    timestamps_ms: Option<&Bound<'py, PyAny>>,
) -> Result<Shapes<'py>, Error> {
    let value_items = items(values, "values")?;
    let n = value_items.len();
    if n == 0 {
        return Err(Error::InvalidRecord(
            "append needs at least one record".into(),
        ));
    }
    let key_items = optional_items(keys, "keys", "keys", n)?;
    let header_lists = optional_items(headers, "headers", "header lists", n)?;
    let ts_items = optional_items(timestamps_ms, "timestamps_ms", "timestamps", n)?;
    Ok(Shapes {
        values: value_items,
        keys: key_items,
        headers: header_lists,
        timestamps: ts_items,
    })
}

/// Type-check and take the items: values, keys, headers, timestamps, each in index order.
/// Values and keys that are `bytes` are borrowed (`s` keeps them alive); header values are
/// copied (their pairs may be lists another thread can change while the GIL is released).
fn extract_items<'a>(s: &'a Shapes<'_>) -> Result<Extracted<'a>, Error> {
    let n = s.values.len();
    let mut out_values = Vec::with_capacity(n);
    for (i, v) in s.values.iter().enumerate() {
        out_values.push(extract_bytes(v, || format!("value {i}"))?);
    }
    let out_keys = match &s.keys {
        None => None,
        Some(ks) => {
            let mut out = Vec::with_capacity(n);
            for (i, k) in ks.iter().enumerate() {
                out.push(extract_bytes(k, || format!("key {i}"))?);
            }
            Some(out)
        }
    };
    let mut header_items = Vec::new();
    let header_ranges = match &s.headers {
        None => None,
        Some(hs) => {
            let mut ranges = Vec::with_capacity(n);
            for (i, h) in hs.iter().enumerate() {
                let from = header_items.len();
                for pair in header_pairs_of(h, i)? {
                    header_items.push(header_item(&pair, i)?);
                }
                ranges.push(from..header_items.len());
            }
            Some(ranges)
        }
    };
    let timestamps = match &s.timestamps {
        None => None,
        Some(ts) => {
            let mut out = Vec::with_capacity(n);
            for t in ts {
                let bad =
                    || Error::InvalidRecord(format!("timestamp {t} is not an int in [0, 2**63-1]"));
                if t.is_instance_of::<PyBool>() || !t.hasattr("__index__").unwrap_or(false) {
                    return Err(bad());
                }
                let v: i64 = t.extract().map_err(|_| bad())?;
                if v < 0 {
                    return Err(bad());
                }
                out.push(v);
            }
            Some(out)
        }
    };
    Ok(Extracted {
        values: out_values,
        keys: out_keys,
        header_ranges,
        header_items,
        timestamps,
    })
}

/// The items of a list or tuple argument as a tuple: a tuple as it is, a list snapshotted by
/// `PyList_AsTuple` (one C loop of increfs instead of a `Bound` per item), so the items stay
/// alive and in place while the GIL is released even if another thread changes the list.
/// `None` for any other type.
fn snapshot<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyTuple>> {
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return Some(t.clone());
    }
    obj.cast_exact::<PyList>().ok().map(|l| l.to_tuple())
}

/// Item `item` of a snapshot tuple as a byte slice if it is `bytes` (subclasses included),
/// `Some(None)` if it is None, `None` if it is anything else.
#[inline]
fn bytes_item<'a>(item: pyo3::Borrowed<'a, '_, PyAny>) -> Option<Option<&'a [u8]>> {
    let ptr = item.as_ptr();
    if item.is_none() {
        return Some(None);
    }
    // SAFETY: PyBytes_Check only reads the type of a live object.
    if unsafe { pyo3::ffi::PyBytes_Check(ptr) } == 0 {
        return None;
    }
    // SAFETY: `ptr` is a bytes object (checked above), whose contents never change; the tuple
    // that `item` borrows from holds a strong reference to it for at least 'a, so the slice
    // stays valid while the GIL is released. why the macros: they read the object's fields in
    // place instead of calling into libpython twice per item.
    Some(Some(unsafe {
        std::slice::from_raw_parts(
            pyo3::ffi::PyBytes_AS_STRING(ptr) as *const u8,
            pyo3::ffi::Py_SIZE(ptr) as usize,
        )
    }))
}

/// `append`'s common call, without a `Bound` per item: values (non-empty) and keys (or None)
/// lists or tuples of `bytes`/None of one length, no headers, no timestamps. `None` when the
/// call is anything else; the general path then handles it, every error included.
fn plain_records<'a>(
    values: &'a Bound<'_, PyTuple>,
    keys: Option<&'a Bound<'_, PyTuple>>,
    now: i64,
) -> Option<Vec<RecordSpec<'a>>> {
    if values.is_empty() || keys.is_some_and(|k| k.len() != values.len()) {
        return None;
    }
    let mut specs = Vec::with_capacity(values.len());
    for item in values.iter_borrowed() {
        specs.push(RecordSpec {
            timestamp: now,
            key: None,
            value: bytes_item(item)?,
            headers: &[],
        });
    }
    if let Some(keys) = keys {
        for (spec, item) in specs.iter_mut().zip(keys.iter_borrowed()) {
            spec.key = bytes_item(item)?;
        }
    }
    Some(specs)
}

/// The `(str, bytes | None)` pairs of record `i`'s headers (shape only).
fn header_pairs_of<'py>(h: &Bound<'py, PyAny>, i: usize) -> Result<Vec<Bound<'py, PyAny>>, Error> {
    let not_pairs = || {
        Error::Type(format!(
            "headers of record {i} must be an iterable of (str, bytes | None) pairs, not {}",
            type_name(h)
        ))
    };
    if h.is_none() || is_text_or_bytes(h) {
        return Err(not_pairs());
    }
    if let Ok(l) = h.cast::<PyList>() {
        return Ok(l.iter().collect());
    }
    if let Ok(t) = h.cast::<PyTuple>() {
        return Ok(t.iter().collect());
    }
    let iter = h.try_iter().map_err(|_| not_pairs())?;
    iter.collect::<PyResult<Vec<_>>>()
        .map_err(|e| Error::Type(format!("headers of record {i}: {e}")))
}

/// One header pair of record `i`: a 2-tuple/list of `str` and bytes-like or None.
fn header_item(
    pair: &Bound<'_, PyAny>,
    i: usize,
) -> Result<(PyBackedStr, Option<Buf<'static>>), Error> {
    let not_pair = || {
        Error::Type(format!(
            "a header of record {i} is not a (str, bytes | None) pair"
        ))
    };
    let parts: Vec<Bound<'_, PyAny>> = if let Ok(t) = pair.cast::<PyTuple>() {
        t.iter().collect()
    } else if let Ok(l) = pair.cast::<PyList>() {
        l.iter().collect()
    } else {
        return Err(not_pair());
    };
    if parts.len() != 2 {
        return Err(not_pair());
    }
    let key = parts[0].cast::<PyString>().map_err(|_| {
        Error::Type(format!(
            "header key of record {i} must be str, not {}",
            type_name(&parts[0])
        ))
    })?;
    let key = PyBackedStr::try_from(key.clone()).map_err(|_| {
        Error::InvalidRecord(format!(
            "a header key of record {i} cannot be encoded as UTF-8"
        ))
    })?;
    let value =
        extract_bytes(&parts[1], || format!("header value of record {i}"))?.map(Buf::into_owned);
    Ok((key, value))
}

#[pyclass(frozen, module = "pylog._native", name = "PartitionLog")]
pub struct PyPartitionLog {
    log: PartitionLog,
    path: String,
    record_type: Py<PyAny>,
    /// Decoded records kept between `records_chunk` calls (see there).
    decoded_pool: std::sync::Mutex<Option<PendingRecords>>,
}

fn buffer_of(bytes: SegmentBytes) -> NativeBuffer {
    match bytes {
        SegmentBytes::Mapped(m, r) => NativeBuffer::from_mmap(m, r),
        SegmentBytes::Owned(v) => NativeBuffer::from_vec(v),
    }
}

impl PyPartitionLog {
    /// The engine's log (the multi-partition wait reads its coordination page).
    pub(super) fn engine_log(&self) -> &PartitionLog {
        &self.log
    }

    /// Decode `[start, end)` of about `max_bytes` of batches with the GIL released, into the
    /// pooled arena; returns the records and the offset to continue from (see records_chunk).
    fn decode_chunk(
        &self,
        py: Python<'_>,
        start: i64,
        end: i64,
        max_bytes: i64,
        one_segment: bool,
    ) -> PyResult<(PendingRecords, i64)> {
        let max_bytes = max_bytes.max(1) as u64;
        // why the pool: a fresh megabyte-sized arena per chunk costs a page fault per 4 KiB
        // (measured: more than decoding); reusing one keeps its pages mapped.
        let mut decoded = self
            .decoded_pool
            .lock()
            .map(|mut p| p.take())
            .unwrap_or_default()
            .unwrap_or_default();
        decoded.clear();
        self.run(py, move |log| {
            let chunk = log.records_chunk_within(start, end, max_bytes, one_segment)?;
            let mut scratch = Vec::new();
            chunk.decode(&mut scratch, |rv| {
                decoded.push(&rv);
                Ok(())
            })?;
            Ok((decoded, chunk.next))
        })
    }

    fn return_to_pool(&self, decoded: PendingRecords) {
        if let Ok(mut pool) = self.decoded_pool.lock() {
            *pool = Some(decoded);
        }
    }

    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&PartitionLog) -> crate::error::Result<T> + Send,
    ) -> PyResult<T> {
        guard(|| py.detach(|| f(&self.log)).map_err(to_pyerr))
    }
}

#[pymethods]
impl PyPartitionLog {
    #[new]
    fn new(
        py: Python<'_>,
        path: String,
        config: &Bound<'_, PyDict>,
        record_type: Py<PyAny>,
    ) -> PyResult<Self> {
        guard(|| {
            let cfg = config_from_dict(config).map_err(to_pyerr)?;
            let p = path.clone();
            // why: recovering a big log takes a while; between segments, run Python's signal
            // handlers (Ctrl-C) and keep the exception they raise to re-raise it as it was.
            let raised: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
            let interrupted = || {
                Python::attach(|py| match py.check_signals() {
                    Ok(()) => false,
                    Err(e) => {
                        if let Ok(mut slot) = raised.lock() {
                            *slot = Some(e);
                        }
                        true
                    }
                })
            };
            let opened = py.detach(|| PartitionLog::open_interruptible(&p, cfg, &interrupted));
            let log = match opened {
                Ok(log) => log,
                Err(Error::Interrupted) => {
                    let pending = raised.lock().ok().and_then(|mut slot| slot.take());
                    return Err(pending.unwrap_or_else(|| to_pyerr(Error::Interrupted)));
                }
                Err(e) => return Err(to_pyerr(e)),
            };
            Ok(PyPartitionLog {
                log,
                path,
                record_type,
                decoded_pool: std::sync::Mutex::new(None),
            })
        })
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn start_offset(&self, py: Python<'_>) -> PyResult<i64> {
        self.run(py, |log| log.start_offset())
    }

    #[getter]
    fn end_offset(&self, py: Python<'_>) -> PyResult<i64> {
        self.run(py, |log| log.end_offset())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.log.is_closed()
    }

    /// Diagnostic: the longest wait of this object for the writer lock since the last call, in
    /// nanoseconds.
    fn take_longest_writer_lock_wait_ns(&self) -> u64 {
        self.log.take_longest_writer_lock_wait_ns()
    }

    #[pyo3(signature = (values, keys, headers, timestamps_ms, codec))]
    fn append(
        &self,
        py: Python<'_>,
        values: &Bound<'_, PyAny>,
        keys: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyAny>>,
        timestamps_ms: Option<&Bound<'_, PyAny>>,
        codec: &str,
    ) -> PyResult<i64> {
        guard(|| {
            if self.log.is_closed() {
                return Err(to_pyerr(Error::Closed(self.log.path().to_path_buf())));
            }
            let codec = codec_from_name(codec).map_err(to_pyerr)?;
            let absent = |a: Option<&Bound<'_, PyAny>>| a.is_none_or(|a| a.is_none());
            if absent(headers) && absent(timestamps_ms) {
                let value_tuple = snapshot(values);
                // Some(None): no keys; None: keys of a type the general path handles
                let key_tuple = match keys.filter(|k| !k.is_none()) {
                    None => Some(None),
                    Some(k) => snapshot(k).map(Some),
                };
                if let (Some(v), Some(k)) = (&value_tuple, &key_tuple) {
                    let now = now_ms();
                    if let Some(specs) = plain_records(v, k.as_ref(), now) {
                        return py
                            .detach(|| self.log.append_at(&specs, codec, now))
                            .map_err(to_pyerr);
                    }
                }
            }
            let shaped = shapes(values, keys, headers, timestamps_ms).map_err(to_pyerr)?;
            let x = extract_items(&shaped).map_err(to_pyerr)?;
            py.detach(|| {
                let now = now_ms();
                let header_pairs: Vec<(&str, Option<&[u8]>)> = x
                    .header_items
                    .iter()
                    .map(|(k, v)| (&**k, v.as_ref().map(Buf::as_slice)))
                    .collect();
                let specs: Vec<RecordSpec<'_>> = (0..x.values.len())
                    .map(|i| RecordSpec {
                        timestamp: x.timestamps.as_ref().map_or(now, |t| t[i]),
                        key: x
                            .keys
                            .as_ref()
                            .and_then(|k| k[i].as_ref().map(Buf::as_slice)),
                        value: x.values[i].as_ref().map(Buf::as_slice),
                        headers: x
                            .header_ranges
                            .as_ref()
                            .map_or(&[][..], |r| &header_pairs[r[i].clone()]),
                    })
                    .collect();
                self.log.append_at(&specs, codec, now)
            })
            .map_err(to_pyerr)
        })
    }

    fn append_raw(&self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<i64> {
        guard(|| {
            if self.log.is_closed() {
                return Err(to_pyerr(Error::Closed(self.log.path().to_path_buf())));
            }
            let buf = match extract_bytes(batch, || "batch".to_owned()) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    return Err(to_pyerr(Error::Type(
                        "batch must be bytes-like, not None".into(),
                    )))
                }
                Err(e) => return Err(to_pyerr(e)),
            };
            self.run(py, |log| log.append_raw(buf.as_slice()))
        })
    }

    /// A read-only memoryview over a NativeBuffer (an mmap range of a sealed segment, or the
    /// bytes read from the active one); the view keeps the mapping alive.
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: &Bound<'py, PyAny>,
        max_bytes: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyMemoryView>> {
        let offset = int_arg(offset, "offset").map_err(to_pyerr)?;
        let max_bytes = int_arg(max_bytes, "max_bytes").map_err(to_pyerr)?.max(0) as u64;
        let bytes = self.run(py, |log| log.read(offset, max_bytes))?;
        // why a memoryview made here: wrapping in Python costs a frame per call, and random
        // reads are call-bound (a few microseconds each).
        PyMemoryView::from(Bound::new(py, buffer_of(bytes))?.as_any())
    }

    /// `one_segment`: only from the segment holding the first batch (the `records()`
    /// iterator's step, see `PartitionLog::records_chunk_within`).
    #[pyo3(signature = (start, end, max_bytes, *, one_segment=false))]
    fn records_chunk<'py>(
        &self,
        py: Python<'py>,
        start: i64,
        end: i64,
        max_bytes: i64,
        one_segment: bool,
    ) -> PyResult<(Bound<'py, PyList>, i64)> {
        // why: reading and decoding (CRC, decompression, record parsing) run without the GIL;
        // only the Record objects are built with it, with the cyclic GC paused.
        let (decoded, next) = self.decode_chunk(py, start, end, max_bytes, one_segment)?;
        guard(|| {
            let list = decoded.to_py_list(py, self.record_type.bind(py))?;
            self.return_to_pool(decoded);
            Ok((list, next))
        })
    }

    /// `records_chunk` for a consumer: the records as `record_type` (`pylog.ConsumerRecord`)
    /// of `topic`/`partition`, built here without a Python frame per record.
    #[allow(clippy::too_many_arguments)]
    fn consumer_records_chunk<'py>(
        &self,
        py: Python<'py>,
        start: i64,
        end: i64,
        max_bytes: i64,
        topic: &Bound<'py, PyString>,
        partition: &Bound<'py, PyInt>,
        record_type: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, i64)> {
        let (decoded, next) = self.decode_chunk(py, start, end, max_bytes, false)?;
        guard(|| {
            let list =
                decoded.to_consumer_records(py, record_type, topic.as_any(), partition.as_any())?;
            self.return_to_pool(decoded);
            Ok((list, next))
        })
    }

    /// The coordination page's append counter (read it before looking, then wait on it with
    /// `Waiter.wait`, so an append in between is not missed).
    fn tail_seq(&self) -> u32 {
        self.log.shared_state().tail_seq()
    }

    fn read_columns<'py>(
        &self,
        py: Python<'py>,
        offset: &Bound<'py, PyAny>,
        max_records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let offset = int_arg(offset, "offset").map_err(to_pyerr)?;
        let max_records = int_arg(max_records, "max_records")
            .map_err(to_pyerr)?
            .max(0) as u64;
        let columns = self.run(py, |log| log.read_columns(offset, max_records))?;
        guard(|| columns_to_py(py, columns))
    }

    fn offset_for_timestamp(
        &self,
        py: Python<'_>,
        ts_ms: &Bound<'_, PyAny>,
    ) -> PyResult<Option<i64>> {
        let ts_ms = int_arg(ts_ms, "ts_ms").map_err(to_pyerr)?;
        self.run(py, |log| log.offset_for_timestamp(ts_ms))
    }

    fn roll(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |log| log.roll())
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |log| log.flush())
    }

    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |log| log.sync())
    }

    fn wait_for(
        &self,
        py: Python<'_>,
        offset: &Bound<'_, PyAny>,
        timeout_ms: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let offset = int_arg(offset, "offset").map_err(to_pyerr)?;
        let timeout_ms = int_arg(timeout_ms, "timeout_ms").map_err(to_pyerr)?.max(0) as u64;
        self.run(py, |log| log.wait_for(offset, timeout_ms))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |log| log.close())
    }

    /// Kafka's DeleteRecords: `(deleted_segments, deleted_bytes, start_offset)`.
    fn delete_before(
        &self,
        py: Python<'_>,
        offset: &Bound<'_, PyAny>,
    ) -> PyResult<(u64, u64, i64)> {
        let offset = int_arg(offset, "offset").map_err(to_pyerr)?;
        self.run(py, |log| log.delete_before(offset).map(retention_tuple))
    }

    /// Kafka's deleteOldSegments at `now_ms` (None: the wall clock):
    /// `(deleted_segments, deleted_bytes, start_offset)`, or None when `wait` is false and
    /// another cleaner holds the cleaner lock.
    #[pyo3(signature = (now_ms=None, wait=true))]
    fn apply_retention(
        &self,
        py: Python<'_>,
        now_ms: Option<&Bound<'_, PyAny>>,
        wait: bool,
    ) -> PyResult<Option<(u64, u64, i64)>> {
        let now = now_arg(now_ms)?;
        self.run(py, |log| {
            log.apply_retention(now, wait)
                .map(|r| r.map(retention_tuple))
        })
    }

    /// The cleaner's view (no lock, no write): the fields of `pylog.partition.Cleanable`.
    #[pyo3(signature = (now_ms=None))]
    fn cleanable(
        &self,
        py: Python<'_>,
        now_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(i64, i64, u64, u64, f64, bool, bool)> {
        let now = now_arg(now_ms)?;
        self.run(py, |log| {
            let c = crate::cleaner::cleanable(log, now)?;
            Ok((
                c.first_dirty_offset,
                c.first_uncleanable_offset,
                c.clean_bytes,
                c.cleanable_bytes,
                c.dirty_ratio,
                c.needs_compaction_now,
                c.due,
            ))
        })
    }

    /// Compaction passes until the dirty range is clean (`crate::cleaner::compact`), with the
    /// GIL released. Between groups and every few MiB of input the cleaner asks `stop`, which
    /// takes the GIL to look at `cancel.is_set()` and to run Python's signal handlers: a
    /// handler's exception (Ctrl-C: `KeyboardInterrupt`) stops the call at that safe point and
    /// is raised once the cleaner has cleaned up. Returns the fields of `CleanResult`.
    #[pyo3(signature = (now_ms, map_bytes, force, wait, cancel))]
    #[allow(clippy::type_complexity)]
    fn compact(
        &self,
        py: Python<'_>,
        now_ms: Option<&Bound<'_, PyAny>>,
        map_bytes: &Bound<'_, PyAny>,
        force: bool,
        wait: bool,
        cancel: Option<Py<PyAny>>,
    ) -> PyResult<(u64, u64, u64, u64, u64, u64, u64, i64, Option<String>)> {
        let now = now_arg(now_ms)?;
        let map_bytes = int_arg(map_bytes, "map_bytes").map_err(to_pyerr)?;
        let map_bytes = usize::try_from(map_bytes.max(0)).unwrap_or(usize::MAX);
        let cancel = cancel.filter(|c| !c.is_none(py));
        let raised: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
        let stop = || {
            Python::attach(|py| {
                if let Err(e) = py.check_signals() {
                    if let Ok(mut slot) = raised.lock() {
                        slot.get_or_insert(e);
                    }
                    return true;
                }
                let Some(cancel) = &cancel else {
                    return false;
                };
                match cancel
                    .bind(py)
                    .call_method0("is_set")
                    .and_then(|r| r.is_truthy())
                {
                    Ok(set) => set,
                    Err(e) => {
                        // a broken cancel object stops the call and its error is raised
                        if let Ok(mut slot) = raised.lock() {
                            slot.get_or_insert(e);
                        }
                        true
                    }
                }
            })
        };
        let result = guard(|| {
            py.detach(|| crate::cleaner::compact(&self.log, now, map_bytes, force, wait, &stop))
                .map_err(to_pyerr)
        });
        if let Some(e) = raised.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(e);
        }
        let c = result?;
        Ok((
            c.passes,
            c.segments_cleaned,
            c.bytes_read,
            c.bytes_written,
            c.records_read,
            c.records_kept,
            c.tombstones_removed,
            c.clean_offset,
            c.skipped,
        ))
    }
}

fn retention_tuple(r: crate::retention::RetentionStats) -> (u64, u64, i64) {
    (r.deleted_segments as u64, r.deleted_bytes, r.start_offset)
}

/// A `now_ms` argument: None = the wall clock, else an int (`TypeError` otherwise).
fn now_arg(given: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
    match given.filter(|n| !n.is_none()) {
        None => Ok(now_ms()),
        Some(n) => int_arg(n, "now_ms").map_err(to_pyerr),
    }
}
