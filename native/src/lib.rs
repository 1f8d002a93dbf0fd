//! pylog's storage engine: Kafka's RecordBatch v2 codec, segments, sparse indexes, recovery.
//!
//! Each storage concept owns one module, named like its twin in `pylog/reference/`. The PyO3
//! boundary lives in `python/` behind the default `python` feature, so
//! `cargo test --no-default-features` exercises the storage code without an interpreter.
//! The codec follows Kafka's split: `batch` (DefaultRecordBatch: layout, framing, CRC, batch
//! encode/decode), `record` (DefaultRecord), `validator` (LogValidator: append checks),
//! `compression` and `varint`; its tests are `tests/codec.rs`, its timings `benches/codec.rs`.

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod columns;
pub mod compression;
pub mod config;
pub mod error;
pub mod events;
pub mod index;
pub mod lock;
pub mod log;
pub mod offset_map;
pub mod producer_partitioner;
pub mod record;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod segments;
pub mod shared_state;
pub mod validator;
pub mod varint;

#[cfg(feature = "python")]
mod python;
