//! `pylog._native.Waiter`: one consumer's sleep on many partitions at once.
//!
//! A consumer reads each assigned partition's append counter (`PartitionLog.tail_seq`) and the
//! waiter's own `wake_seq`, looks at the partitions, and when none has records calls `wait`
//! with those values: it sleeps in `futex_waitv` on every partition's page word plus the wake
//! word (`shared_state::wait_any`), so an append to any of them, in any process and by either
//! engine, or a `wake()` from another thread (a group rebalance to run now), ends the sleep at
//! once; a value that moved between the read and the sleep makes it return immediately (no lost
//! wake-up). The GIL is released while sleeping. Thread-safe: `wake` may be called from any
//! thread while another sleeps in `wait`.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use super::partition_log::PyPartitionLog;
use crate::shared_state::{wait_any, SharedState, WakeWord};

#[pyclass(frozen, module = "pylog._native", name = "Waiter")]
pub struct PyWaiter {
    wake: Arc<WakeWord>,
}

#[pymethods]
impl PyWaiter {
    #[new]
    fn new() -> Self {
        PyWaiter {
            wake: Arc::new(WakeWord::new()),
        }
    }

    /// Make a `wait` that is sleeping (or about to, with an older `wake_seq`) return now.
    fn wake(&self) {
        self.wake.ring();
    }

    /// The wake word's current value (read before looking; changes on every `wake`).
    fn wake_seq(&self) -> u32 {
        self.wake.seq()
    }

    /// Sleep until a partition's counter differs from its `seen` value, the wake word from
    /// `wake_seen`, or `timeout_ms` passed (spurious returns are possible: callers re-check).
    fn wait(
        &self,
        py: Python<'_>,
        logs: Vec<PyRef<'_, PyPartitionLog>>,
        seen: Vec<u32>,
        wake_seen: u32,
        timeout_ms: i64,
    ) -> PyResult<()> {
        if logs.len() != seen.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} logs for {} seen values",
                logs.len(),
                seen.len()
            )));
        }
        // why Arcs: the pages stay mapped while we sleep even if a log is closed meanwhile
        let pages: Vec<Arc<SharedState>> = logs
            .iter()
            .map(|l| l.engine_log().shared_state().clone())
            .collect();
        let wake = self.wake.clone();
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        py.detach(move || {
            let watched: Vec<(&SharedState, u32)> = pages.iter().map(|p| &**p).zip(seen).collect();
            wait_any(&watched, &wake, wake_seen, timeout);
        });
        Ok(())
    }
}
