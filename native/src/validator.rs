//! Append validation: what `append_raw` checks before a byte is written, so that every batch the
//! log accepts is one every reader can decode (invariant 5). Kafka's broker does the same in
//! storage/src/main/java/org/apache/kafka/storage/internals/log/LogValidator.java; the twin of
//! this file is `pylog/reference/validator.py`, and both raise the same error kinds.
//!
//! Checks, in this order (the first failure wins; docs/partition-log.md "append_raw"):
//! 1. framing: size >= 61 and `length == size - 12` (exactly one batch): CorruptBatch framing;
//! 2. magic 2: CorruptBatch magic;
//! 3. CRC-32C: CorruptBatch crc;
//! 4. attributes bits 7-15 zero: InvalidBatch attributes;
//! 5. codec id <= 4: CorruptBatch codec;
//! 6. `count > 0` and `lastOffsetDelta == count - 1`: CorruptBatch record_count;
//! 7. the records (decompressed for a codec, at most `MAX_DECOMPRESSED_BYTES`) decode with the
//!    reader's own code (`record::decode_records_area`), `count` of them and no byte left over,
//!    for every codec: CorruptBatch compression / record / record_count;
//! 8. record i has offset delta i: InvalidBatch offset;
//! 9. `baseTimestamp + timestampDelta` fits an i64 for every record, and for a CreateTime batch
//!    (attributes bit 3 clear) `maxTimestamp` is the records' maximum: InvalidBatch timestamp;
//! 10. a control batch (bit 5) holds exactly one control record: a key of at least 4 bytes
//!     (`version i16 >= 0, type i16`); for a commit/abort marker (type 0/1) also a value of at
//!     least 6 bytes (`version i16 >= 0, coordinatorEpoch i32`), the transactional bit and a
//!     producer id of at least 0 (EndTransactionMarker.java): InvalidBatch control;
//! 11. on a partition whose `cleanup.policy` includes `compact` (`keys_required`), every record
//!     of a data batch has a key (Kafka's LogValidator `validateKey`): InvalidBatch key.
//!
//! Checks 8-11 are reported only once every record decoded: corruption outranks them.
//!
//! Deviations from Kafka, both because append_raw keeps batches byte for byte (it is also the
//! copy path): its broker rewrites a CreateTime batch's maxTimestamp to the records' maximum
//! (`setMaxTimestamp`), where we refuse a batch whose header disagrees (the time index and the
//! roll rule read that field); and it does not refuse offset deltas other than 0..count-1 (an
//! uncompressed batch is written as it is, a compressed one is rebuilt with new deltas, see
//! `validateMessagesAndAssignOffsetsCompressed`), where we refuse them (rule 8), since a reader
//! would otherwise see offsets outside the batch. Honest writers (Kafka's, kafka-python's,
//! ours) always agree on both.
//! Why reuse the decoder: a validator that parsed records its own way could accept what the
//! reader refuses; here the reader's checks are a subset of these by construction.
//!
//! Thread-safety: pure functions of their input; `scratch` is caller-owned working memory.

use crate::batch::{
    records_area, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD, MAGIC_V2, TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
};
use crate::compression::Codec;
use crate::error::{CorruptKind, Error, Result};
use crate::record::decode_records_area;

/// Key and value of a control batch's record (checked by rule 10).
type ControlRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Attribute bits Kafka defines (codec, timestamp type, transactional, control, delete
/// horizon); the rest must be zero.
pub const KNOWN_ATTRIBUTES_MASK: i16 = 0x7F;
/// Control record key: `version i16, type i16` (ControlRecordType).
pub const CONTROL_KEY_BYTES: usize = 4;
/// Commit/abort marker value: `version i16, coordinatorEpoch i32` (EndTransactionMarker).
pub const END_TXN_MARKER_VALUE_BYTES: usize = 6;
pub const CONTROL_TYPE_ABORT: i16 = 0;
pub const CONTROL_TYPE_COMMIT: i16 = 1;

fn invalid(kind: CorruptKind, reason: String) -> Error {
    Error::InvalidBatch { kind, reason }
}

/// `append_raw`'s checks on one whole batch (see the module comment). `CorruptBatch` errors
/// are at position 0; `InvalidBatch` errors map to `InvalidRecordError`. `keys_required`: the
/// partition's `cleanup.policy` when it includes `compact` (rule 11), else `None`.
pub fn validate_for_append(
    batch: &[u8],
    scratch: &mut Vec<u8>,
    keys_required: Option<&str>,
) -> Result<BatchHeader> {
    if batch.len() < BATCH_HEADER_BYTES {
        return Err(Error::corrupt(
            CorruptKind::Framing,
            format!(
                "batch of {} bytes is smaller than the {BATCH_HEADER_BYTES}-byte header",
                batch.len()
            ),
            0,
        ));
    }
    let header = BatchHeader::parse(batch).expect("61 bytes are present");
    let length = header.length;
    if length as i64 != batch.len() as i64 - LOG_OVERHEAD as i64 {
        return Err(Error::corrupt(
            CorruptKind::Framing,
            format!(
                "batch length field {length} does not match its {} bytes (expected {})",
                batch.len(),
                batch.len() - LOG_OVERHEAD
            ),
            0,
        ));
    }
    if header.magic != MAGIC_V2 {
        return Err(Error::corrupt(
            CorruptKind::Magic,
            format!("unsupported magic {} (only 2 is supported)", header.magic),
            0,
        ));
    }
    crate::batch::verify_crc(batch)?;
    let attributes = header.attributes;
    if attributes & !KNOWN_ATTRIBUTES_MASK != 0 {
        return Err(invalid(
            CorruptKind::Attributes,
            format!("attributes {attributes:#06x} set bits 7-15, which are unused"),
        ));
    }
    // why not `batch::check_batch`: it would compute the CRC a second time.
    let Some(codec) = Codec::from_id(header.codec_id()) else {
        return Err(Error::corrupt(
            CorruptKind::Codec,
            format!("unknown compression codec id {}", header.codec_id()),
            0,
        ));
    };
    if header.records_count <= 0 {
        return Err(Error::corrupt(
            CorruptKind::RecordCount,
            format!(
                "batch record count {} must be positive",
                header.records_count
            ),
            0,
        ));
    }
    if header.last_offset_delta as i64 != header.records_count as i64 - 1 {
        return Err(Error::corrupt(
            CorruptKind::RecordCount,
            format!(
                "lastOffsetDelta {} does not match record count {}",
                header.last_offset_delta, header.records_count
            ),
            0,
        ));
    }
    let data = records_area(batch, &header, codec, scratch)?;
    // why this header: the views then carry the raw deltas (offset = offsetDelta, timestamp =
    // timestampDelta), which the checks below need.
    let raw = BatchHeader {
        base_offset: 0,
        base_timestamp: 0,
        attributes: header.attributes & !TIMESTAMP_TYPE_MASK,
        ..header
    };
    let mut expected_delta: i64 = 0;
    let mut max_timestamp = i64::MIN;
    let mut control: Option<ControlRecord> = None;
    let mut keyless = false;
    // why the first violation is kept, not returned: a malformed record later in the batch
    // outranks it (CorruptBatch before InvalidBatch), so every record is decoded first.
    let mut first_invalid: Option<Error> = None;
    decode_records_area(data, &raw, true, |r| {
        let i = expected_delta;
        expected_delta += 1;
        if first_invalid.is_some() {
            return Ok(());
        }
        if r.offset != i {
            first_invalid = Some(invalid(
                CorruptKind::Offset,
                format!(
                    "record {i} has offset delta {} (deltas must be 0..count-1 in order)",
                    r.offset
                ),
            ));
            return Ok(());
        }
        let Some(ts) = header.base_timestamp.checked_add(r.timestamp) else {
            first_invalid = Some(invalid(
                CorruptKind::Timestamp,
                format!(
                    "record {i}: baseTimestamp {} + delta {} overflows int64",
                    header.base_timestamp, r.timestamp
                ),
            ));
            return Ok(());
        };
        max_timestamp = max_timestamp.max(ts);
        keyless |= r.key.is_none();
        if header.is_control() && control.is_none() {
            control = Some((r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec)));
        }
        Ok(())
    })?;
    if let Some(e) = first_invalid {
        return Err(e);
    }
    if header.timestamp_type() == 0 && header.max_timestamp != max_timestamp {
        return Err(invalid(
            CorruptKind::Timestamp,
            format!(
                "maxTimestamp {} is not the records' maximum {max_timestamp}",
                header.max_timestamp
            ),
        ));
    }
    if header.is_control() {
        check_control(&header, control)?;
    } else if let (Some(policy), true) = (keys_required, keyless) {
        return Err(invalid(
            CorruptKind::Key,
            format!(
                "the batch holds a record without a key; a partition with \
                 cleanup.policy={policy} needs a key on every record"
            ),
        ));
    }
    Ok(header)
}

/// Rule 10: one control record with a well-formed key (and marker value).
fn check_control(header: &BatchHeader, record: Option<ControlRecord>) -> Result<()> {
    if header.records_count != 1 {
        return Err(invalid(
            CorruptKind::Control,
            format!(
                "a control batch holds one record, not {}",
                header.records_count
            ),
        ));
    }
    let (key, value) = record.unwrap_or((None, None));
    let key = match key {
        Some(k) if k.len() >= CONTROL_KEY_BYTES => k,
        _ => {
            return Err(invalid(
                CorruptKind::Control,
                "a control record's key must hold version and type (4 bytes)".into(),
            ))
        }
    };
    let version = i16::from_be_bytes([key[0], key[1]]);
    let kind = i16::from_be_bytes([key[2], key[3]]);
    if version < 0 {
        return Err(invalid(
            CorruptKind::Control,
            format!("control record key version {version} < 0"),
        ));
    }
    if kind == CONTROL_TYPE_ABORT || kind == CONTROL_TYPE_COMMIT {
        let value_ok = matches!(&value, Some(v) if v.len() >= END_TXN_MARKER_VALUE_BYTES
            && i16::from_be_bytes([v[0], v[1]]) >= 0);
        if !value_ok {
            return Err(invalid(
                CorruptKind::Control,
                "a transaction marker's value must hold version >= 0 and coordinatorEpoch (6 bytes)"
                    .into(),
            ));
        }
        if header.attributes & TRANSACTIONAL_MASK == 0 || header.producer_id < 0 {
            return Err(invalid(
                CorruptKind::Control,
                "a transaction marker must be transactional and carry a producer id".into(),
            ));
        }
    }
    Ok(())
}
