//! The bridge from the engine's `log` records (`events`) to Python's `logging`.
//!
//! why deferred: a Python handler may call back into pylog (read the log it is told about) or
//! take the GIL-held locks of its own; running it while the engine holds its mutex, the writer
//! lock or mid-recovery would deadlock. So the installed logger only queues the formatted record
//! on the calling thread; `flush` forwards the queue through `pyo3_log` (which looks up the
//! logger by the record's target, e.g. `pylog.recovery`, and honours its level and handlers)
//! once the engine call has returned and released every lock (`errors::guard` calls it).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;

/// Records queued per thread before the oldest are dropped (a bound on memory if a thread
/// never returns to Python).
const QUEUE_MAX: usize = 10_000;

struct Queued {
    level: Level,
    target: String,
    message: String,
}

thread_local! {
    static QUEUE: RefCell<VecDeque<Queued>> = const { RefCell::new(VecDeque::new()) };
}

static FORWARD: OnceLock<pyo3_log::Logger> = OnceLock::new();

struct Deferred;

impl Log for Deferred {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let queued = Queued {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
        };
        QUEUE.with(|q| {
            let mut q = q.borrow_mut();
            if q.len() >= QUEUE_MAX {
                q.pop_front();
            }
            q.push_back(queued);
        });
    }

    fn flush(&self) {}
}

/// Install the queueing logger (once per process; a second module init keeps the first).
pub fn init(py: Python<'_>) -> PyResult<()> {
    // why Caching::Nothing: events are rare, and a cached level would miss a later
    // `logging.getLogger("pylog").setLevel(...)`.
    let forward = pyo3_log::Logger::new(py, pyo3_log::Caching::Nothing)?.filter(LevelFilter::Trace);
    if FORWARD.set(forward).is_ok() && log::set_boxed_logger(Box::new(Deferred)).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
    Ok(())
}

/// Forward this thread's queued records to Python's `logging` (call with no engine lock held).
pub fn flush() {
    let pending = QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
    if pending.is_empty() {
        return;
    }
    let Some(forward) = FORWARD.get() else { return };
    Python::attach(|py| {
        for r in pending {
            forward.log(
                &Record::builder()
                    .level(r.level)
                    .target(&r.target)
                    .args(format_args!("{}", r.message))
                    .build(),
            );
            // why: a failing handler must not turn the engine call's result into an error
            if let Some(e) = PyErr::take(py) {
                e.write_unraisable(py, None);
            }
        }
    });
}
