//! The producer's hot path in Rust, for `pylog/embedded/producer_core.py` (native engine).
//!
//! - `murmur2(key)`, `partition_for_key(key, partitions)`: native/src/producer_partitioner.rs.
//! - `NativeAccumulator`: the per-record half of the producer core — argument checks, the
//!   partitioner (explicit / murmur2 / KIP-480 sticky) and one open batch per partition, holding
//!   references to the caller's bytes objects (no copy). A batch closes when it holds
//!   `batch_size` bytes (the same size estimate as the Python core: 61 per batch, 10 + key +
//!   value + headers per record), or when Python asks (`close_partition`, `close_all`,
//!   `close_expired`, `close_if_due`); closed batches wait in order in `closed` until Python's
//!   writer takes them (`take_closed`), which keeps the writer, the linger thread, flush and acks
//!   in one place (producer_core.py) for both cores.
//! - `RecordFuture`: the future `NativeAccumulator.send` returns — kafka-python's API, over the
//!   batch's Python `ProduceResult` (pylog/future.py owns the outcome rules: `record_outcome`).
//!
//! Locking: all state is under one `std::sync::Mutex`, taken with `try_lock` first and otherwise
//! waited for with the GIL released (so a holder that runs Python code — a GC finalizer during an
//! allocation — can never deadlock with a waiter holding the GIL). No Python code is called on
//! purpose while it is held: results come from a spare pool filled outside the lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, TryLockError};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::producer_partitioner;

fn with_bytes<T>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> T) -> PyResult<T> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    let buffer = PyBuffer::<u8>::get(data)?;
    let bytes = buffer.to_vec(data.py())?;
    Ok(f(&bytes))
}

/// Kafka's `Utils.murmur2` of a bytes-like object (a signed 32-bit int).
#[pyfunction]
pub fn murmur2(data: &Bound<'_, PyAny>) -> PyResult<i32> {
    with_bytes(data, producer_partitioner::murmur2)
}

/// `toPositive(murmur2(key)) % partitions` (BuiltInPartitioner.partitionForKey).
#[pyfunction]
pub fn partition_for_key(key: &Bound<'_, PyAny>, partitions: i64) -> PyResult<u32> {
    let partitions = u32::try_from(partitions)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| PyValueError::new_err("partitions must be in [1, 2**32)"))?;
    with_bytes(key, |k| {
        producer_partitioner::partition_for_key(k, partitions)
    })
}

/// Batch header bytes (DefaultRecordBatch.RECORD_BATCH_OVERHEAD); same constant as producer_core.py.
const BATCH_OVERHEAD: usize = 61;
/// Per-record framing estimate; same constant as producer_core.py (RECORD_OVERHEAD).
const RECORD_OVERHEAD: usize = 10;

struct OpenBatch {
    values: Vec<Py<PyAny>>,
    keys: Option<Vec<Option<Py<PyAny>>>>,
    headers: Option<Vec<Option<Py<PyAny>>>>,
    timestamps: Option<Vec<Option<i64>>>,
    size: usize,
    deadline: f64,
    result: Py<PyAny>,
}

struct ClosedBatch {
    topic: Py<PyString>,
    partition: u32,
    batch: OpenBatch,
}

struct TopicState {
    name: Py<PyString>,
    count: u32,
    sticky: Option<u32>,
    partitions: Vec<Option<OpenBatch>>,
}

/// What closing a batch touches besides its topic (split from `State.topics` so the hot path
/// borrows a topic and these at once, with one hash lookup).
struct Batches {
    closed: Vec<ClosedBatch>,
    open_batches: usize,
    rng: u64,
    /// the linger thread sleeps without deadline (set by `close_expired` when nothing is open):
    /// the next opened batch must wake it, and only that one
    sender_idle: bool,
}

struct State {
    topics: HashMap<String, TopicState, BuildHasherDefault<FnvHasher>>,
    batches: Batches,
    spare_results: Vec<Py<PyAny>>,
    shut: bool,
}

/// FNV-1a: topic names are short and not attacker-chosen hash-flooding input here; SipHash was
/// a third of the accumulator's own time (perf, 1M sends).
#[derive(Default)]
struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

fn next_random(rng: &mut u64, below: u32) -> u32 {
    // xorshift64*: the sticky choice needs uniformity, not cryptographic quality
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % u64::from(below)) as u32
}

/// KIP-480 (StickyPartitionCache): after a batch of the sticky partition completes, a random
/// partition different from it.
fn sticky_completed(t: &mut TopicState, rng: &mut u64, partition: u32) {
    if t.sticky != Some(partition) {
        return;
    }
    let next = if t.count <= 1 {
        0
    } else {
        let choice = next_random(rng, t.count - 1);
        if choice >= partition {
            choice + 1
        } else {
            choice
        }
    };
    t.sticky = Some(next);
}

/// Move the open batch of `partition` to the closed list (the sticky rule applies).
fn close_in(py: Python<'_>, t: &mut TopicState, batches: &mut Batches, partition: u32) -> bool {
    let Some(batch) = t
        .partitions
        .get_mut(partition as usize)
        .and_then(Option::take)
    else {
        return false;
    };
    batches.open_batches -= 1;
    batches.closed.push(ClosedBatch {
        topic: t.name.clone_ref(py),
        partition,
        batch,
    });
    sticky_completed(t, &mut batches.rng, partition);
    true
}

impl State {
    fn batch_completed(&mut self, topic: &str, partition: u32) {
        if let Some(t) = self.topics.get_mut(topic) {
            sticky_completed(t, &mut self.batches.rng, partition);
        }
    }

    fn close(&mut self, py: Python<'_>, topic: &str, partition: u32) -> bool {
        match self.topics.get_mut(topic) {
            Some(t) => close_in(py, t, &mut self.batches, partition),
            None => false,
        }
    }
}

/// Size of a bytes-like object, or None when it is not one.
fn bytes_len(obj: &Bound<'_, PyAny>) -> Option<usize> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Some(b.as_bytes().len());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Some(b.len());
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        return obj.len().ok();
    }
    None
}

fn type_error(what: &str, obj: &Bound<'_, PyAny>) -> PyErr {
    let name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray, memoryview or None (set {what}_serializer for other types), not {name}"
    ))
}

/// Checked headers: a list of `(str, bytes-like | None)` tuples; returns (list, size, count).
fn check_headers<'py>(headers: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, usize, usize)> {
    let py = headers.py();
    let items: Vec<Bound<'py, PyAny>> = if let Ok(l) = headers.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = headers.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        let name = headers
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(PyTypeError::new_err(format!(
            "headers must be a list of (str, bytes) tuples, not {name}"
        )));
    };
    let mut size = 0;
    for item in &items {
        let bad = || {
            let r = item.repr().map(|r| r.to_string()).unwrap_or_default();
            PyTypeError::new_err(format!(
                "each header must be a (str, bytes | None) tuple, not {r}"
            ))
        };
        let pair = item.cast::<PyTuple>().map_err(|_| bad())?;
        if pair.len() != 2 {
            return Err(bad());
        }
        let k = pair.get_item(0)?;
        let v = pair.get_item(1)?;
        let key = k.cast::<PyString>().map_err(|_| bad())?;
        size += key.to_str()?.len();
        if !v.is_none() {
            size += bytes_len(&v).ok_or_else(bad)?;
        }
    }
    let list = PyList::new(py, &items)?.into_any();
    Ok((list, size, items.len()))
}

fn as_index(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if obj.is_instance_of::<pyo3::types::PyBool>() || !obj.is_instance_of::<pyo3::types::PyInt>() {
        let name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {name}"
        )));
    }
    obj.extract::<i64>()
        .map_err(|_| PyValueError::new_err(format!("{what} is out of range")))
}

/// The per-record half of the embedded producer core (see the module docs).
#[pyclass(frozen, module = "pylog._native")]
pub struct NativeAccumulator {
    state: Mutex<State>,
    batch_size: usize,
    max_request_size: usize,
    linger_s: f64,
    /// `resolve_topic(topic) -> list[TopicPartition]`: Python's topic lookup (auto-creation)
    resolve_topic: Py<PyAny>,
    /// `new_result() -> ProduceResult`: spare results are made with it, outside the lock
    new_result: Py<PyAny>,
    /// `wake()`: the first batch opened while none was lingering (the linger thread sleeps)
    wake: Py<PyAny>,
    /// `on_full()`: a send closed a batch; Python's writer takes it (`take_closed`) now
    on_full: Py<PyAny>,
    /// `too_large(topic, partition, key, value, size)`: the failed future of a record over
    /// max_request_size (Python builds it, as the Python core does)
    too_large: Py<PyAny>,
    monotonic: Py<PyAny>,
    record_outcome: Py<PyAny>,
    run_callback: Py<PyAny>,
    unknown_partition: Py<PyAny>,
    closed_error: Py<PyAny>,
}

impl NativeAccumulator {
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, State> {
        match self.state.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => self
                .state
                .lock_py_attached(py)
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn ensure_spare(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        let have = self.lock(py).spare_results.len();
        if have >= n {
            return Ok(());
        }
        let mut made = Vec::with_capacity(n - have);
        for _ in have..n {
            made.push(self.new_result.call0(py)?);
        }
        self.lock(py).spare_results.extend(made);
        Ok(())
    }

    fn topic_known(&self, py: Python<'_>, topic: &Bound<'_, PyString>) -> PyResult<()> {
        let name = topic.to_str()?;
        if self.lock(py).topics.contains_key(name) {
            return Ok(());
        }
        let tps = self.resolve_topic.call1(py, (topic,))?;
        let tps: Vec<Py<PyAny>> = tps.extract(py)?;
        let count =
            u32::try_from(tps.len()).map_err(|_| PyValueError::new_err("too many partitions"))?;
        let mut state = self.lock(py);
        state
            .topics
            .entry(name.to_owned())
            .or_insert_with(|| TopicState {
                name: topic.clone().unbind(),
                count,
                sticky: None,
                partitions: (0..count).map(|_| None).collect(),
            });
        Ok(())
    }

    fn closed(&self, py: Python<'_>) -> PyErr {
        match self.closed_error.call1(py, ("the producer is closed",)) {
            Ok(e) => PyErr::from_value(e.into_bound(py)),
            Err(e) => e,
        }
    }

    fn now(&self, py: Python<'_>) -> PyResult<f64> {
        self.monotonic.call0(py)?.extract(py)
    }
}

#[pymethods]
impl NativeAccumulator {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (batch_size, max_request_size, linger_s, seed, resolve_topic, new_result, wake, on_full, too_large, monotonic, record_outcome, run_callback, unknown_partition, closed_error))]
    fn new(
        batch_size: usize,
        max_request_size: usize,
        linger_s: f64,
        seed: u64,
        resolve_topic: Py<PyAny>,
        new_result: Py<PyAny>,
        wake: Py<PyAny>,
        on_full: Py<PyAny>,
        too_large: Py<PyAny>,
        monotonic: Py<PyAny>,
        record_outcome: Py<PyAny>,
        run_callback: Py<PyAny>,
        unknown_partition: Py<PyAny>,
        closed_error: Py<PyAny>,
    ) -> Self {
        NativeAccumulator {
            state: Mutex::new(State {
                topics: HashMap::default(),
                batches: Batches {
                    closed: Vec::new(),
                    open_batches: 0,
                    rng: seed | 1,
                    sender_idle: false,
                },
                spare_results: Vec::new(),
                shut: false,
            }),
            batch_size: batch_size.max(1),
            max_request_size,
            linger_s,
            resolve_topic,
            new_result,
            wake,
            on_full,
            too_large,
            monotonic,
            record_outcome,
            run_callback,
            unknown_partition,
            closed_error,
        }
    }

    /// `Producer.send` for bytes-like keys/values (see producer_core.py `ProducerCore.send`).
    #[pyo3(signature = (topic, value=None, key=None, headers=None, partition=None, timestamp_ms=None))]
    #[allow(clippy::too_many_arguments)] // why: kafka-python's send signature, plus `py`
    fn send(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyAny>>,
        partition: Option<&Bound<'_, PyAny>>,
        timestamp_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let topic = topic.cast::<PyString>().map_err(|_| {
            let name = topic
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!("topic must be a str, not {name}"))
        })?;
        let value = value.filter(|v| !v.is_none());
        let key = key.filter(|k| !k.is_none());
        let headers = headers.filter(|h| !h.is_none());
        let (headers, header_size, header_count) = match headers {
            Some(h) => {
                let (list, size, count) = check_headers(h)?;
                (Some(list), size as i64, count)
            }
            None => (None, -1, 0),
        };
        let value_size = match value {
            None => -1,
            Some(v) => bytes_len(v).ok_or_else(|| type_error("value", v))? as i64,
        };
        let key_size = match key {
            None => -1,
            Some(k) => bytes_len(k).ok_or_else(|| type_error("key", k))? as i64,
        };
        let timestamp = match timestamp_ms.filter(|t| !t.is_none()) {
            None => None,
            Some(t) => {
                let ts = as_index(t, "timestamp_ms")?;
                if ts < 0 {
                    return Err(PyValueError::new_err(format!(
                        "timestamp_ms must be in [0, 2**63), not {ts}"
                    )));
                }
                Some(ts)
            }
        };
        let explicit = match partition.filter(|p| !p.is_none()) {
            None => None,
            Some(p) => Some(as_index(p, "partition")?),
        };
        let name = topic.to_str()?;
        let mut size = RECORD_OVERHEAD + key_size.max(0) as usize + value_size.max(0) as usize;
        if header_size >= 0 {
            size += header_size as usize + 2 * header_count;
        }
        let keyed_hash = match key {
            Some(k) if explicit.is_none() => Some(with_bytes(k, producer_partitioner::murmur2)?),
            _ => None,
        };
        let sticky = explicit.is_none() && keyed_hash.is_none();
        let mut full = false;
        let mut wake = false;
        let mut guard = self.lock(py);
        loop {
            let st = &mut *guard;
            if st.shut {
                drop(guard);
                return Err(self.closed(py));
            }
            if !st.spare_results.is_empty() && st.topics.contains_key(name) {
                break;
            }
            drop(guard);
            self.topic_known(py, topic)?;
            self.ensure_spare(py, 4)?;
            guard = self.lock(py);
        }
        let st = &mut *guard;
        let t = st.topics.get_mut(name).expect("checked above");
        let count = t.count;
        let mut p = match (explicit, keyed_hash) {
            (Some(p), _) => {
                if p < 0 || p >= i64::from(count) {
                    drop(guard);
                    let msg = format!(
                        "partition {p} of topic '{name}' does not exist (the topic has {count})"
                    );
                    return Err(PyErr::from_value(
                        self.unknown_partition.call1(py, (msg,))?.into_bound(py),
                    ));
                }
                p as u32
            }
            (None, Some(h)) => (producer_partitioner::to_positive(h) as u32) % count,
            (None, None) => match t.sticky.filter(|s| *s < count) {
                Some(s) => s,
                None => {
                    let s = next_random(&mut st.batches.rng, count);
                    t.sticky = Some(s);
                    s
                }
            },
        };
        if size + BATCH_OVERHEAD > self.max_request_size {
            drop(guard);
            return self
                .too_large
                .call1(py, (topic, p, key_size, value_size, size + BATCH_OVERHEAD));
        }
        let does_not_fit = |t: &TopicState, p: u32| {
            t.partitions[p as usize]
                .as_ref()
                .is_some_and(|b| b.size + size > self.batch_size && !b.values.is_empty())
        };
        if does_not_fit(t, p) {
            close_in(py, t, &mut st.batches, p);
            full = true;
            if sticky {
                // why: the record that would open a new batch goes to the next sticky
                // partition instead (KafkaProducer's abortOnNewBatch, KIP-480)
                p = t.sticky.unwrap_or(p);
                if does_not_fit(t, p) {
                    close_in(py, t, &mut st.batches, p);
                }
            }
        }
        if t.partitions[p as usize].is_none() {
            let result = st.spare_results.pop().expect("checked above");
            let deadline = self.now(py)? + self.linger_s;
            wake = st.batches.sender_idle;
            st.batches.sender_idle = false;
            st.batches.open_batches += 1;
            t.partitions[p as usize] = Some(OpenBatch {
                values: Vec::new(),
                keys: None,
                headers: None,
                timestamps: None,
                size: BATCH_OVERHEAD,
                deadline,
                result,
            });
        }
        let batch = t.partitions[p as usize].as_mut().expect("opened above");
        let index = batch.values.len();
        batch.values.push(match value {
            Some(v) => v.clone().unbind(),
            None => py.None(),
        });
        if key.is_some() || batch.keys.is_some() {
            let keys = batch
                .keys
                .get_or_insert_with(|| (0..index).map(|_| None).collect());
            keys.push(key.map(|k| k.clone().unbind()));
        }
        if headers.is_some() || batch.headers.is_some() {
            let hs = batch
                .headers
                .get_or_insert_with(|| (0..index).map(|_| None).collect());
            hs.push(headers.as_ref().map(|h| h.clone().unbind()));
        }
        if timestamp.is_some() || batch.timestamps.is_some() {
            let ts = batch.timestamps.get_or_insert_with(|| vec![None; index]);
            ts.push(timestamp);
        }
        batch.size += size;
        let result = batch.result.clone_ref(py);
        if batch.size >= self.batch_size {
            close_in(py, t, &mut st.batches, p);
            full = true;
        }
        drop(guard);
        if wake {
            self.wake.call0(py)?;
        }
        if full {
            self.on_full.call0(py)?;
        }
        let future = RecordFuture {
            result,
            index,
            timestamp_ms: timestamp,
            key_size,
            value_size,
            header_size,
            outcome: std::sync::OnceLock::new(),
            record_outcome: self.record_outcome.clone_ref(py),
            run_callback: self.run_callback.clone_ref(py),
        };
        let future = Py::new(py, future)?;
        // why: a producer keeps up to millions of futures alive; tracked by the cyclic GC each
        // one makes every collection slower (measured: ~40% of send's time at 1M futures). A
        // future can only be in a cycle through its result's callback list while pending, and
        // the result clears that list when it completes (every result completes: written,
        // failed, or failed by close), so reference counting alone frees them.
        // SAFETY: `future` is a live, fully initialised GC object we own; untracking an object
        // is allowed at any time (PyO3's dealloc untracks only if still tracked).
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(future.as_ptr().cast()) };
        Ok(future.into_any())
    }

    /// The closed batches, in closing order: `(topic, partition, values, keys, headers,
    /// timestamps, result)` with `None` for a column no record used.
    fn take_closed<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let closed = std::mem::take(&mut self.lock(py).batches.closed);
        let mut out = Vec::with_capacity(closed.len());
        for c in closed {
            let b = c.batch;
            let values = PyList::new(py, b.values)?;
            let opt_list =
                |col: Option<Vec<Option<Py<PyAny>>>>, empty: Py<PyAny>| -> PyResult<Py<PyAny>> {
                    Ok(match col {
                        None => py.None(),
                        Some(items) => PyList::new(
                            py,
                            items
                                .into_iter()
                                .map(|i| i.unwrap_or_else(|| empty.clone_ref(py))),
                        )?
                        .into_any()
                        .unbind(),
                    })
                };
            let keys = opt_list(b.keys, py.None())?;
            let headers = opt_list(b.headers, PyTuple::empty(py).into_any().unbind())?;
            let timestamps = match b.timestamps {
                None => py.None(),
                Some(ts) => ts.into_py_any(py)?,
            };
            out.push(PyTuple::new(
                py,
                [
                    c.topic.into_any(),
                    c.partition.into_py_any(py)?,
                    values.into_any().unbind(),
                    keys,
                    headers,
                    timestamps,
                    b.result,
                ],
            )?);
        }
        Ok(out)
    }

    /// Close the open batch of one partition (before a `send_batch` to it); True if there was one.
    fn close_partition(&self, py: Python<'_>, topic: &str, partition: u32) -> bool {
        self.lock(py).close(py, topic, partition)
    }

    /// Close every open batch (flush, close).
    fn close_all(&self, py: Python<'_>) {
        let mut state = self.lock(py);
        let open: Vec<(String, u32)> = state
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.is_some())
                    .map(move |(p, _)| (name.clone(), p as u32))
            })
            .collect();
        let mut open = open;
        // why: a deterministic order (creation order is not kept across partitions; any is valid)
        open.sort();
        for (name, p) in open {
            state.close(py, &name, p);
        }
    }

    /// Close the batches whose linger deadline is at or before `now`, except those of the
    /// `muted` `(topic, partition)` pairs (a batch of theirs is being written: Kafka's sender
    /// does not drain a partition with a batch in flight, RecordAccumulator.drain / isMuted);
    /// returns the earliest deadline of the unmuted batches still open (or None: then the linger
    /// thread is marked idle — it will sleep without deadline — in the same critical section, so
    /// the next opened batch wakes it) and whether a due batch was left alone for being muted
    /// (then the end of that partition's write wakes the thread, producer_core.py).
    #[pyo3(signature = (now, muted=None))]
    fn close_expired(
        &self,
        py: Python<'_>,
        now: f64,
        muted: Option<Vec<(String, u32)>>,
    ) -> (Option<f64>, bool) {
        let muted = muted.unwrap_or_default();
        let mut state = self.lock(py);
        let mut due: Vec<(f64, String, u32)> = Vec::new();
        let mut earliest: Option<f64> = None;
        let mut skipped = false;
        for (name, t) in &state.topics {
            for (p, b) in t.partitions.iter().enumerate() {
                if let Some(b) = b {
                    if muted.iter().any(|(m, mp)| *mp == p as u32 && m == name) {
                        skipped |= b.deadline <= now;
                        continue;
                    }
                    if b.deadline <= now {
                        due.push((b.deadline, name.clone(), p as u32));
                    } else {
                        earliest = Some(earliest.map_or(b.deadline, |e: f64| e.min(b.deadline)));
                    }
                }
            }
        }
        due.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then_with(|| (&a.1, a.2).cmp(&(&b.1, b.2)))
        });
        for (_, name, p) in due {
            state.close(py, &name, p);
        }
        // why not idle while a partition is being written (linger > 0): the writer is usually a
        // sending thread that will open the next batch at once; marked idle, this thread would be
        // woken for it and take the GIL from that sender once per batch; instead it sleeps for
        // linger_s (producer_core.py), before which no batch opened meanwhile is due
        state.batches.sender_idle =
            earliest.is_none() && (muted.is_empty() || self.linger_s <= 0.0);
        (earliest, skipped)
    }

    /// Close the open batch whose result is `result` if its deadline passed; True if closed now.
    fn close_if_due(&self, py: Python<'_>, result: &Bound<'_, PyAny>, now: f64) -> bool {
        let mut state = self.lock(py);
        let mut found: Option<(String, u32)> = None;
        for (name, t) in &state.topics {
            for (p, b) in t.partitions.iter().enumerate() {
                if let Some(b) = b {
                    if b.result.as_ptr() == result.as_ptr() && b.deadline <= now {
                        found = Some((name.clone(), p as u32));
                    }
                }
            }
        }
        match found {
            Some((name, p)) => state.close(py, &name, p),
            None => false,
        }
    }

    /// Whether any batch is open (the linger thread's sleep decision).
    fn has_open(&self, py: Python<'_>) -> bool {
        self.lock(py).batches.open_batches > 0
    }

    /// The sticky partition of `topic` for a keyless `send_batch` (chosen if none yet).
    fn sticky_partition(&self, py: Python<'_>, topic: &Bound<'_, PyString>) -> PyResult<u32> {
        self.topic_known(py, topic)?;
        let name = topic.to_str()?;
        let mut state = self.lock(py);
        let count = state.topics[name].count;
        if let Some(s) = state.topics[name].sticky.filter(|s| *s < count) {
            return Ok(s);
        }
        let s = next_random(&mut state.batches.rng, count);
        state.topics.get_mut(name).expect("known").sticky = Some(s);
        Ok(s)
    }

    /// A batch of `partition` completed outside the accumulator (`send_batch`): sticky rule.
    fn batch_completed(&self, py: Python<'_>, topic: &str, partition: u32) {
        self.lock(py).batch_completed(topic, partition);
    }

    /// Forget a topic (deleted, or its partition count changed); its open batches are closed.
    fn forget_topic(&self, py: Python<'_>, topic: &str) {
        let mut state = self.lock(py);
        let count = state.topics.get(topic).map_or(0, |t| t.count);
        for p in 0..count {
            state.close(py, topic, p);
        }
        state.topics.remove(topic);
    }

    /// Refuse further sends.
    fn shut(&self, py: Python<'_>) {
        self.lock(py).shut = true;
    }
}

/// The future of one record sent through `NativeAccumulator.send` (kafka-python's Future API).
#[pyclass(frozen, module = "pylog._native")]
pub struct RecordFuture {
    result: Py<PyAny>,
    index: usize,
    timestamp_ms: Option<i64>,
    key_size: i64,
    value_size: i64,
    header_size: i64,
    outcome: std::sync::OnceLock<(Py<PyAny>, Py<PyAny>)>,
    record_outcome: Py<PyAny>,
    run_callback: Py<PyAny>,
}

impl RecordFuture {
    fn done(&self, py: Python<'_>) -> PyResult<bool> {
        self.result.getattr(py, intern!(py, "done"))?.extract(py)
    }

    fn outcome(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        if let Some((v, e)) = self.outcome.get() {
            return Ok((v.clone_ref(py), e.clone_ref(py)));
        }
        let pair = self.record_outcome.call1(
            py,
            (
                &self.result,
                self.index,
                self.timestamp_ms,
                self.key_size,
                self.value_size,
                self.header_size,
            ),
        )?;
        let (v, e): (Py<PyAny>, Py<PyAny>) = pair.extract(py)?;
        let _ = self.outcome.set((v.clone_ref(py), e.clone_ref(py)));
        Ok((v, e))
    }

    fn add(
        slf: &Bound<'_, Self>,
        on_success: Py<PyAny>,
        on_error: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        let subscribed: bool = me
            .result
            .call_method1(py, intern!(py, "subscribe"), (slf, &on_success, &on_error))?
            .extract(py)?;
        if !subscribed {
            Self::_run(slf, on_success, on_error)?;
        }
        Ok(slf.clone().into_any().unbind())
    }
}

pub(super) fn partial(
    py: Python<'_>,
    f: Py<PyAny>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
) -> PyResult<Py<PyAny>> {
    if args.is_empty() && kwargs.is_none_or(|k| k.is_empty()) {
        return Ok(f);
    }
    let functools = py.import(intern!(py, "functools"))?;
    let mut all = vec![f.into_bound(py)];
    all.extend(args.iter());
    Ok(functools
        .getattr(intern!(py, "partial"))?
        .call(PyTuple::new(py, all)?, kwargs)?
        .unbind())
}

#[pymethods]
impl RecordFuture {
    #[getter]
    fn is_done(&self, py: Python<'_>) -> PyResult<bool> {
        self.done(py)
    }

    fn succeeded(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.done(py)? && self.outcome(py)?.1.is_none(py))
    }

    fn failed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.done(py)? && !self.outcome(py)?.1.is_none(py))
    }

    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.done(py)? {
            return Ok(py.None());
        }
        Ok(self.outcome(py)?.0)
    }

    #[getter]
    fn exception(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.done(py)? {
            return Ok(py.None());
        }
        Ok(self.outcome(py)?.1)
    }

    /// Block until the batch is acknowledged; the RecordMetadata, or the batch's error raised.
    #[pyo3(signature = (timeout=None))]
    fn get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        if !self.done(py)? {
            let arrived: bool = self
                .result
                .call_method1(py, intern!(py, "wait"), (timeout,))?
                .extract(py)?;
            if !arrived {
                let errors = py.import(intern!(py, "pylog.errors"))?;
                let msg = format!("the record was not written within {timeout:?} s");
                let err = errors
                    .getattr(intern!(py, "KafkaTimeoutError"))?
                    .call1((msg,))?;
                return Err(PyErr::from_value(err));
            }
        }
        let (value, error) = self.outcome(py)?;
        if !error.is_none(py) {
            return Err(PyErr::from_value(error.into_bound(py)));
        }
        Ok(value)
    }

    #[pyo3(signature = (f, *args, **kwargs))]
    fn add_callback(
        slf: &Bound<'_, Self>,
        f: Py<PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let cb = partial(py, f, args, kwargs)?;
        Self::add(slf, cb, py.None())
    }

    #[pyo3(signature = (f, *args, **kwargs))]
    fn add_errback(
        slf: &Bound<'_, Self>,
        f: Py<PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let eb = partial(py, f, args, kwargs)?;
        Self::add(slf, py.None(), eb)
    }

    #[pyo3(signature = (f, *args, **kwargs))]
    fn add_both(
        slf: &Bound<'_, Self>,
        f: Py<PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let cb = partial(py, f, args, kwargs)?;
        Self::add(slf, cb.clone_ref(py), cb)
    }

    /// Called by the ProduceResult when it completes (pylog/future.py `_finish`).
    fn _run(slf: &Bound<'_, Self>, on_success: Py<PyAny>, on_error: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let (value, error) = me.outcome(py)?;
        let (callback, arg) = if error.is_none(py) {
            (on_success, value)
        } else {
            (on_error, error)
        };
        if callback.is_none(py) {
            return Ok(());
        }
        me.run_callback.call1(py, (callback, arg))?;
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = if self.done(py)? { "done" } else { "pending" };
        Ok(format!("<pylog RecordFuture {state}>"))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(partition_for_key, m)?)?;
    m.add_class::<NativeAccumulator>()?;
    m.add_class::<RecordFuture>()?;
    Ok(())
}
