//! The kafka backend's per-record future (`pylog/kafka/producer_core.py`): `DeliveryFuture`, made
//! by a `DeliveryFutures` factory per producer core.
//!
//! Why in Rust: every `send` returns a future that an application may keep until it asks for the
//! metadata. A Python object per record is one the cyclic GC traverses as long as it lives (every
//! instance of a Python class is tracked), so with a few hundred thousand futures alive each
//! collection walked them all (measured: the producer's ratio to confluent-kafka direct rose from
//! 0.55 to 0.61 per CPU-s when the future moved here; benchmarks/README.md). A PyO3 class without `__traverse__` is never tracked. It holds no reference that could
//! close a cycle through it: the core (which lists a future only while callbacks wait for it) and
//! the report's topic string.
//!
//! The future is librdkafka's delivery callback of its record: confluent-kafka calls it with
//! `(err, msg)` from `poll`/`flush`, and it copies what the metadata needs out of the `Message`
//! (topic, partition, offset, timestamp, key and value sizes; or the error) into a `OnceLock`.
//! The `Message` is not kept (it is GC-tracked too). The Python-side rules stay in Python, on the
//! core: waiting (`_wait`), callbacks (`_subscribe`, `_fire` via `_ready`), forgetting a topic
//! that is gone (`_failed`), and building the outcome (`record_outcome`: a `RecordMetadata`, or
//! the typed error) once, when first asked for.
//!
//! Thread-safety: a future is frozen; the report is set once (by the thread serving reports, holding the GIL)
//! and read by any thread; the outcome is computed at most once per thread race and the first one
//! kept (both are equal).

use std::sync::OnceLock;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::producer::partial;

/// What a delivery report said about one record.
struct Report {
    topic: Py<PyAny>,
    partition: i64,
    offset: i64,
    timestamp: i64,
    key_size: i64,
    value_size: i64,
    /// librdkafka's `KafkaError` of a failed record
    error: Option<Py<PyAny>>,
}

/// Makes the futures of one producer core: `factory()` (no headers) or `factory.with_headers(n)`;
/// what every future of the core shares. GC-tracked (one per core): the core holds its factory,
/// which holds the core, and the collector must see that cycle to free a core nobody holds.
#[pyclass(module = "pylog._native")]
pub struct DeliveryFutures {
    /// the `KafkaProducerCore`: `_wait`, `_subscribe`, `_failed`, `_watched`, `_ready`
    core: Option<Py<PyAny>>,
    /// `record_outcome(topic, partition, offset, timestamp, key_size, value_size, header_size,
    /// error) -> (metadata, error)`
    record_outcome: Option<Py<PyAny>>,
    /// `pylog.future.run_callback(callback, arg)`
    run_callback: Option<Py<PyAny>>,
}

#[pymethods]
impl DeliveryFutures {
    #[new]
    fn new(core: Py<PyAny>, record_outcome: Py<PyAny>, run_callback: Py<PyAny>) -> Self {
        Self {
            core: Some(core),
            record_outcome: Some(record_outcome),
            run_callback: Some(run_callback),
        }
    }

    /// A future of a record without headers.
    fn __call__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, DeliveryFuture>> {
        DeliveryFuture::untracked(slf, -1)
    }

    /// A future of a record whose headers serialize to `header_size` bytes.
    fn with_headers<'py>(
        slf: &Bound<'py, Self>,
        header_size: i64,
    ) -> PyResult<Bound<'py, DeliveryFuture>> {
        DeliveryFuture::untracked(slf, header_size)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for held in [&self.core, &self.record_outcome, &self.run_callback]
            .into_iter()
            .flatten()
        {
            visit.call(held)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.core = None;
        self.record_outcome = None;
        self.run_callback = None;
    }
}

/// One of the factory's objects (an error once the collector cleared it: a core being freed).
fn held<'py>(
    factory: &Py<DeliveryFutures>,
    py: Python<'py>,
    pick: impl FnOnce(&DeliveryFutures) -> &Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let factory = factory.bind(py).borrow();
    match pick(&factory) {
        Some(object) => Ok(object.bind(py).clone()),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "the producer core of this future was freed",
        )),
    }
}

/// The future of one record sent by the kafka backend (kafka-python's Future API).
#[pyclass(frozen, module = "pylog._native")]
pub struct DeliveryFuture {
    factory: Py<DeliveryFutures>,
    header_size: i64,
    report: OnceLock<Report>,
    outcome: OnceLock<(Py<PyAny>, Py<PyAny>)>,
}

fn size_of(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if value.is_none() {
        return Ok(-1);
    }
    Ok(value.len()? as i64)
}

fn int_or(value: &Bound<'_, PyAny>, default: i64) -> PyResult<i64> {
    if value.is_none() {
        return Ok(default);
    }
    value.extract()
}

impl DeliveryFuture {
    /// A new future, taken out of the cyclic GC's lists (PyO3 makes every class a GC type).
    fn untracked<'py>(
        factory: &Bound<'py, DeliveryFutures>,
        header_size: i64,
    ) -> PyResult<Bound<'py, Self>> {
        let future = Bound::new(
            factory.py(),
            Self {
                factory: factory.clone().unbind(),
                header_size,
                report: OnceLock::new(),
                outcome: OnceLock::new(),
            },
        )?;
        // SAFETY: `future` is a live GC object we own a reference to, and the GIL is held.
        // Untracking is sound because no cycle can run through it (module docs: it references
        // its factory and, once reported, a str and an error, never anything that refers back
        // to it except the core's `_watched`/`_ready`, which drop it when its callbacks run);
        // PyO3's dealloc untracks again, which is a no-op for an untracked object.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(future.as_ptr().cast()) };
        Ok(future)
    }

    fn core<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        held(&self.factory, py, |f| &f.core)
    }

    fn outcome(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        if let Some((v, e)) = self.outcome.get() {
            return Ok((v.clone_ref(py), e.clone_ref(py)));
        }
        let report = self
            .report
            .get()
            .expect("the outcome is asked for only once the report is in");
        let pair = held(&self.factory, py, |f| &f.record_outcome)?.call1((
            &report.topic,
            report.partition,
            report.offset,
            report.timestamp,
            report.key_size,
            report.value_size,
            self.header_size,
            &report.error,
        ))?;
        let (v, e): (Py<PyAny>, Py<PyAny>) = pair.extract()?;
        let _ = self.outcome.set((v.clone_ref(py), e.clone_ref(py)));
        Ok((v, e))
    }

    fn add(
        slf: &Bound<'_, Self>,
        on_success: Py<PyAny>,
        on_error: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let subscribed: bool = slf
            .get()
            .core(py)?
            .call_method1(
                intern!(py, "_subscribe"),
                (slf, slf, &on_success, &on_error),
            )?
            .extract()?;
        if !subscribed {
            Self::_run(slf, on_success, on_error)?;
        }
        Ok(slf.clone().into_any().unbind())
    }
}

#[pymethods]
impl DeliveryFuture {
    /// librdkafka's delivery report of the record (confluent-kafka calls the future).
    fn __call__(
        slf: &Bound<'_, Self>,
        err: &Bound<'_, PyAny>,
        msg: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let core = me.core(py)?;
        let topic = msg.call_method0(intern!(py, "topic"))?.unbind();
        // why the default: a record that never got a partition (unreachable cluster) has None
        let partition = int_or(&msg.call_method0(intern!(py, "partition"))?, -1)?;
        let report = if err.is_none() {
            let offset = msg.call_method0(intern!(py, "offset"))?;
            let timestamp = msg.call_method0(intern!(py, "timestamp"))?;
            Report {
                topic,
                partition,
                // why -1 for None: acks=0 reports no offset
                offset: int_or(&offset, -1)?,
                // why [1] only: librdkafka reports -1 when there is no timestamp
                timestamp: timestamp.get_item(1)?.extract()?,
                key_size: size_of(&msg.call_method0(intern!(py, "key"))?)?,
                value_size: size_of(&msg.call_method0(intern!(py, "value"))?)?,
                error: None,
            }
        } else {
            core.call_method1(intern!(py, "_failed"), (err, msg))?;
            Report {
                topic,
                partition,
                offset: -1,
                timestamp: -1,
                key_size: -1,
                value_size: -1,
                error: Some(err.clone().unbind()),
            }
        };
        let _ = me.report.set(report);
        if core.getattr(intern!(py, "_watched"))?.is_truthy()? {
            core.getattr(intern!(py, "_ready"))?
                .call_method1(intern!(py, "append"), (slf,))?;
        }
        Ok(())
    }

    /// The report is in (the core's rule for waiting and callbacks).
    #[getter]
    fn done(&self) -> bool {
        self.report.get().is_some()
    }

    #[getter]
    fn is_done(&self) -> bool {
        self.done()
    }

    fn succeeded(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.done() && self.outcome(py)?.1.is_none(py))
    }

    fn failed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.done() && !self.outcome(py)?.1.is_none(py))
    }

    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.done() {
            return Ok(py.None());
        }
        Ok(self.outcome(py)?.0)
    }

    #[getter]
    fn exception(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.done() {
            return Ok(py.None());
        }
        Ok(self.outcome(py)?.1)
    }

    /// Block until the record is delivered or failed; its RecordMetadata, or its error raised.
    /// `timeout` in seconds → `KafkaTimeoutError` when it runs out.
    #[pyo3(signature = (timeout=None))]
    fn get(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        if !me.done() {
            let arrived: bool = me
                .core(py)?
                .call_method1(intern!(py, "_wait"), (slf, timeout))?
                .extract()?;
            if !arrived {
                let errors = py.import(intern!(py, "pylog.errors"))?;
                let msg = match timeout {
                    Some(t) => format!("the record was not written within {t} s"),
                    None => "the record was not written".to_string(),
                };
                let err = errors
                    .getattr(intern!(py, "KafkaTimeoutError"))?
                    .call1((msg,))?;
                return Err(PyErr::from_value(err));
            }
        }
        let (value, error) = me.outcome(py)?;
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
        kwargs: Option<&Bound<'_, PyDict>>,
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
        kwargs: Option<&Bound<'_, PyDict>>,
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
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let cb = partial(py, f, args, kwargs)?;
        Self::add(slf, cb.clone_ref(py), cb)
    }

    /// Run one registered pair of callbacks (the core's `_fire`, once the report is in).
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
        held(&me.factory, py, |f| &f.run_callback)?.call1((callback, arg))?;
        Ok(())
    }

    fn __repr__(&self) -> String {
        let state = if self.done() { "done" } else { "pending" };
        format!("<pylog DeliveryFuture {state}>")
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DeliveryFutures>()?;
    m.add_class::<DeliveryFuture>()?;
    Ok(())
}
