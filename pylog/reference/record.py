"""RecordBatch v2 (magic 2): layout, encode, validate, decode (spec §1.1-§1.4, §1.7).

CODEC HELPER OWNS THIS FILE. The API below is fixed; the storage modules are written against it.

Batch header, 61 bytes, big-endian::

     0 baseOffset i64 | 8 length i32 (= size - 12) | 12 partitionLeaderEpoch i32 | 16 magic i8 (=2)
    17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
    27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
    53 baseSequence i32 | 57 recordsCount i32 | 61 records (or one compressed stream of them)
"""

from __future__ import annotations

from collections.abc import Buffer
from typing import NamedTuple

from pylog.engine import Record

LOG_OVERHEAD = 12
BATCH_HEADER_BYTES = 61
MAGIC_V2 = 2
MIN_LENGTH_FIELD = BATCH_HEADER_BYTES - LOG_OVERHEAD
MAX_DECOMPRESSED_BYTES = 256 << 20
CODEC_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20


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


def parse_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Parse the 61-byte header at ``pos`` without validation (caller ensures 61 bytes)."""
    raise NotImplementedError


def frame(buf: Buffer, pos: int = 0, end: int | None = None) -> BatchHeader | None:
    """Framing of the batch at ``buf[pos:end]``: the header when complete, None when incomplete
    (< 12 bytes, or 12 + length past ``end``), CorruptBatchError(position=pos) when length < 49
    or magic != 2 (checked in that order; the CRC is not checked)."""
    raise NotImplementedError


def crc32c(data: Buffer) -> int:
    raise NotImplementedError


def verify_crc(buf: Buffer, pos: int, header: BatchHeader) -> None:
    """CorruptBatchError(position=pos) unless the stored CRC matches bytes pos+21 .. pos+size."""
    raise NotImplementedError


def validate_for_append(batch: Buffer) -> BatchHeader:
    """append_raw's checks (docs/partition-log.md); CorruptBatchError(position=0) on failure."""
    raise NotImplementedError


def set_base_offset(batch: bytearray, base_offset: int) -> None:
    raise NotImplementedError


def set_partition_leader_epoch(batch: bytearray, epoch: int) -> None:
    raise NotImplementedError


def set_log_append_time(batch: bytearray, append_time_ms: int) -> None:
    """Set the timestamp-type bit and maxTimestamp, recompute the CRC."""
    raise NotImplementedError


def prepare_records(values, keys, headers, timestamps_ms, now_ms: int):
    """Validate ``append``'s arguments and return (values, keys, headers, timestamps) as lists of
    bytes/None, bytes/None, list[(str, bytes|None)], int. TypeError for non-bytes-like values,
    keys or header values and non-str header keys; InvalidRecordError for no records, length
    mismatches, or timestamps outside [0, 2**63-1] or not ints."""
    raise NotImplementedError


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
    raise NotImplementedError


def decode_batch(buf: Buffer, pos: int, header: BatchHeader) -> list[Record]:
    """Validate (CRC, codec, record layout) and decode the complete batch at ``pos``.
    CorruptBatchError positions are ``pos`` (the batch start)."""
    raise NotImplementedError


def decode_records(buffer: Buffer) -> list[Record]:
    """All batches of a buffer; an incomplete trailing batch is CorruptBatchError."""
    raise NotImplementedError
