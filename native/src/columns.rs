//! Columnar decode target (Arrow binary layout) for `read_columns`.
//!
//! CODEC HELPER OWNS THIS FILE. API fixed: `ColumnsBuilder::new()`, `push(&RecordView)`, `len()`,
//! public fields offsets/timestamps (i64), keys/values (u8), key_offsets/value_offsets (i64,
//! length n+1, starting with 0), key_null/value_null (u8 0 or 1).
