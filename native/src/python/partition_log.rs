//! `pylog._native.PartitionLog`: the Python face of `crate::log::PartitionLog`
//! (signatures in `pylog/_native.pyi`, behaviour in docs/partition-log.md).
//!
//! Python objects are only touched with the GIL held: `append` borrows `bytes` without copying
//! (`PyBackedBytes`) and copies other buffers, then releases the GIL (`py.detach`) for encode +
//! write. Every file operation and record loop runs detached; only building the `Record`
//! objects of `records_chunk` needs the GIL. The class is frozen; the log inside is `Sync`
//! (one mutex around its state), so any number of Python threads may call in.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::compression::Codec;
use crate::config::{ConfigValue, LogConfig};
use crate::error::Error;
use crate::log::{now_ms, PartitionLog};
use crate::record::RecordSpec;
use crate::segment::SegmentBytes;

use super::buffer::NativeBuffer;
use super::convert::{columns_to_py, record_to_py};
use super::errors::{guard, to_pyerr};

/// Bytes taken from a Python bytes-like object: borrowed from `bytes`, copied otherwise.
enum Buf {
    Backed(PyBackedBytes),
    Owned(Vec<u8>),
}

impl Buf {
    fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Backed(b) => b,
            Buf::Owned(v) => v,
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

fn type_error(what: impl FnOnce() -> String) -> Error {
    Error::Type(what())
}

/// A bytes-like object (bytes, bytearray, memoryview, any buffer) or None.
fn extract_bytes(
    obj: &Bound<'_, PyAny>,
    what: impl FnOnce() -> String,
) -> Result<Option<Buf>, Error> {
    if obj.is_none() {
        return Ok(None);
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(Buf::Backed(PyBackedBytes::from(b.clone()))));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Some(Buf::Owned(b.to_vec())));
    }
    if let Ok(buf) = PyBuffer::<u8>::get(obj) {
        if let Ok(v) = buf.to_vec(obj.py()) {
            return Ok(Some(Buf::Owned(v)));
        }
    }
    Err(type_error(|| {
        format!(
            "{} must be bytes-like or None, not {}",
            what(),
            type_name(obj)
        )
    }))
}

/// The items of a sequence argument (list and tuple fast paths, else any iterable).
fn items<'py>(obj: &Bound<'py, PyAny>, name: &str) -> Result<Vec<Bound<'py, PyAny>>, Error> {
    if let Ok(l) = obj.cast::<PyList>() {
        return Ok(l.iter().collect());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return Ok(t.iter().collect());
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyDict>() {
        return Err(type_error(|| {
            format!("{name} must be a sequence, not {}", type_name(obj))
        }));
    }
    let iter = obj
        .try_iter()
        .map_err(|_| type_error(|| format!("{name} must be a sequence, not {}", type_name(obj))))?;
    iter.collect::<PyResult<Vec<_>>>()
        .map_err(|e| Error::Type(format!("{name} could not be iterated: {e}")))
}

fn codec_from_name(name: &str) -> Result<Codec, Error> {
    Ok(match name {
        "none" | "uncompressed" | "producer" => Codec::None,
        "gzip" => Codec::Gzip,
        "snappy" => Codec::Snappy,
        "lz4" => Codec::Lz4,
        "zstd" => Codec::Zstd,
        other => {
            return Err(Error::InvalidConfig(format!(
                "unknown compression codec {other:?}"
            )))
        }
    })
}

fn config_from_dict(config: &Bound<'_, PyDict>) -> Result<LogConfig, Error> {
    let mut c = LogConfig::default();
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
        c.set(&key, &value)?;
    }
    Ok(c)
}

/// Everything `append` extracted from Python, owned (or borrowed from immutable `bytes`).
struct Extracted {
    values: Vec<Option<Buf>>,
    keys: Option<Vec<Option<Buf>>>,
    /// Per record: the range of `header_items` that belongs to it.
    header_ranges: Option<Vec<std::ops::Range<usize>>>,
    header_items: Vec<(PyBackedStr, Option<Buf>)>,
    timestamps: Option<Vec<i64>>,
}

fn extract_append(
    values: &Bound<'_, PyAny>,
    keys: Option<&Bound<'_, PyAny>>,
    headers: Option<&Bound<'_, PyAny>>,
    timestamps_ms: Option<&Bound<'_, PyAny>>,
) -> Result<Extracted, Error> {
    let value_items = items(values, "values")?;
    let n = value_items.len();
    if n == 0 {
        return Err(Error::InvalidRecord(
            "append needs at least one value".into(),
        ));
    }
    let check_len = |name: &str, len: usize| {
        if len != n {
            Err(Error::InvalidRecord(format!(
                "{name} has {len} items but values has {n}"
            )))
        } else {
            Ok(())
        }
    };
    let key_items = keys.map(|k| items(k, "keys")).transpose()?;
    if let Some(k) = &key_items {
        check_len("keys", k.len())?;
    }
    let header_lists = headers.map(|h| items(h, "headers")).transpose()?;
    if let Some(h) = &header_lists {
        check_len("headers", h.len())?;
    }
    let ts_items = timestamps_ms
        .map(|t| items(t, "timestamps_ms"))
        .transpose()?;
    if let Some(t) = &ts_items {
        check_len("timestamps_ms", t.len())?;
    }
    let mut out_values = Vec::with_capacity(n);
    for (i, v) in value_items.iter().enumerate() {
        out_values.push(extract_bytes(v, || format!("values[{i}]"))?);
    }
    let out_keys = match key_items {
        None => None,
        Some(ks) => {
            let mut out = Vec::with_capacity(n);
            for (i, k) in ks.iter().enumerate() {
                out.push(extract_bytes(k, || format!("keys[{i}]"))?);
            }
            Some(out)
        }
    };
    let mut header_items = Vec::new();
    let header_ranges = match header_lists {
        None => None,
        Some(hs) => {
            let mut ranges = Vec::with_capacity(n);
            for (i, h) in hs.iter().enumerate() {
                let from = header_items.len();
                if !h.is_none() {
                    for (j, pair) in items(h, &format!("headers[{i}]"))?.iter().enumerate() {
                        let parts = items(pair, &format!("headers[{i}][{j}]"))?;
                        if parts.len() != 2 {
                            return Err(Error::Type(format!(
                                "headers[{i}][{j}] must be a (str, bytes | None) pair, not {} items",
                                parts.len()
                            )));
                        }
                        let key = parts[0].cast::<PyString>().map_err(|_| {
                            Error::Type(format!(
                                "headers[{i}][{j}] key must be str, not {}",
                                type_name(&parts[0])
                            ))
                        })?;
                        let key = PyBackedStr::try_from(key.clone()).map_err(|e| {
                            Error::Type(format!("headers[{i}][{j}] key is not valid UTF-8: {e}"))
                        })?;
                        let value =
                            extract_bytes(&parts[1], || format!("headers[{i}][{j}] value"))?;
                        header_items.push((key, value));
                    }
                }
                ranges.push(from..header_items.len());
            }
            Some(ranges)
        }
    };
    let timestamps = match ts_items {
        None => None,
        Some(ts) => {
            let mut out = Vec::with_capacity(n);
            for (i, t) in ts.iter().enumerate() {
                let bad = || {
                    Error::InvalidRecord(format!(
                        "timestamps_ms[{i}] must be an int in [0, 2**63-1], not {t}"
                    ))
                };
                if t.is_instance_of::<pyo3::types::PyBool>() {
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

#[pyclass(frozen, module = "pylog._native", name = "PartitionLog")]
pub struct PyPartitionLog {
    log: PartitionLog,
    path: String,
    record_type: Py<PyAny>,
}

fn buffer_of(bytes: SegmentBytes) -> NativeBuffer {
    match bytes {
        SegmentBytes::Mapped(m, r) => NativeBuffer::from_mmap(m, r),
        SegmentBytes::Owned(v) => NativeBuffer::from_vec(v),
    }
}

impl PyPartitionLog {
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
            let log = py
                .detach(move || PartitionLog::open(&p, cfg))
                .map_err(to_pyerr)?;
            Ok(PyPartitionLog {
                log,
                path,
                record_type,
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
            let x = extract_append(values, keys, headers, timestamps_ms).map_err(to_pyerr)?;
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
                self.log.append(&specs, codec)
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

    fn read(&self, py: Python<'_>, offset: i64, max_bytes: i64) -> PyResult<NativeBuffer> {
        let max_bytes = max_bytes.max(0) as u64;
        self.run(py, |log| log.read(offset, max_bytes))
            .map(buffer_of)
    }

    fn records_chunk<'py>(
        &self,
        py: Python<'py>,
        start: i64,
        end: i64,
        max_bytes: i64,
    ) -> PyResult<(Bound<'py, PyList>, i64)> {
        let max_bytes = max_bytes.max(1) as u64;
        let chunk = self.run(py, |log| log.records_chunk(start, end, max_bytes))?;
        guard(|| {
            let out = PyList::empty(py);
            let record_type = self.record_type.bind(py);
            let mut scratch = Vec::new();
            let mut py_err = None;
            let decoded = chunk.decode(&mut scratch, |rv| {
                match record_to_py(py, record_type, &rv).and_then(|r| out.append(r)) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        py_err = Some(e);
                        Err(Error::Internal("record conversion failed".into()))
                    }
                }
            });
            if let Some(e) = py_err {
                return Err(e);
            }
            decoded.map_err(to_pyerr)?;
            Ok((out, chunk.next))
        })
    }

    fn read_columns<'py>(
        &self,
        py: Python<'py>,
        offset: i64,
        max_records: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let max_records = max_records.max(0) as u64;
        let columns = self.run(py, |log| log.read_columns(offset, max_records))?;
        guard(|| columns_to_py(py, columns))
    }

    fn offset_for_timestamp(&self, py: Python<'_>, ts_ms: i64) -> PyResult<Option<i64>> {
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

    fn wait_for(&self, py: Python<'_>, offset: i64, timeout_ms: i64) -> PyResult<bool> {
        let timeout_ms = timeout_ms.max(0) as u64;
        self.run(py, |log| log.wait_for(offset, timeout_ms))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |log| log.close())
    }
}
