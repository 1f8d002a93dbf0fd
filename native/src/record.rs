//! RecordBatch v2 (magic 2): the byte layout, encode, validate, decode. Spec §1.1–§1.4, §1.7.
//!
//! CODEC HELPER OWNS THIS FILE. The public API below is fixed (the storage modules and the
//! PyO3 boundary are written against it); bodies are the codec helper's.
//!
//! Batch header, 61 bytes, big-endian:
//! ```text
//!  0 baseOffset i64 | 8 length i32 (= size - 12) | 12 partitionLeaderEpoch i32 | 16 magic i8 (=2)
//! 17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordsCount i32 | 61 records (or one compressed stream of them)
//! ```

use crate::compression::Codec;
use crate::error::Result;

pub const LOG_OVERHEAD: usize = 12;
pub const BATCH_HEADER_BYTES: usize = 61;
pub const MAGIC_V2: i8 = 2;
/// A batch's `length` field is at least this (a 61-byte header minus the 12-byte log overhead).
pub const MIN_LENGTH_FIELD: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32;
/// Bound on one batch's decompressed records (a decompression bomb is corruption, not an OOM).
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

pub const BASE_OFFSET_POS: usize = 0;
pub const LENGTH_POS: usize = 8;
pub const PARTITION_LEADER_EPOCH_POS: usize = 12;
pub const MAGIC_POS: usize = 16;
pub const CRC_POS: usize = 17;
pub const ATTRIBUTES_POS: usize = 21;
pub const LAST_OFFSET_DELTA_POS: usize = 23;
pub const BASE_TIMESTAMP_POS: usize = 27;
pub const MAX_TIMESTAMP_POS: usize = 35;
pub const PRODUCER_ID_POS: usize = 43;
pub const PRODUCER_EPOCH_POS: usize = 51;
pub const BASE_SEQUENCE_POS: usize = 53;
pub const RECORDS_COUNT_POS: usize = 57;

pub const CODEC_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
pub const TRANSACTIONAL_MASK: i16 = 0x10;
pub const CONTROL_MASK: i16 = 0x20;

/// The 61-byte header, parsed without validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parse the header at the start of `buf`; `None` when fewer than 61 bytes.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        let _ = buf;
        todo!()
    }
    /// Whole batch size in bytes (`12 + length`); meaningful once framing was checked.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD + self.length as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    /// Codec id, attributes bits 0-2 (may be > 4 in a corrupt batch).
    pub fn codec_id(&self) -> u8 {
        (self.attributes & CODEC_MASK) as u8
    }
    /// 0 CreateTime, 1 LogAppendTime.
    pub fn timestamp_type(&self) -> u8 {
        u8::from(self.attributes & TIMESTAMP_TYPE_MASK != 0)
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_MASK != 0
    }
}

/// What lies at the start of a byte range that should begin with a batch (spec §1.7).
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete batch is present (its CRC is *not* checked here).
    Batch(BatchHeader),
    /// Fewer than 12 bytes, or `12 + length` runs past the end: a torn (or not yet written) tail.
    Incomplete,
    /// `length < 49` or magic != 2.
    Corrupt(String),
}

/// Framing of the batch at `buf[0..]`: order of checks: < 12 bytes → Incomplete; length < 49 →
/// Corrupt; 12 + length > buf.len() → Incomplete; magic != 2 → Corrupt; else Batch.
pub fn frame(buf: &[u8]) -> Frame {
    let _ = buf;
    todo!()
}

/// CRC-32C (Castagnoli), as Kafka's Crc32C.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Check the stored CRC of one whole batch (`batch.len() == size`); error position 0.
pub fn verify_crc(batch: &[u8]) -> Result<()> {
    let _ = batch;
    todo!()
}

/// `append_raw`'s checks on one whole batch: size >= 61, `length == len - 12`, magic 2, CRC,
/// codec id <= 4, not a control batch, count > 0, `lastOffsetDelta == count - 1`.
/// Every failure is `Error::CorruptBatch` at position 0.
pub fn validate_for_append(batch: &[u8]) -> Result<BatchHeader> {
    let _ = batch;
    todo!()
}

/// Rewrite baseOffset in place (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrite partitionLeaderEpoch in place (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_POS..PARTITION_LEADER_EPOCH_POS + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Mark the batch LogAppendTime with maxTimestamp = `append_time_ms` and recompute the CRC.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    let _ = (batch, append_time_ms);
    todo!()
}

/// One record to encode. Keys/values `None` are nulls; header keys are UTF-8 by construction.
#[derive(Clone, Copy, Debug)]
pub struct RecordSpec<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Encode `records` (non-empty) as one batch appended to `out` (docs/partition-log.md, Appending):
/// baseOffset `base_offset`, epoch 0, attributes = codec | 0x08 when `log_append_time_ms` is
/// Some, baseTimestamp = records[0].timestamp, maxTimestamp = max timestamp (or the append time),
/// producer fields -1, the codec always applied. `scratch` is reusable working memory.
pub fn encode_batch(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    base_offset: i64,
    records: &[RecordSpec<'_>],
    codec: Codec,
    log_append_time_ms: Option<i64>,
) -> Result<()> {
    let _ = (out, scratch, base_offset, records, codec, log_append_time_ms);
    todo!()
}

/// A decoded record borrowing from the batch (or from the decompression scratch buffer).
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub offset: i64,
    /// Already resolved: the batch's maxTimestamp when the batch is LogAppendTime.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The raw, already validated header section of the record and its header count.
    pub headers_raw: &'a [u8],
    pub header_count: usize,
}

impl<'a> RecordView<'a> {
    /// Headers as (UTF-8 key, value) pairs; validated during decode, so this cannot fail.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { raw: self.headers_raw, remaining: self.header_count }
    }
}

pub struct HeaderIter<'a> {
    raw: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        let _ = (&self.raw, self.remaining);
        todo!()
    }
}

/// Validate one whole batch (framing, magic, CRC, codec, record layout; docs/partition-log.md
/// "Decoding rules") and call `visit` for each record in offset order. Error positions are
/// relative to the batch start (0). `scratch` holds decompressed data between calls.
pub fn decode_batch<'s, F>(batch: &'s [u8], scratch: &'s mut Vec<u8>, visit: F) -> Result<BatchHeader>
where
    F: FnMut(RecordView<'_>) -> Result<()>,
{
    let _ = (batch, scratch, visit);
    todo!()
}
