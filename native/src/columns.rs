//! Columnar decode target (Arrow binary layout) for `read_columns`.
//!
//! API: `ColumnsBuilder::new()`, `push(&RecordView)`, `len()`; public fields offsets/timestamps
//! (i64), keys/values (u8), key_offsets/value_offsets (i64, length n+1, starting with 0),
//! key_null/value_null (u8 0 or 1).
//!
//! Invariants after any sequence of `push` (n = `len()`):
//! - `offsets.len() == timestamps.len() == key_null.len() == value_null.len() == n`;
//! - `key_offsets.len() == value_offsets.len() == n + 1`, `key_offsets[0] == 0`, non-decreasing,
//!   `key_offsets[n] == keys.len()` (same for values);
//! - record i's key is `keys[key_offsets[i]..key_offsets[i+1]]`; a null key has a zero-length
//!   slot and `key_null[i] == 1` (so an empty key and a null key differ only by the mask).
//!
//! Headers are not part of the columns.

use crate::record::RecordView;

/// Most records `reserve` makes room for at once.
pub const RESERVE_RECORDS_MAX: usize = 1 << 20;
/// Most payload bytes `reserve` makes room for at once.
pub const RESERVE_BYTES_MAX: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnsBuilder {
    pub offsets: Vec<i64>,
    pub timestamps: Vec<i64>,
    pub keys: Vec<u8>,
    pub key_offsets: Vec<i64>,
    pub key_null: Vec<u8>,
    pub values: Vec<u8>,
    pub value_offsets: Vec<i64>,
    pub value_null: Vec<u8>,
}

impl Default for ColumnsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ColumnsBuilder {
    pub fn new() -> Self {
        ColumnsBuilder {
            offsets: Vec::new(),
            timestamps: Vec::new(),
            keys: Vec::new(),
            key_offsets: vec![0],
            key_null: Vec::new(),
            values: Vec::new(),
            value_offsets: vec![0],
            value_null: Vec::new(),
        }
    }

    /// Reserve room for `records` more records with `payload_bytes` more value bytes: a hint,
    /// e.g. `(max_records, bytes of the batches about to be decoded)`. Clamped to
    /// `RESERVE_RECORDS_MAX` / `RESERVE_BYTES_MAX`, so an untrusted count (a batch header says
    /// up to 2^31 - 1) or a huge `max_records` cannot trigger a giant allocation.
    pub fn reserve(&mut self, records: usize, payload_bytes: usize) {
        let records = records.min(RESERVE_RECORDS_MAX);
        let payload_bytes = payload_bytes.min(RESERVE_BYTES_MAX);
        self.offsets.reserve(records);
        self.timestamps.reserve(records);
        self.key_offsets.reserve(records);
        self.key_null.reserve(records);
        self.value_offsets.reserve(records);
        self.value_null.reserve(records);
        self.values.reserve(payload_bytes);
    }

    /// Append one record.
    #[inline]
    pub fn push(&mut self, r: &RecordView<'_>) {
        self.offsets.push(r.offset);
        self.timestamps.push(r.timestamp);
        push_binary(
            &mut self.keys,
            &mut self.key_offsets,
            &mut self.key_null,
            r.key,
        );
        push_binary(
            &mut self.values,
            &mut self.value_offsets,
            &mut self.value_null,
            r.value,
        );
    }

    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

#[inline]
fn push_binary(
    data: &mut Vec<u8>,
    offsets: &mut Vec<i64>,
    nulls: &mut Vec<u8>,
    item: Option<&[u8]>,
) {
    match item {
        Some(b) => {
            data.extend_from_slice(b);
            nulls.push(0);
        }
        None => nulls.push(1),
    }
    // why: a Vec never exceeds isize::MAX bytes, so its length always fits an i64.
    offsets.push(data.len() as i64);
}
