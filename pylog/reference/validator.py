"""Append validation: what ``append_raw`` checks before a byte is written, so that every batch the
log accepts is one every reader can decode. Kafka's broker does the same in
storage/src/main/java/org/apache/kafka/storage/internals/log/LogValidator.java; the twin of this
file is native/src/validator.rs, and both raise the same classes and kinds.

Checks, in this order (the first failure wins; docs/partition-log.md "append_raw")::

    1. size >= 61 and length == size - 12 (exactly one batch)        CorruptBatchError framing
    2. magic 2                                                        CorruptBatchError magic
    3. CRC-32C                                                        CorruptBatchError crc
    4. attributes bits 7-15 zero                                      InvalidRecordError attributes
    5. codec id <= 4                                                  CorruptBatchError codec
    6. count > 0 and lastOffsetDelta == count - 1                     CorruptBatchError record_count
    7. the records (decompressed, <= MAX_DECOMPRESSED_BYTES) decode with the reader's own code,
       count of them and no byte left over, for every codec   CorruptBatchError compression/record/record_count
    8. record i has offset delta i                                    InvalidRecordError offset
    9. baseTimestamp + timestampDelta fits int64; a CreateTime batch's maxTimestamp is the
       records' maximum                                               InvalidRecordError timestamp
    10. a control batch holds one control record: key >= 4 bytes (version i16 >= 0, type i16);
        a commit/abort marker (type 0/1) also a value >= 6 bytes (version i16 >= 0,
        coordinatorEpoch i32), the transactional bit and a producer id >= 0   InvalidRecordError control
    11. with ``keys_required`` (a ``cleanup.policy`` that includes compact), every record of a
        data batch has a key (Kafka's LogValidator validateKey)          InvalidRecordError key

Deviations from Kafka, both because append_raw keeps batches byte for byte (it is also the copy
path): its broker rewrites a CreateTime batch's maxTimestamp to the records' maximum, where we
refuse a batch whose header disagrees (the time index and the roll rule read that field); and it
does not refuse offset deltas other than 0..count-1 (an uncompressed batch is written as it is, a
compressed one is rebuilt with new deltas), where we refuse them (rule 8), since a reader would
otherwise see offsets outside the batch. Honest v2 writers always agree on both.
Why reuse the decoder: a validator that parsed records its own way could accept what the reader
refuses; here the reader's checks are a subset of these by construction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pylog.errors import CorruptBatchError, CorruptKind, InvalidRecordError
from pylog.reference.batch import (
    BATCH_HEADER_BYTES,
    LOG_OVERHEAD,
    MAGIC_V2,
    MAX_CODEC_ID,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    parse_header,
    records_area,
    verify_crc,
)
from pylog.reference.record import INT64_MAX, INT64_MIN, Malformed, decode_records_area, view_of

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: attribute bits Kafka defines (codec, timestamp type, transactional, control, delete horizon)
KNOWN_ATTRIBUTES_MASK = 0x7F
CONTROL_KEY_BYTES = 4  # version i16, type i16 (ControlRecordType)
END_TXN_MARKER_VALUE_BYTES = 6  # version i16, coordinatorEpoch i32 (EndTransactionMarker)
CONTROL_TYPE_ABORT = 0
CONTROL_TYPE_COMMIT = 1


def _corrupt(kind: CorruptKind, message: str) -> CorruptBatchError:
    return CorruptBatchError(message, position=0, kind=kind)


def validate_for_append(batch: Buffer, keys_required: str | None = None) -> BatchHeader:
    """append_raw's checks (see the module docstring); returns the parsed header."""
    view = view_of(batch)
    size = len(view)
    if size < BATCH_HEADER_BYTES:
        raise _corrupt(CorruptKind.FRAMING, f"batch of {size} bytes < {BATCH_HEADER_BYTES}")
    header = parse_header(view, 0)
    if header.length != size - LOG_OVERHEAD:
        raise _corrupt(
            CorruptKind.FRAMING,
            f"length field {header.length} != {size - LOG_OVERHEAD} (exactly one batch expected)",
        )
    if header.magic != MAGIC_V2:
        raise _corrupt(CorruptKind.MAGIC, f"unsupported magic {header.magic}")
    verify_crc(view, 0, header)
    if header.attributes & ~KNOWN_ATTRIBUTES_MASK:
        raise InvalidRecordError(
            f"attributes {header.attributes & 0xFFFF:#06x} set bits 7-15, which are unused",
            CorruptKind.ATTRIBUTES,
        )
    codec = header.codec_id
    if codec > MAX_CODEC_ID:
        raise _corrupt(CorruptKind.CODEC, f"unknown compression codec id {codec}")
    if header.records_count <= 0:
        raise _corrupt(CorruptKind.RECORD_COUNT, f"record count {header.records_count} <= 0")
    if header.last_offset_delta != header.records_count - 1:
        raise _corrupt(
            CorruptKind.RECORD_COUNT,
            f"lastOffsetDelta {header.last_offset_delta} != count - 1 ({header.records_count - 1})",
        )
    data = records_area(view, 0, header)
    # why this header: the records then carry the raw deltas (offset = offsetDelta,
    # timestamp = timestampDelta), which the checks below need
    raw = header._replace(
        base_offset=0, base_timestamp=0, attributes=header.attributes & ~TIMESTAMP_TYPE_MASK
    )
    try:
        records = decode_records_area(data, raw, check_leftover=True)
    except Malformed as e:
        raise _corrupt(e.kind, str(e.args[0])) from None
    base_ts = header.base_timestamp
    max_ts = INT64_MIN
    for i, rec in enumerate(records):
        if rec.offset != i:
            raise InvalidRecordError(
                f"record {i} has offset delta {rec.offset} (deltas must be 0..count-1 in order)",
                CorruptKind.OFFSET,
            )
        ts = base_ts + rec.timestamp
        if not INT64_MIN <= ts <= INT64_MAX:
            raise InvalidRecordError(
                f"record {i}: baseTimestamp {base_ts} + delta {rec.timestamp} overflows int64",
                CorruptKind.TIMESTAMP,
            )
        if ts > max_ts:
            max_ts = ts
    if header.timestamp_type == 0 and header.max_timestamp != max_ts:
        raise InvalidRecordError(
            f"maxTimestamp {header.max_timestamp} is not the records' maximum {max_ts}",
            CorruptKind.TIMESTAMP,
        )
    if header.is_control:
        _check_control(header, records[0].key, records[0].value)
    elif keys_required is not None and any(r.key is None for r in records):
        raise InvalidRecordError(
            f"cleanup.policy={keys_required}: a record of the batch has no key", CorruptKind.KEY
        )
    return header


def _check_control(header: BatchHeader, key: bytes | None, value: bytes | None) -> None:
    """Rule 10: one control record with a well-formed key (and marker value)."""
    if header.records_count != 1:
        raise InvalidRecordError(
            f"a control batch holds one record, not {header.records_count}", CorruptKind.CONTROL
        )
    if key is None or len(key) < CONTROL_KEY_BYTES:
        raise InvalidRecordError(
            "a control record's key must hold version and type (4 bytes)", CorruptKind.CONTROL
        )
    version = int.from_bytes(key[0:2], "big", signed=True)
    control_type = int.from_bytes(key[2:4], "big", signed=True)
    if version < 0:
        raise InvalidRecordError(f"control record key version {version} < 0", CorruptKind.CONTROL)
    if control_type in (CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT):
        if (
            value is None
            or len(value) < END_TXN_MARKER_VALUE_BYTES
            or int.from_bytes(value[0:2], "big", signed=True) < 0
        ):
            raise InvalidRecordError(
                "a transaction marker's value must hold version >= 0 and coordinatorEpoch (6 bytes)",
                CorruptKind.CONTROL,
            )
        if not header.attributes & TRANSACTIONAL_MASK or header.producer_id < 0:
            raise InvalidRecordError(
                "a transaction marker must be transactional and carry a producer id", CorruptKind.CONTROL
            )
