"""RecordBatch v2 (magic 2), Kafka's DefaultRecordBatch
(clients/src/main/java/org/apache/kafka/common/record/DefaultRecordBatch.java): the batch layout,
header, framing, CRC, in-place header rewrites, and the batch-level encode and decode around the
records area (its records are ``record.py``; append validation is ``validator.py``). The twin of
native/src/batch.rs. Kafka's DefaultRecordBatch.java, MemoryRecordsBuilder.java and FileLogInputStream.java.

Batch header, 61 bytes, big-endian::

     0 baseOffset i64 | 8 length i32 (= size - 12) | 12 partitionLeaderEpoch i32 | 16 magic i8 (=2)
    17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
    27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
    53 baseSequence i32 | 57 recordsCount i32 | 61 records (or one compressed stream of them)

Attributes: bits 0-2 codec, 3 LogAppendTime, 4 transactional, 5 control (transaction markers),
6 delete horizon; 7-15 unused.

Invariants kept here:
- Encoding is a pure function of the prepared inputs (byte-identical to the native engine for
  codec none): epoch 0, producer fields -1, baseTimestamp = ts[0], maxTimestamp = max(ts) or the
  append time with the LogAppendTime bit.
- Decoding trusts nothing: framing and the CRC first, decompression capped at
  ``MAX_DECOMPRESSED_BYTES``, then ``record.decode_records_area``; every malformed input raises
  ``CorruptBatchError`` with the batch position and a kind (docs/partition-log.md "Decoding rules").
  Control batches are checked but yield no records.
Thread-safety: pure functions of their arguments.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

import crc32c as _crc32c_mod

from pylog.config import CODEC_IDS
from pylog.errors import CorruptBatchError, CorruptKind, InvalidConfigError, RecordTooLargeError
from pylog.partition import Record
from pylog.reference import compression
from pylog.reference.record import INT32_MAX, Malformed, decode_records_area, encode_records, view_of

if TYPE_CHECKING:  # collections.abc.Buffer is Python >= 3.12; annotations only
    from typing_extensions import Buffer

LOG_OVERHEAD = 12
BATCH_HEADER_BYTES = 61
MAGIC_V2 = 2
MIN_LENGTH_FIELD = BATCH_HEADER_BYTES - LOG_OVERHEAD
MAX_DECOMPRESSED_BYTES = 256 << 20
CODEC_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20

# Field positions (one set of constants for the reader and the writer).
_POS_LENGTH = 8
_POS_EPOCH = 12
_POS_CRC = 17
_POS_ATTRIBUTES = 21  # the CRC covers [21, end)
CRC_START = _POS_ATTRIBUTES  # public for readers that check the CRC themselves (pylog/inspect.py)
_POS_MAX_TIMESTAMP = 35

MAX_CODEC_ID = 4

_HEADER = struct.Struct(">qiibIhiqqqhii")  # the whole 61-byte header
_PREFIX = struct.Struct(">qiibI")  # baseOffset .. crc (bytes 0..21)
_CRC_COVERED_HEADER = struct.Struct(">hiqqqhii")  # attributes .. recordsCount (bytes 21..61)
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32S = struct.Struct(">I")
_I16 = struct.Struct(">h")
assert _HEADER.size == BATCH_HEADER_BYTES
assert _PREFIX.size + _CRC_COVERED_HEADER.size == BATCH_HEADER_BYTES


class BatchHeader(NamedTuple):
    base_offset: int
    length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size_bytes(self) -> int:
        return LOG_OVERHEAD + self.length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def codec_id(self) -> int:
        return self.attributes & CODEC_MASK

    @property
    def timestamp_type(self) -> int:
        return 1 if self.attributes & TIMESTAMP_TYPE_MASK else 0

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)


_make_header = BatchHeader._make

# ---------------------------------------------------------------------------------------------
# Framing, CRC


def parse_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Parse the 61-byte header at ``pos`` without validation (caller ensures 61 bytes)."""
    return _make_header(_HEADER.unpack_from(buf, pos))


def frame(buf: Buffer, pos: int = 0, end: int | None = None) -> BatchHeader | None:
    """Framing of the batch at ``buf[pos:end]``: the header when complete, None when incomplete
    (< 12 bytes, or 12 + length past ``end``), CorruptBatchError(position=pos) when length < 49
    or magic != 2 (checked in that order; the CRC is not checked)."""
    view = view_of(buf)
    if end is None or end > len(view):
        end = len(view)
    if end - pos < LOG_OVERHEAD:
        return None
    (length,) = _I32.unpack_from(view, pos + _POS_LENGTH)
    # why: like Kafka's FileLogInputStream, a too-small length is corruption even when the
    # (claimed) batch would also run past the end; a zero-filled tail must not look "unwritten".
    if length < MIN_LENGTH_FIELD:
        raise CorruptBatchError(
            f"batch length field {length} < {MIN_LENGTH_FIELD}", position=pos, kind=CorruptKind.FRAMING
        )
    if pos + LOG_OVERHEAD + length > end:
        return None
    header = _make_header(_HEADER.unpack_from(view, pos))
    if header.magic != MAGIC_V2:
        raise CorruptBatchError(f"unsupported magic {header.magic}", position=pos, kind=CorruptKind.MAGIC)
    return header


def crc32c(data: Buffer) -> int:
    """CRC-32C (Castagnoli) as Java's ``java.util.zip.CRC32C``."""
    return _crc32c_mod.crc32c(data)


def verify_crc(buf: Buffer, pos: int, header: BatchHeader) -> None:
    """CorruptBatchError(position=pos) unless the stored CRC matches bytes pos+21 .. pos+size."""
    view = view_of(buf)
    end = pos + LOG_OVERHEAD + header.length
    if header.length < MIN_LENGTH_FIELD or end > len(view):
        raise CorruptBatchError(
            "batch shorter than its header or past the buffer", position=pos, kind=CorruptKind.FRAMING
        )
    actual = _crc32c_mod.crc32c(memoryview(view)[pos + _POS_ATTRIBUTES : end])
    if actual != header.crc:
        raise CorruptBatchError(
            f"CRC-32C mismatch: stored {header.crc:#010x}, computed {actual:#010x}",
            position=pos,
            kind=CorruptKind.CRC,
        )


def set_base_offset(batch: bytearray, base_offset: int) -> None:
    _I64.pack_into(batch, 0, base_offset)


def set_partition_leader_epoch(batch: bytearray, epoch: int) -> None:
    _I32.pack_into(batch, _POS_EPOCH, epoch)


def set_log_append_time(batch: bytearray, append_time_ms: int) -> None:
    """Set the timestamp-type bit and maxTimestamp, recompute the CRC."""
    (attributes,) = _I16.unpack_from(batch, _POS_ATTRIBUTES)
    _I16.pack_into(batch, _POS_ATTRIBUTES, attributes | TIMESTAMP_TYPE_MASK)
    _I64.pack_into(batch, _POS_MAX_TIMESTAMP, append_time_ms)
    (length,) = _I32.unpack_from(batch, _POS_LENGTH)
    crc = _crc32c_mod.crc32c(memoryview(batch)[_POS_ATTRIBUTES : LOG_OVERHEAD + length])
    _U32S.pack_into(batch, _POS_CRC, crc)


def codec_id(codec: str) -> int:
    """Attribute id of a codec name; ``producer``/``uncompressed`` mean none."""
    if codec in ("producer", "uncompressed"):
        codec = "none"
    try:
        return CODEC_IDS[codec]
    except (KeyError, TypeError):
        raise InvalidConfigError(
            f"unknown compression codec {codec!r}; known: {', '.join(CODEC_IDS)}"
        ) from None


def encode_batch(
    base_offset: int,
    values: list,
    keys: list,
    headers: list,
    timestamps: list[int],
    codec: str,
    log_append_time_ms: int | None,
) -> bytes:
    """One batch as docs/partition-log.md "Appending" describes (prepared inputs)."""
    cid = codec_id(codec)
    n = len(values)
    assert n > 0 and len(keys) == n and len(headers) == n and len(timestamps) == n
    base_ts = timestamps[0]
    records = b"".join(encode_records(values, keys, headers, timestamps, base_ts))
    if cid != 0 and len(records) > MAX_DECOMPRESSED_BYTES:
        # why: a reader rejects a stream that decompresses past the limit as corrupt, and
        # recovery would then truncate the log there; never write what we cannot read back.
        raise RecordTooLargeError(
            f"{len(records)} bytes of records exceed {MAX_DECOMPRESSED_BYTES} before compression"
        )
    payload = records if cid == 0 else compression.compress(codec, records)
    if BATCH_HEADER_BYTES + len(payload) > LOG_OVERHEAD + INT32_MAX:
        raise RecordTooLargeError(f"a batch of {len(payload)} bytes of records overflows int32")
    attributes = cid
    if log_append_time_ms is None:
        max_ts = max(timestamps)
    else:
        attributes |= TIMESTAMP_TYPE_MASK
        max_ts = log_append_time_ms
    covered = _CRC_COVERED_HEADER.pack(attributes, n - 1, base_ts, max_ts, -1, -1, -1, n)
    crc = _crc32c_mod.crc32c(payload, _crc32c_mod.crc32c(covered))
    length = BATCH_HEADER_BYTES - LOG_OVERHEAD + len(payload)
    batch = b"".join((_PREFIX.pack(base_offset, length, 0, MAGIC_V2, crc), covered, payload))
    assert len(batch) == LOG_OVERHEAD + length  # pair assertion: what we frame is what we wrote
    return batch


def assemble_batch(header: BatchHeader, payload: bytes) -> bytes:
    """A batch from a header (its length and CRC are computed here; every other field is taken
    as it is) and its records area (already compressed for a codec): the cleaner's rebuilt and
    emptied batches (cleaner.py)."""
    covered = _CRC_COVERED_HEADER.pack(
        header.attributes,
        header.last_offset_delta,
        header.base_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.records_count,
    )
    crc = _crc32c_mod.crc32c(payload, _crc32c_mod.crc32c(covered))
    length = BATCH_HEADER_BYTES - LOG_OVERHEAD + len(payload)
    if LOG_OVERHEAD + length > LOG_OVERHEAD + INT32_MAX:
        raise RecordTooLargeError(f"a batch of {len(payload)} bytes of records overflows int32")
    prefix = _PREFIX.pack(header.base_offset, length, header.partition_leader_epoch, MAGIC_V2, crc)
    return b"".join((prefix, covered, payload))


def records_area(view: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> bytes:
    """The records area of the framed batch at ``pos`` (codec id checked by the caller),
    decompressed (at most ``MAX_DECOMPRESSED_BYTES``); CorruptBatchError at ``pos`` when it does
    not decompress. The twin of native/src/batch.rs ``records_area``."""
    payload = memoryview(view)[pos + BATCH_HEADER_BYTES : pos + LOG_OVERHEAD + header.length]
    cid = header.codec_id
    if cid == 0:
        return payload.tobytes()
    try:
        return compression.decompress(cid, payload, MAX_DECOMPRESSED_BYTES)
    except CorruptBatchError as e:
        raise CorruptBatchError(str(e.args[0]), position=pos, kind=e.kind) from None


def decode_batch(buf: Buffer, pos: int, header: BatchHeader) -> list[Record]:
    """Validate (CRC, codec, record layout) and decode the complete batch at ``pos``; a control
    batch is validated and yields no records. CorruptBatchError positions are ``pos``."""
    view = view_of(buf)
    if header.length < MIN_LENGTH_FIELD:
        raise CorruptBatchError(
            f"batch length field {header.length} < {MIN_LENGTH_FIELD}", position=pos, kind=CorruptKind.FRAMING
        )
    end = pos + LOG_OVERHEAD + header.length
    if end > len(view):
        raise CorruptBatchError(
            "batch runs past the end of the buffer", position=pos, kind=CorruptKind.FRAMING
        )
    if header.magic != MAGIC_V2:
        raise CorruptBatchError(f"unsupported magic {header.magic}", position=pos, kind=CorruptKind.MAGIC)
    verify_crc(view, pos, header)
    cid = header.codec_id
    if cid > MAX_CODEC_ID:
        raise CorruptBatchError(f"unknown compression codec id {cid}", position=pos, kind=CorruptKind.CODEC)
    if header.records_count < 0:
        raise CorruptBatchError(
            f"record count {header.records_count} < 0", position=pos, kind=CorruptKind.RECORD_COUNT
        )
    data = records_area(view, pos, header)
    try:
        records = decode_records_area(data, header, check_leftover=cid == 0)
    except Malformed as e:
        raise CorruptBatchError(str(e.args[0]), position=pos, kind=e.kind) from None
    # why: a control batch (transaction markers) is validated like any other, but Kafka's
    # consumers never return its records; readers advance past it by its nextOffset
    return [] if header.is_control else records


def decode_records(buffer: Buffer) -> list[Record]:
    """All batches of a buffer; an incomplete trailing batch is CorruptBatchError."""
    view = view_of(buffer)
    end = len(view)
    pos = 0
    out: list[Record] = []
    while pos < end:
        if end - pos < BATCH_HEADER_BYTES:
            raise CorruptBatchError(
                f"truncated batch: {end - pos} bytes < {BATCH_HEADER_BYTES}",
                position=pos,
                kind=CorruptKind.FRAMING,
            )
        header = frame(view, pos, end)
        if header is None:
            raise CorruptBatchError(
                "truncated batch: length runs past the buffer", position=pos, kind=CorruptKind.FRAMING
            )
        out.extend(decode_batch(view, pos, header))
        pos += LOG_OVERHEAD + header.length
    return out


def record_spans(buffer: Buffer) -> list[tuple[int, int, int]]:
    """Per whole batch of ``buffer``, in order, ``(records, first record offset, last record
    offset)`` (the offsets -1 for a batch without data records: a control batch or an empty one),
    after every check ``decode_records`` makes: ``pylog verify``'s structure check
    (pylog/inspect.py). The twin of native/src/batch.rs ``record_spans``."""
    view = view_of(buffer)
    end = len(view)
    pos = 0
    spans: list[tuple[int, int, int]] = []
    while pos < end:
        header = frame(view, pos, end) if end - pos >= BATCH_HEADER_BYTES else None
        if header is None:
            raise CorruptBatchError(
                "truncated batch: length runs past the buffer", position=pos, kind=CorruptKind.FRAMING
            )
        records = decode_batch(view, pos, header)
        spans.append((len(records), records[0].offset, records[-1].offset) if records else (0, -1, -1))
        pos += LOG_OVERHEAD + header.length
    return spans
