//! RecordBatch v2 (magic 2), Kafka's DefaultRecordBatch
//! (clients/src/main/java/org/apache/kafka/common/record/DefaultRecordBatch.java): the batch
//! layout, header, framing, CRC, in-place header rewrites, and the batch-level encode and decode
//! around the records area (its records are `record.rs`; append validation is `validator.rs`).
//! Kafka's DefaultRecordBatch.java, MemoryRecordsBuilder.java and FileLogInputStream.java.
//!
//! Batch header, 61 bytes, big-endian:
//! ```text
//!  0 baseOffset i64 | 8 length i32 (= size - 12) | 12 partitionLeaderEpoch i32 | 16 magic i8 (=2)
//! 17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordsCount i32 | 61 records (or one compressed stream of them)
//! ```
//! Attributes: bits 0-2 codec (`compression.rs`), bit 3 LogAppendTime, 4 transactional,
//! 5 control (transaction markers), 6 delete horizon; 7-15 unused.
//! Invariants:
//! - Writer: the header is written after the records area, with the length and CRC of the bytes
//!   actually produced (asserted against the computed sizes).
//! - Reader: `decode_batch` never trusts a length or a count: framing and the CRC first,
//!   decompression capped at `MAX_DECOMPRESSED_BYTES`, then `record::decode_records_area`;
//!   every violation of docs/partition-log.md "Decoding rules" is `Error::CorruptBatch` at
//!   position 0 (callers shift it to the batch's position). Control batches are checked but their
//!   records are never visited.
//!
//! Thread-safety: pure functions of their arguments.

use crate::compression::{compress, decompress, Codec};
use crate::error::{CorruptKind, Error, Result};
use crate::record::{decode_records_area, write_records, RecordSpec, RecordView};

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
/// KIP-534: baseTimestamp holds the delete horizon (set by the cleaner, cleaner.rs).
pub const DELETE_HORIZON_MASK: i16 = 0x40;

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
        let h: &[u8; BATCH_HEADER_BYTES] = buf.get(..BATCH_HEADER_BYTES)?.try_into().ok()?;
        Some(BatchHeader {
            base_offset: be_i64(h, BASE_OFFSET_POS),
            length: be_i32(h, LENGTH_POS),
            partition_leader_epoch: be_i32(h, PARTITION_LEADER_EPOCH_POS),
            magic: h[MAGIC_POS] as i8,
            crc: be_i32(h, CRC_POS) as u32,
            attributes: be_i16(h, ATTRIBUTES_POS),
            last_offset_delta: be_i32(h, LAST_OFFSET_DELTA_POS),
            base_timestamp: be_i64(h, BASE_TIMESTAMP_POS),
            max_timestamp: be_i64(h, MAX_TIMESTAMP_POS),
            producer_id: be_i64(h, PRODUCER_ID_POS),
            producer_epoch: be_i16(h, PRODUCER_EPOCH_POS),
            base_sequence: be_i32(h, BASE_SEQUENCE_POS),
            records_count: be_i32(h, RECORDS_COUNT_POS),
        })
    }
    /// Whole batch size in bytes (`12 + length`); meaningful once framing was checked.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD + self.length as usize
    }
    pub fn last_offset(&self) -> i64 {
        // why: wrapping, so a hostile header cannot panic a debug build; framing/recovery checks
        // the offsets before trusting them.
        self.base_offset.wrapping_add(self.last_offset_delta as i64)
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
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

    /// Write the 61 header bytes (the CRC field as stored in `self.crc`).
    pub fn write_to(&self, h: &mut [u8]) {
        let h = &mut h[..BATCH_HEADER_BYTES];
        h[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&self.base_offset.to_be_bytes());
        h[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&self.length.to_be_bytes());
        h[PARTITION_LEADER_EPOCH_POS..PARTITION_LEADER_EPOCH_POS + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        h[MAGIC_POS] = self.magic as u8;
        h[CRC_POS..CRC_POS + 4].copy_from_slice(&self.crc.to_be_bytes());
        h[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&self.attributes.to_be_bytes());
        h[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        h[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        h[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        h[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        h[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4]
            .copy_from_slice(&self.records_count.to_be_bytes());
    }
}

#[inline]
fn be_i16(h: &[u8; BATCH_HEADER_BYTES], pos: usize) -> i16 {
    i16::from_be_bytes([h[pos], h[pos + 1]])
}

#[inline]
fn be_i32(h: &[u8; BATCH_HEADER_BYTES], pos: usize) -> i32 {
    i32::from_be_bytes([h[pos], h[pos + 1], h[pos + 2], h[pos + 3]])
}

#[inline]
fn be_i64(h: &[u8; BATCH_HEADER_BYTES], pos: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[pos..pos + 8]);
    i64::from_be_bytes(b)
}

/// What lies at the start of a byte range that should begin with a batch (FileLogInputStream.nextBatch).
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
    let Some(length) = frame_length(buf) else {
        return Frame::Incomplete;
    };
    if length < MIN_LENGTH_FIELD {
        return Frame::Corrupt(format!(
            "batch length field {length} is below the minimum {MIN_LENGTH_FIELD}"
        ));
    }
    // why: length >= 49 > 0, so the cast is exact and the sum cannot overflow a 64-bit usize.
    if LOG_OVERHEAD + length as usize > buf.len() {
        return Frame::Incomplete;
    }
    if buf[MAGIC_POS] as i8 != MAGIC_V2 {
        return Frame::Corrupt(format!(
            "unsupported magic {} (only 2 is supported)",
            buf[MAGIC_POS] as i8
        ));
    }
    match BatchHeader::parse(buf) {
        // why the length is taken again from the parse: callers slice by `h.size_bytes()`, so it
        // must be the length checked above (the same bytes, read once more).
        Some(h) if h.length == length => Frame::Batch(h),
        Some(_) => Frame::Corrupt("batch length changed while being read".into()),
        // Unreachable: 12 + length >= 61 bytes are present.
        None => Frame::Incomplete,
    }
}

/// The kind of a `Frame::Corrupt` of `buf`: `Magic` when the length was fine but the magic
/// was not, else `Framing`.
pub fn frame_error_kind(buf: &[u8]) -> CorruptKind {
    match buf.get(MAGIC_POS) {
        Some(&m)
            if m as i8 != MAGIC_V2
                && !matches!(frame_length(buf), Some(l) if l < MIN_LENGTH_FIELD) =>
        {
            CorruptKind::Magic
        }
        _ => CorruptKind::Framing,
    }
}

/// The length field of the batch at `buf[0..]`; `None` when fewer than 12 bytes.
fn frame_length(buf: &[u8]) -> Option<i32> {
    let b = buf.get(LENGTH_POS..LOG_OVERHEAD)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// CRC-32C (Castagnoli), as Kafka's Crc32C
/// (clients/src/main/java/org/apache/kafka/common/utils/Crc32C.java).
// why crc-fast: it folds with PCLMULQDQ alongside the CRC32 instruction, 1.35x the speed of the
// crc32c crate's three-way CRC32 loop on a 100 KB batch here (native/benches/codec.rs); the
// CPU features are detected once per process. Its iSCSI algorithm is CRC-32C; the checksum is
// returned widened to u64.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Check the stored CRC of one whole batch (`batch.len() == size`); error position 0.
pub fn verify_crc(batch: &[u8]) -> Result<()> {
    let (Some(stored), Some(covered)) = (
        batch.get(CRC_POS..ATTRIBUTES_POS),
        batch.get(ATTRIBUTES_POS..),
    ) else {
        return Err(Error::corrupt(
            CorruptKind::Framing,
            format!("batch of {} bytes is too short to hold a CRC", batch.len()),
            0,
        ));
    };
    let stored = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let computed = crc32c(covered);
    if stored != computed {
        return Err(Error::corrupt(
            CorruptKind::Crc,
            format!("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            0,
        ));
    }
    Ok(())
}

/// Store the CRC-32C of bytes 21.. of one whole batch in its CRC field.
pub fn write_crc(batch: &mut [u8]) {
    let crc = crc32c(&batch[ATTRIBUTES_POS..]);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrite baseOffset in place (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrite partitionLeaderEpoch in place (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_POS..PARTITION_LEADER_EPOCH_POS + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Mark the batch LogAppendTime with maxTimestamp = `append_time_ms` and recompute the CRC.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "set_log_append_time on a {}-byte batch",
        batch.len()
    );
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_POS], batch[ATTRIBUTES_POS + 1]])
        | TIMESTAMP_TYPE_MASK;
    batch[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&append_time_ms.to_be_bytes());
    write_crc(batch);
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
    let Some(first) = records.first() else {
        return Err(Error::InvalidRecord(
            "a batch needs at least one record".into(),
        ));
    };
    let count = i32::try_from(records.len()).map_err(|_| {
        Error::InvalidRecord(format!("{} records do not fit one batch", records.len()))
    })?;
    let base_timestamp = first.timestamp;
    let start = out.len();
    // why zeros for the header only: it is written last, once size and CRC are known; the
    // records go in behind it without being zero-filled first.
    out.resize(start + BATCH_HEADER_BYTES, 0);
    let written = if codec == Codec::None {
        write_records(out, records, base_timestamp)
    } else {
        scratch.clear();
        write_records(scratch, records, base_timestamp).and_then(|max_timestamp| {
            compress(codec, scratch, out)
                .map(|()| max_timestamp)
                .map_err(|source| Error::Io {
                    context: format!("{} compression of a batch", codec.name()),
                    source,
                })
        })
    };
    let mut max_timestamp = match written {
        Ok(t) => t,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let mut attributes = codec.id() as i16;
    if let Some(t) = log_append_time_ms {
        attributes |= TIMESTAMP_TYPE_MASK;
        max_timestamp = t;
    }
    let size = out.len() - start;
    let Ok(length) = i32::try_from(size - LOG_OVERHEAD) else {
        out.truncate(start);
        return Err(Error::RecordTooLarge(format!(
            "a batch of {size} bytes does not fit the length field"
        )));
    };
    let header = BatchHeader {
        base_offset,
        length,
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta: count - 1,
        base_timestamp,
        max_timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: count,
    };
    let batch = &mut out[start..];
    header.write_to(batch);
    write_crc(batch);
    Ok(())
}

/// Validate one whole batch (framing, magic, CRC, codec, record layout; docs/partition-log.md
/// "Decoding rules") and call `visit` for each record in offset order. Error positions are
/// relative to the batch start (0). `scratch` holds decompressed data between calls.
///
/// A control batch (attributes bit 5: transaction markers) is validated the same way, but its
/// records are not visited: Kafka's consumers never return them (CompletedFetch skips control
/// batches), and readers advance past their offsets by the batch's `nextOffset`.
///
/// `batch` must start with the batch; bytes past `12 + length` are ignored (they belong to
/// the next batch). Errors returned by `visit` are passed through unchanged.
pub fn decode_batch<'s, F>(
    batch: &'s [u8],
    scratch: &'s mut Vec<u8>,
    mut visit: F,
) -> Result<BatchHeader>
where
    F: FnMut(RecordView<'_>) -> Result<()>,
{
    let (header, codec) = check_batch(batch)?;
    let data = records_area(batch, &header, codec, scratch)?;
    if header.is_control() {
        decode_records_area(data, &header, codec == Codec::None, |_| Ok(()))?;
    } else {
        decode_records_area(data, &header, codec == Codec::None, &mut visit)?;
    }
    Ok(header)
}

/// The checks of `decode_batch` that need only the header and the CRC: framing, magic, CRC,
/// codec id, count >= 0. Returns the header and its codec.
pub fn check_batch(batch: &[u8]) -> Result<(BatchHeader, Codec)> {
    check_batch_with(batch, true)
}

/// `check_batch`, the CRC left out when `check_crc` is false (the cleaner's second look at
/// bytes it verified moments before in the same immutable mapping).
pub fn check_batch_with(batch: &[u8], check_crc: bool) -> Result<(BatchHeader, Codec)> {
    let header = match frame(batch) {
        Frame::Batch(h) => h,
        Frame::Corrupt(reason) => return Err(Error::corrupt(frame_error_kind(batch), reason, 0)),
        Frame::Incomplete if batch.len() < BATCH_HEADER_BYTES => {
            return Err(Error::corrupt(
                CorruptKind::Framing,
                format!(
                    "batch of {} bytes is smaller than the {BATCH_HEADER_BYTES}-byte header",
                    batch.len()
                ),
                0,
            ))
        }
        Frame::Incomplete => {
            return Err(Error::corrupt(
                CorruptKind::Framing,
                format!(
                    "batch length field {} runs past the end of the {} available bytes",
                    frame_length(batch).expect("12 bytes are present"),
                    batch.len()
                ),
                0,
            ))
        }
    };
    let batch = &batch[..header.size_bytes()];
    if check_crc {
        verify_crc(batch)?;
    }
    let Some(codec) = Codec::from_id(header.codec_id()) else {
        return Err(Error::corrupt(
            CorruptKind::Codec,
            format!("unknown compression codec id {}", header.codec_id()),
            0,
        ));
    };
    if header.records_count < 0 {
        return Err(Error::corrupt(
            CorruptKind::RecordCount,
            format!("negative record count {}", header.records_count),
            0,
        ));
    }
    Ok((header, codec))
}

/// The records area of a checked batch: bytes 61.. as they are, or decompressed into `scratch`
/// (at most `MAX_DECOMPRESSED_BYTES`).
pub fn records_area<'s>(
    batch: &'s [u8],
    header: &BatchHeader,
    codec: Codec,
    scratch: &'s mut Vec<u8>,
) -> Result<&'s [u8]> {
    let payload = &batch[BATCH_HEADER_BYTES..header.size_bytes()];
    if codec == Codec::None {
        return Ok(payload);
    }
    scratch.clear();
    decompress(codec, payload, scratch, MAX_DECOMPRESSED_BYTES).map_err(|e| {
        Error::corrupt(
            CorruptKind::Compression,
            format!("{} decompression failed: {e}", codec.name()),
            0,
        )
    })?;
    Ok(&scratch[..])
}

/// Decode every batch of `buf`, which must hold whole batches back to back (e.g. the result of
/// a `read`). An incomplete trailing batch is corruption here (in a tailed file it would be "not
/// yet written"). Error positions are positions in `buf`.
pub fn decode_batches<F>(buf: &[u8], scratch: &mut Vec<u8>, visit: F) -> Result<()>
where
    F: FnMut(RecordView<'_>) -> Result<()>,
{
    decode_batches_with(buf, scratch, visit, |_| {})
}

/// Per whole batch of `buf`, in order, `(records, first record offset, last record offset)`
/// (the offsets -1 for a batch without data records: a control batch or an empty one), after
/// every check `decode_batches` makes, without building a record: `pylog verify`'s structure
/// check (pylog/inspect.py). The twin of pylog/reference/batch.py `record_spans`.
pub fn record_spans(buf: &[u8]) -> Result<Vec<(u64, i64, i64)>> {
    let mut spans = Vec::new();
    // why a Cell: the record visitor and the batch callback both update the current span
    let current = std::cell::Cell::new((0u64, -1i64, -1i64));
    decode_batches_with(
        buf,
        &mut Vec::new(),
        |r| {
            let (records, first, _last) = current.get();
            let first = if records == 0 { r.offset } else { first };
            current.set((records + 1, first, r.offset));
            Ok(())
        },
        |_| spans.push(current.replace((0, -1, -1))),
    )?;
    Ok(spans)
}

/// `decode_batches`, calling `after_batch` with each batch's header once its records were
/// visited.
fn decode_batches_with<F, G>(
    buf: &[u8],
    scratch: &mut Vec<u8>,
    mut visit: F,
    mut after_batch: G,
) -> Result<()>
where
    F: FnMut(RecordView<'_>) -> Result<()>,
    G: FnMut(&BatchHeader),
{
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let header = match frame(rest) {
            Frame::Batch(h) => h,
            Frame::Corrupt(reason) => {
                return Err(Error::corrupt(frame_error_kind(rest), reason, pos as u64))
            }
            Frame::Incomplete => {
                return Err(Error::corrupt(
                    CorruptKind::Framing,
                    format!(
                        "incomplete batch: only {} bytes left in the buffer",
                        rest.len()
                    ),
                    pos as u64,
                ))
            }
        };
        let size = header.size_bytes();
        decode_batch(&rest[..size], scratch, &mut visit).map_err(|e| e.shifted(pos as u64))?;
        after_batch(&header);
        pos += size;
    }
    Ok(())
}
