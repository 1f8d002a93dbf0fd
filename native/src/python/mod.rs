//! The PyO3 boundary: module `pylog._native`. Nothing below this module knows about Python.
//!
//! Files: `errors.rs` (Error -> pylog.errors / OSError, panic guard), `buffer.rs` (NativeBuffer:
//! zero-copy bytes via the buffer protocol), `convert.rs` (records and columns -> Python objects,
//! decode_records, crc32c), `partition_log.rs` (the PartitionLog class), `logging.rs` (engine
//! events to Python's `logging`), `wait.rs` (Waiter: one sleep on many partitions), `producer.rs`
//! (the embedded producer's accumulator and record future), `delivery_future.rs` (the kafka
//! backend's record future).

use pyo3::prelude::*;

mod buffer;
mod convert;
mod delivery_future;
mod errors;
mod logging;
mod partition_log;
mod producer;
mod wait;

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::init(m.py())?;
    m.add_class::<partition_log::PyPartitionLog>()?;
    m.add_class::<wait::PyWaiter>()?;
    m.add_function(wrap_pyfunction!(partition_log::default_config, m)?)?;
    convert::register(m)?;
    producer::register(m)?;
    delivery_future::register(m)?;
    Ok(())
}
