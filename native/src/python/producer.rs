//! The producer's hot path in Rust, for `pylog/embedded/producer_core.py`.
//!
//! `murmur2(key)` and `partition_for_key(key, partitions)`: native/src/producer_partitioner.rs
//! behind the GIL-free buffer borrow (keys are short; no detach: the hash takes nanoseconds).

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::producer_partitioner;

fn with_bytes<T>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> T) -> PyResult<T> {
    if let Ok(b) = data.cast::<pyo3::types::PyBytes>() {
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(partition_for_key, m)?)?;
    Ok(())
}
